"""INT8 against FP32 on this machine: speed of each model run and the accuracy given up.

Usage: .venv/bin/python bench/quantization.py [--det scrfd_2.5g] [--rec mobilefacenet]
           [--models-dir DIR] [--images ../shared/images] [--rec-mode dynamic|static]
           [--runs 30] [--json OUT]

Quantizes into a copy of the models folder (never beside the originals), then on every photo:
box IoU of INT8 detections against FP32 ones, cosine of INT8 against FP32 embeddings of the same
aligned crops, and whether every same-person pair still scores above every different-person pair
(identities from ../shared/images/README.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_dir, require_models  # noqa: E402
from facefleet.app.quantize import calibration_images, quantize  # noqa: E402
from facefleet.engine.align import align_all  # noqa: E402
from facefleet.engine.decode import decode_image  # noqa: E402
from facefleet.engine.detector import Detector  # noqa: E402
from facefleet.engine.loader import load_model  # noqa: E402
from facefleet.engine.recognizer import Recognizer  # noqa: E402
from facefleet.engine.shapes import to_blob  # noqa: E402
from facefleet.models.manifest import load_manifest  # noqa: E402
from facefleet.settings import Settings  # noqa: E402
from tests.conftest import IDENTITIES, labelled_tree  # noqa: E402


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def run_ms(model: Detector | Recognizer, blob: np.ndarray, runs: int) -> float:
    for _ in range(3):
        model.session_run(blob)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.session_run(blob)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def open_pair(name: str, settings: Settings) -> tuple:
    manifest = load_manifest()
    spec, spec8 = manifest.get(name), manifest.get(f"{name}@int8")
    cls = Detector if spec.task == "detection" else Recognizer
    return cls(spec, load_model(spec, settings)[0], settings), cls(spec8, load_model(spec8, settings)[0], settings)


def separation(embeddings: dict[str, np.ndarray]) -> dict[str, float | bool]:
    same: list[float] = []
    different: list[float] = []
    for (a, ea), (b, eb) in itertools.combinations(embeddings.items(), 2):
        (same if IDENTITIES[a] == IDENTITIES[b] else different).append(float(ea @ eb))
    return {
        "lowest_same": round(min(same), 4),
        "highest_different": round(max(different), 4),
        "separated": min(same) > max(different),
    }


def accuracy(det: Detector, det8: Detector, rec: Recognizer, rec8: Recognizer, photos: list[Path]) -> dict:
    """INT8 against FP32 on the same photos; the recognizer on the FP32 detector's crops, so its
    figures measure the recognizer alone."""
    report: dict = {}
    ious, missed, extra, cosines = [], 0, 0, []
    embeddings: dict[str, dict[str, np.ndarray]] = {"fp32": {}, "int8": {}}
    for photo in photos:
        image = decode_image(photo.read_bytes())
        found, found8 = det.detect([image])[0], det8.detect([image])[0]
        matched = [max((iou(box, b8) for b8 in found8.boxes), default=0.0) for box in found.boxes]
        ious += [m for m in matched if m >= 0.5]
        missed += sum(m < 0.5 for m in matched)
        extra += max(0, len(found8) - (len(found) - sum(m < 0.5 for m in matched)))
        if not len(found):
            continue
        crops = align_all(image, found.landmarks)
        e32, e8 = rec.embed(crops)[0], rec8.embed(crops)[0]
        cosines += list(np.sum(e32 * e8, axis=1))
        if photo.name in IDENTITIES and len(found) == 1:
            embeddings["fp32"][photo.name], embeddings["int8"][photo.name] = e32[0], e8[0]
    report["detector_box_iou"] = {"min": round(min(ious), 4), "median": round(statistics.median(ious), 4)}
    report["faces_missed_by_int8"], report["faces_only_int8"] = missed, extra
    report["embedding_cosine_vs_fp32"] = {
        "min": round(float(min(cosines)), 4),
        "median": round(float(np.median(cosines)), 4),
    }
    report["same_vs_different"] = {k: separation(v) for k, v in embeddings.items()}

    return report


def speeds(det: Detector, det8: Detector, rec: Recognizer, rec8: Recognizer, runs: int) -> dict:
    report: dict = {}
    rng = np.random.default_rng(0)
    det_blob = rng.standard_normal((1, 3, 640, 640)).astype(np.float32)
    rec_blob = to_blob([rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)], 127.5, 127.5, False)
    report["run_ms"] = {
        "detector_fp32": run_ms(det, det_blob, runs),
        "detector_int8": run_ms(det8, det_blob, runs),
        "recognizer_fp32": run_ms(rec, rec_blob, runs * 3),
        "recognizer_int8": run_ms(rec8, rec_blob, runs * 3),
    }
    ms = report["run_ms"]
    report["speedup"] = {
        "detector": round(ms["detector_fp32"] / ms["detector_int8"], 2),
        "recognizer": round(ms["recognizer_fp32"] / ms["recognizer_int8"], 2),
    }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--det", default="scrfd_2.5g")
    parser.add_argument("--rec", default="mobilefacenet")
    parser.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"))
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "images"))
    parser.add_argument("--rec-mode", default="dynamic", choices=("dynamic", "static"))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    require_models(args.models_dir, (args.det, args.rec))
    require_dir(args.images, "--images")

    work = ROOT / ".cache" / "bench-int8"
    shutil.rmtree(work, ignore_errors=True)
    (work / "models").mkdir(parents=True)
    manifest = load_manifest()
    for name in (args.det, args.rec):
        shutil.copy(Path(args.models_dir) / manifest.get(name).file, work / "models")
    settings = Settings.from_env(
        models_dir=str(work / "models"),
        cache_dir=str(work / "cache"),
        providers=("cpu",),
        det_name=args.det,
        rec_name=args.rec,
    )
    photos = calibration_images(labelled_tree(Path(args.images), work / "photos"), 32)
    started = time.perf_counter()
    quantize(manifest.get(args.det), settings, "static", photos)
    quantize(manifest.get(args.rec), settings, args.rec_mode, photos)
    report: dict = {"detector": args.det, "recognizer": args.rec, "recognizer_mode": args.rec_mode}
    report["quantize_s"] = round(time.perf_counter() - started, 1)
    det, det8 = open_pair(args.det, settings)
    rec, rec8 = open_pair(args.rec, settings)

    report.update(accuracy(det, det8, rec, rec8, [p.path for p in photos]))
    report.update(speeds(det, det8, rec, rec8, args.runs))
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("quantization", main))
