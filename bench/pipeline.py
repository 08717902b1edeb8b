"""Per-stage time of the request path on one photo, and the process's resident memory.

Usage: .venv/bin/python bench/pipeline.py [--det scrfd_2.5g] [--rec mobilefacenet]
           [--image ../shared/images/two_people.jpg] [--runs 50] [--providers cpu] [--json OUT]

Everything but the two model runs (decode, letterbox + blob, SCRFD decode + NMS, alignment,
recognizer blob + normalisation) is compared with the model time: the target is <= 5 %.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_file, require_models  # noqa: E402
from facefleet.app.extract import ExtractResult, extract  # noqa: E402
from facefleet.engine.pipeline import FaceEngine  # noqa: E402
from facefleet.settings import Settings  # noqa: E402

MODEL_STAGES = ("det_run", "rec_run")


def rss_mib() -> float:
    """Resident set size of this process, from /proc (what the kernel charges the worker)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_extract(engine: FaceEngine, data: bytes) -> tuple[ExtractResult, float]:
    """The application's extract use case on one photo (what /extract and `facefleet detect` run),
    and its wall time in ms."""
    start = time.perf_counter()
    found = extract(engine, [data])
    return found, (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--det", default="scrfd_2.5g")
    parser.add_argument("--rec", default="mobilefacenet")
    parser.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"))
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "images" / "two_people.jpg"))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("--shape-policy", default="fixed", choices=("fixed", "fit"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    require_models(args.models_dir, (args.det, args.rec))
    require_file(args.image, "--image")

    settings = Settings.from_env(
        models_dir=args.models_dir,
        det_name=args.det,
        rec_name=args.rec,
        providers=tuple(args.providers.split(",")),
        shape_policy=args.shape_policy,
    )
    rss_before = rss_mib()
    engine = FaceEngine.from_settings(settings)
    data = Path(args.image).read_bytes()
    for _ in range(5):
        timed_extract(engine, data)
    per_stage: dict[str, list[float]] = {}
    totals, faces = [], 0
    for _ in tqdm(range(args.runs), desc="runs", leave=False):
        found, total_ms = timed_extract(engine, data)
        faces = len(found.images[0].faces)
        totals.append(total_ms)
        for stage, ms in found.timings.ms().items():
            per_stage.setdefault(stage, []).append(ms)
    median = {stage: statistics.median(values) for stage, values in per_stage.items()}
    model_ms = sum(median[s] for s in MODEL_STAGES)
    other_ms = sum(v for s, v in median.items() if s not in MODEL_STAGES)
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "detector": args.det,
        "recognizer": args.rec,
        "providers": [
            engine.detector.opened.provider,
            engine.recognizer.opened.provider if engine.recognizer else None,
        ],
        "image": Path(args.image).name,
        "faces": faces,
        "runs": args.runs,
        "median_ms": {k: round(v, 3) for k, v in median.items()},
        "median_total_ms": round(statistics.median(totals), 3),
        "model_ms": round(model_ms, 3),
        "other_ms": round(other_ms, 3),
        "other_over_model": round(other_ms / model_ms, 4),
        "rss_mib_models_loaded": round(rss_mib(), 1),
        "rss_mib_before_models": round(rss_before, 1),
    }
    for stage, value in report["median_ms"].items():
        print(f"{stage:9} {value:9.3f} ms")
    print(f"{'total':9} {report['median_total_ms']:9.3f} ms  ({faces} faces, median of {args.runs})")
    share = report["other_over_model"]
    print(f"outside the model runs: {other_ms:.3f} ms = {share:.1%} of the model time ({model_ms:.3f} ms)")
    print(f"resident memory: {report['rss_mib_models_loaded']} MiB with models loaded")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("pipeline", main))
