"""The accuracy gate an INT8 copy must pass before it is offered: same answers as its FP32 original.

INT8 is the large speed lever on a CPU appliance (docs/benchmarks.md), but a quantized model can
lose faces (a score head clipped: small faces fall under the threshold) or blur who is who. So the
candidate is judged against its FP32 original on the operator's photos before it replaces anything:

- a detector, on every photo: the same number of faces, and every FP32 face found again with a box
  overlap (IoU) of at least 0.9;
- a recognizer, on the largest face of every labelled photo (`DIR/<subject>/<photo>`): every pair's
  same/different verdict at the model's threshold unchanged, with both models' genuine/impostor
  margins reported (lowest same-person score minus highest different-person score).

The report (facefleet.models.gatefile) is written beside the copy either way; only a copy that
passed is installed and loadable.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facefleet.engine.align import align_all
from facefleet.engine.decode import IMAGE_SUFFIXES, decode_image
from facefleet.engine.detector import Detector
from facefleet.engine.loader import load_model, open_model_file
from facefleet.engine.pipeline import largest_first
from facefleet.engine.recognizer import Recognizer
from facefleet.models.gatefile import GateCheck, GateReport
from facefleet.models.manifest import ModelSpec, load_manifest
from facefleet.models.modelfiles import file_sha256
from facefleet.settings import Settings

MIN_IOU = 0.9


@dataclass(frozen=True)
class Photo:
    """A gate or calibration photo; `subject` is its folder's name when it sits in `DIR/<subject>/`."""

    path: Path
    subject: str | None = None


def find_photos(folder: Path) -> list[Photo]:
    """The photos of `folder` and of its subfolders (one level: the subfolder names the person), sorted."""
    if not folder.is_dir():
        return []
    found: list[Photo] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            found += [Photo(p, entry.name) for p in sorted(entry.iterdir()) if _is_image(p)]
        elif _is_image(entry):
            found.append(Photo(entry))
    return found


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def gate(spec: ModelSpec, candidate: Path, settings: Settings, photos: list[Photo]) -> GateReport:
    """Judge `candidate` (the INT8 copy of FP32 model `spec`, not yet installed) on `photos`."""
    fp32, fp32_digest = load_model(spec, settings)
    int8_spec = load_manifest().get(f"{spec.name}@int8")
    digest = file_sha256(candidate)
    q8 = open_model_file(int8_spec, settings, candidate, digest)
    if spec.task == "detection":
        checks, figures = _detection(Detector(spec, fp32, settings), Detector(int8_spec, q8, settings), photos)
    else:
        checks, figures = _recognition(Recognizer(spec, fp32, settings), Recognizer(int8_spec, q8, settings), photos)
    failed = [c for c in checks if not c.passed]
    reason = "passed" if checks and not failed else _why(failed, checks)
    return GateReport(spec.name, spec.task, fp32_digest, digest, bool(checks) and not failed, reason, checks, figures)


def _why(failed: list[GateCheck], checks: list[GateCheck]) -> str:
    if not checks:
        return "nothing to judge it on"
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"{first.name}: {first.detail}{more}"


def _decoded(photo: Photo, settings: Settings) -> np.ndarray:
    return decode_image(photo.path.read_bytes(), settings.engine.max_pixels)


def _detection(fp32: Detector, q8: Detector, photos: list[Photo]) -> tuple[list[GateCheck], dict[str, object]]:
    """Per photo: the face count, and the worst IoU of an FP32 face's best INT8 match."""
    checks: list[GateCheck] = []
    worst: list[float] = []
    for photo in tqdm(photos, desc=f"gate {q8.spec.name}", unit="photo", leave=False):
        image = _decoded(photo, fp32.settings)
        want, got = fp32.detect([image])[0], q8.detect([image])[0]
        if len(want) != len(got):
            checks.append(GateCheck(photo.path.name, False, f"{len(got)} faces against FP32's {len(want)}"))
            continue
        low = min((max(iou(w, g) for g in got.boxes) for w in want.boxes), default=1.0)
        worst.append(low)
        ok = low >= MIN_IOU
        checks.append(GateCheck(photo.path.name, ok, f"{len(got)} faces, lowest IoU {low:.3f} (at least {MIN_IOU})"))
    return checks, {"photos": len(photos), "iou_min": round(min(worst), 4) if worst else None}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _crops(settings: Settings, photos: list[Photo]) -> tuple[list[Photo], list[np.ndarray]]:
    """The largest face of every labelled photo, aligned, found by the configured (or default) detector."""
    manifest = load_manifest()
    det_spec = manifest.get(settings.models.det_name or manifest.default_detection)
    detector = Detector(det_spec, load_model(det_spec, settings)[0], settings)
    kept: list[Photo] = []
    crops: list[np.ndarray] = []
    for photo in (p for p in photos if p.subject):
        image = _decoded(photo, settings)
        found = detector.detect([image])[0]
        if len(found):
            areas = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
            kept.append(photo)
            crops += align_all(image, found.landmarks[largest_first(areas)[:1]])
    return kept, crops


def _recognition(fp32: Recognizer, q8: Recognizer, photos: list[Photo]) -> tuple[list[GateCheck], dict[str, object]]:
    """Every labelled pair's verdict at the FP32 model's threshold, FP32 against INT8, and both margins."""
    kept, crops = _crops(fp32.settings, photos)
    subjects = [p.subject for p in kept]
    pairs = list(itertools.combinations(range(len(kept)), 2))
    genuine = [pair for pair in pairs if subjects[pair[0]] == subjects[pair[1]]]
    if not genuine or len(genuine) == len(pairs):
        need = "needs DIR/<person>/<photo>: two photos of one person and one of another, a face in each"
        return [GateCheck("labelled photos", False, f"{len(kept)} labelled photos with a face; {need}")], {
            "photos": len(kept)
        }
    e32, e8 = fp32.embed(crops)[0], q8.embed(crops)[0]
    threshold = fp32.threshold
    checks = []
    for i, j in pairs:
        s32, s8 = float(e32[i] @ e32[j]), float(e8[i] @ e8[j])
        same = subjects[i] == subjects[j]
        ok = (s32 >= threshold) == (s8 >= threshold)
        name = f"{kept[i].path.name} ~ {kept[j].path.name}"
        detail = f"{'same' if same else 'different'} people: FP32 {s32:.3f}, INT8 {s8:.3f}, threshold {threshold:.3f}"
        checks.append(GateCheck(name, ok, detail))
    figures: dict[str, object] = {
        "photos": len(kept),
        "pairs": len(pairs),
        "genuine_pairs": len(genuine),
        "threshold": round(threshold, 4),
        "margin_fp32": _margin(e32, subjects),
        "margin_int8": _margin(e8, subjects),
        "cosine_to_fp32_min": round(float(np.min(np.sum(e32 * e8, axis=1))), 4),
    }
    return checks, figures


def _margin(embeddings: np.ndarray, subjects: list[str | None]) -> float:
    """Lowest same-person score minus highest different-person score (positive: the two stay apart)."""
    same: list[float] = []
    different: list[float] = []
    for i, j in itertools.combinations(range(len(subjects)), 2):
        (same if subjects[i] == subjects[j] else different).append(float(embeddings[i] @ embeddings[j]))
    return round(float(min(same) - max(different)), 4)
