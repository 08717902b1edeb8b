"""INT8 copies of FP32 models with onnxruntime's own quantization tools.

Static quantization needs activation ranges, so it calibrates on the inputs the service itself
would build from real photos (letterboxed detector blobs, aligned 112 x 112 crops), captured
by running the FP32 models on them. The copy is written beside the original as `<stem>.int8.onnx`
and addressed as `<name>@int8` everywhere a model name goes (see `manifest.derived_int8`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

from facefleet.engine.align import align_all
from facefleet.engine.decode import IMAGE_SUFFIXES, decode_image
from facefleet.engine.detector import Detector
from facefleet.engine.loader import load_model
from facefleet.engine.recognizer import Recognizer
from facefleet.engine.runner import Chain, RecordingRunner, build_runner
from facefleet.engine.runtime import SessionSlot
from facefleet.errors import FacefleetError
from facefleet.models.manifest import ModelSpec, load_manifest
from facefleet.models.modelfiles import atomic_target, model_path, require_model_file
from facefleet.models.prepare import prepare_model
from facefleet.settings import Settings

MODES = ("static", "dynamic")
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}


class QuantizeError(FacefleetError):
    """The model cannot be quantized as asked; the message says what to change."""


class BlobReader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
    """Feeds captured input blobs to the calibrator one sample at a time."""

    def __init__(self, input_name: str, blobs: list[np.ndarray]) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter({input_name: b[None]} for b in blobs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def calibration_images(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise QuantizeError(f"no calibration photos (.jpg, .png, ...) in {folder}; give --images DIR")
    return files[:limit]


def _opened(spec: ModelSpec, settings: Settings, sink: list[np.ndarray] | None) -> tuple[SessionSlot, Chain]:
    """The model's session and its chain, with a recorder link when `sink` is given
    (service/engine/runner.py): the calibrator then sees exactly what the service feeds, preprocessing included."""
    slot = SessionSlot(load_model(spec, settings)[0])
    return slot, build_runner(spec, slot, extra=[RecordingRunner.into(sink)] if sink is not None else [])


def calibration_blobs(spec: ModelSpec, settings: Settings, photos: list[Path]) -> list[np.ndarray]:
    """One input sample per detector run (per photo) or per face (recognizers)."""
    manifest = load_manifest()
    det_spec = (
        spec if spec.task == "detection" else manifest.get(settings.models.det_name or manifest.default_detection)
    )
    runs: list[np.ndarray] = []
    slot, chain = _opened(det_spec, settings, runs if spec.task == "detection" else None)
    detector = Detector(det_spec, slot, settings, chain)
    recognizer = None
    if spec.task != "detection":
        slot, chain = _opened(spec, settings, runs)
        recognizer = Recognizer(spec, slot, settings, chain)
    for photo in tqdm(photos, desc=f"calibrating {spec.name}", unit="photo", leave=False):
        image = decode_image(photo.read_bytes(), settings.engine.max_pixels)
        found = detector.detect([image])[0]
        if recognizer is not None and len(found):
            recognizer.embed(align_all(image, found.landmarks))
    blobs = [sample for run in runs for sample in run]
    if not blobs:
        raise QuantizeError(f"the calibration photos gave no input for {spec.name} (no faces found?)")
    return blobs


def already_quantized(path: Path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return any(node.op_type in QUANTIZED_OPS for node in model.graph.node)


def ready_for_quantization(path: Path, opset: int = 13) -> None:
    """Per-channel scales need DequantizeLinear's `axis`, which arrived in opset 13 (InsightFace's
    files are opset 11); excluding nodes needs every node named (exporters may leave names empty)."""
    model = onnx.load(str(path))
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current < opset:
        model = version_converter.convert_version(model, opset)
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_ff{i}"
    onnx.save(model, str(path))


def output_heads(path: Path) -> list[str]:
    """Nodes from each graph output back to its last Conv, inclusive (the score, box and keypoint
    heads). Kept in FP32: calibrated only on large faces, a quantized score head clips the small
    faces of a crowd photo below the threshold (seen: 0 of 29 Solvay faces), and the heads are a
    small share of the run time."""
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    names: list[str] = []
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None:
            names.append(node.name)
            if node.op_type == "Conv":
                break
            node = producer.get(node.input[0])
    return names


def quantize(spec: ModelSpec, settings: Settings, mode: str, photos: list[Path]) -> Path:
    """Write `<stem>.int8.onnx` beside the model from its prepared FP32 copy; returns the path."""
    if mode not in MODES:
        raise QuantizeError(f"unknown quantization mode {mode!r}; known: {', '.join(MODES)}")
    path, digest = require_model_file(spec, settings.models.models_dir, settings.models.verify_models)
    if already_quantized(path):
        raise QuantizeError(f"{spec.name} ({path.name}) is already quantized; quantize an FP32 model")
    source = prepare_model(spec, path, digest, settings.models.cache_dir, None)
    target = model_path(load_manifest().get(f"{spec.name}@int8"), settings.models.models_dir)
    with tempfile.TemporaryDirectory(prefix="facefleet-quantize-") as tmp:
        # Shape inference and graph optimisation first: onnxruntime's documented preprocessing,
        # which folds BatchNorms so the calibrator sees the tensors that will really be quantized.
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        ready_for_quantization(pre)
        with atomic_target(target) as out:
            if mode == "dynamic":
                quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=True)
            else:
                reader = BlobReader(spec.input_name, calibration_blobs(spec, settings, photos))
                quantize_static(
                    str(pre),
                    str(out),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    nodes_to_exclude=output_heads(pre) if spec.task == "detection" else [],
                )
    return target
