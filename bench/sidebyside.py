"""Packs side by side: the served service against raw onnxruntime, per pack, workload and concurrency.

Usage: .venv/bin/python bench/sidebyside.py [--packs fp32,int8] [--rec glintr100] [--det scrfd_2.5g]
           [--images ../shared/images] [--scale 1.0] [--json OUT] [--plot docs/img/sidebyside.png]

One command reproduces docs/benchmarks.md's side-by-side table:
- packs: `fp32` (the detector and recognizer as published) and `int8` (their `@int8` copies, made by
  `facefleet models quantize` and offered only when they pass its accuracy gate). The default recognizer
  is glintr100's architecture (IResNet-100) with random weights, built by `facefleet models synth`:
  the file is not redistributable, and the time of a run does not depend on the weights;
- workloads from the shared photos: `portraits` (the ten one-face photos, in turn), `crowd` (the Solvay
  photo, 29 faces) and `mixed` (all twelve photos in turn), each at 1 and 4 concurrent clients, a fixed
  number of requests each (`--scale` multiplies them);
- per pack: the raw onnxruntime time of exactly the model runs the service makes for each photo (captured
  from a pass through the engine, run again on bare sessions, nothing else running), and the real
  service (gunicorn, one worker, API keys on): images/s, p50/p95/p99, the worker's resident memory at
  rest and at its peak under load, against the budget of 1.5 x the model files + 250 MB.

Loopback only; everything it makes lives in .cache/bench-sidebyside.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_dir  # noqa: E402
from bench.served import body_of, keyed_service, models_folder  # noqa: E402
from bench.service import worker_rss_mib  # noqa: E402
from facefleet.app.quantize import calibration_images, quantize  # noqa: E402
from facefleet.engine.pipeline import FaceEngine  # noqa: E402
from facefleet.engine.runner import RecordingRunner  # noqa: E402
from facefleet.models.manifest import load_manifest  # noqa: E402
from facefleet.models.modelfiles import model_path  # noqa: E402
from facefleet.settings import Settings  # noqa: E402
from tests.conftest import FACE_COUNTS, labelled_tree  # noqa: E402

WORK = ROOT / ".cache" / "bench-sidebyside"
KEY = "bench-sidebyside-key"
CROWD = "solvay_conference_1927.png"
# Requests per (workload, clients) at --scale 1: enough for p95 on the light loads; the crowd's p99 is its
# slowest of 12 (a crowd request takes seconds in FP32 on 2 cores).
REQUESTS = {"portraits": 40, "mixed": 36, "crowd": 12}
CLIENTS = (1, 4)


@dataclass(frozen=True)
class Pack:
    name: str
    det: str
    rec: str


def workloads(images: Path) -> dict[str, list[str]]:
    portraits = sorted(name for name, faces in FACE_COUNTS.items() if faces == 1)
    mixed = sorted(FACE_COUNTS)
    for name in mixed:
        if not (images / name).is_file():
            raise FileNotFoundError(f"--images {images}: {name} is missing")
    return {"portraits": portraits, "mixed": mixed, "crowd": [CROWD]}


def prepare_models(args: argparse.Namespace, packs: list[Pack]) -> Path:
    """The models folder: the real detector copied, the recognizer synthesized when it is one the synthesizer
    knows and no real file is given, and each `@int8` copy quantized through its accuracy gate."""
    folder = models_folder(WORK, args.models_dir, (args.det, args.rec))
    manifest = load_manifest()
    settings = bench_settings(folder, args.det, args.rec)
    photos = calibration_images(labelled_tree(Path(args.images), WORK / "photos"), 100)
    for pack in packs:
        for name in (pack.det, pack.rec):
            base, _, variant = name.partition("@")
            if variant and not model_path(manifest.get(name), str(folder)).exists():
                quantize(manifest.get(base), settings, "static", photos[:32], photos)
    return folder


def bench_settings(
    folder: Path, det: str, rec: str, settings: dict[str, str] | None = None, providers: tuple[str, ...] = ("cpu",)
) -> Settings:
    """The service's settings in-process (raw runs, quantization): the --set ones read as the service reads them."""
    return Settings.from_env(
        dict(settings or {}),
        models_dir=str(folder),
        cache_dir=str(WORK / "cache"),
        providers=providers,
        det_name=det,
        rec_name=rec,
    )


def raw_ms_per_photo(
    folder: Path, pack: Pack, images: Path, names: list[str], settings: dict[str, str], providers: tuple[str, ...]
) -> dict[str, float]:
    """Bare session.run time of the model runs the service makes for each photo (median of 3 passes)."""
    captured: dict[str, list[np.ndarray]] = {"detection": [], "recognition": []}
    extra = {task: [RecordingRunner.into(sink)] for task, sink in captured.items()}
    engine = FaceEngine.from_settings(bench_settings(folder, pack.det, pack.rec, settings, providers), extra=extra)
    out: dict[str, float] = {}
    for name in tqdm(names, desc=f"raw onnxruntime, {pack.name}", leave=False):
        for sink in captured.values():
            sink.clear()
        engine.process([(images / name).read_bytes()])
        runs: list[tuple[Any, np.ndarray]] = [(engine.detector, blob) for blob in captured["detection"]]
        runs += [(engine.recognizer, blob) for blob in captured["recognition"]]
        passes = []
        for _ in range(3):
            start = time.perf_counter()
            for model, blob in runs:
                assert model is not None
                model.opened.session.run(None, {model.opened.input_name: blob})
            passes.append((time.perf_counter() - start) * 1000)
        out[name] = statistics.median(passes)
    return out


class RssSampler:
    """The worker's resident size, sampled every 0.2 s while a load runs; `peak` is the largest seen."""

    def __init__(self, master_pid: int) -> None:
        self.master_pid, self.peak = master_pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max([self.peak, *worker_rss_mib(self.master_pid)])

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load(url: str, bodies: list[bytes], clients: int, count: int) -> dict[str, Any]:
    """`count` requests from `clients` closed-loop clients, the bodies in turn; latencies of the 200s."""
    order = itertools.cycle(bodies)
    lock = threading.Lock()
    left = [count]
    latencies: list[float] = []
    failures: dict[str, int] = {}

    def client() -> None:
        with requests.Session() as session:
            session.headers.update({"Content-Type": "application/json", "X-API-Key": KEY})
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                    body = next(order)
                start = time.perf_counter()
                response = session.post(f"{url}/extract", data=body, timeout=600)
                ms = (time.perf_counter() - start) * 1000
                with lock:
                    if response.status_code == 200:
                        latencies.append(ms)
                    else:
                        failures[str(response.status_code)] = failures.get(str(response.status_code), 0) + 1

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - start
    ok = np.array(latencies)
    return {
        "clients": clients,
        "requests": count,
        "img_per_s": round(len(ok) / elapsed, 3),
        **{f"p{q}_ms": round(float(np.percentile(ok, q)), 1) if len(ok) else None for q in (50, 95, 99)},
        "failures": failures,
    }


def served(folder: Path, pack: Pack, settings: dict[str, str], providers: tuple[str, ...]) -> AbstractContextManager:
    env = {
        "FACEFLEET_MODELS_DIR": str(folder),
        "FACEFLEET_PROVIDERS": ",".join(providers),
        "FACEFLEET_DET_NAME": pack.det,
        "FACEFLEET_REC_NAME": pack.rec,
        **settings,
    }
    return keyed_service(WORK, pack.name, KEY, env)


def measure_pack(folder: Path, pack: Pack, images: Path, loads: dict[str, list[str]], args: argparse.Namespace) -> dict:
    manifest = load_manifest()
    files = sum(model_path(manifest.get(n), str(folder)).stat().st_size for n in (pack.det, pack.rec))
    photos = sorted({n for names in loads.values() for n in names})
    raw = raw_ms_per_photo(folder, pack, images, photos, dict(args.set), args.providers)
    report: dict[str, Any] = {"pack": pack.name, "det": pack.det, "rec": pack.rec, "model_files_mib": files / 2**20}
    report["rss_budget_mib"] = round(1.5 * files / 2**20 + 250, 1)
    report["raw"] = {w: round(1000 / statistics.mean(raw[n] for n in names), 3) for w, names in loads.items()}
    report["raw_ms_per_photo"] = {n: round(ms, 1) for n, ms in raw.items()}
    with served(folder, pack, dict(args.set), args.providers) as service:
        report["rss_at_rest_mib"] = max(worker_rss_mib(service.proc.pid))
        report["service"], report["rss_peak_mib"] = {}, {}
        for workload, names in loads.items():
            bodies = [body_of(images, n) for n in names]
            load(service.url, bodies[:2], 1, 2)  # warm-up
            with RssSampler(service.proc.pid) as sampler:
                for clients in CLIENTS:
                    count = max(clients, round(REQUESTS[workload] * args.scale))
                    print(f"  {pack.name}: {workload}, {clients} client(s), {count} requests", flush=True)
                    report["service"][f"{workload}@c{clients}"] = load(service.url, bodies, clients, count)
            report["rss_peak_mib"][workload] = sampler.peak
    return report


def table(reports: list[dict]) -> str:
    lines = [
        "| pack | workload | clients | raw onnxruntime img/s | service img/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        for key, row in report["service"].items():
            workload, clients = key.split("@c")
            raw = report["raw"][workload] if clients == "1" else ""
            cells = [report["pack"], workload, clients, raw, row["img_per_s"], row["p50_ms"], row["p95_ms"]]
            lines.append("| " + " | ".join(str(c) for c in [*cells, row["p99_ms"]]) + " |")
    workloads = list(reports[0]["rss_peak_mib"])
    lines += [
        "",
        "| pack | model files MiB | budget MiB | worker RSS at rest MiB | "
        + " | ".join(f"peak, {w} MiB" for w in workloads)
        + " |",
        "|---|---|---|---|" + "---|" * len(workloads),
    ]
    for r in reports:
        cells = [r["pack"], round(r["model_files_mib"], 1), r["rss_budget_mib"], r["rss_at_rest_mib"]]
        cells += [r["rss_peak_mib"][w] for w in workloads]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    for r in reports:
        for workload, peak in r["rss_peak_mib"].items():
            verdict = "within" if peak <= r["rss_budget_mib"] else "OVER"
            lines.append(f"- {r['pack']}, {workload}: peak {peak} MiB, {verdict} the {r['rss_budget_mib']} MiB budget")
    if len(reports) > 1:
        base = reports[0]
        for other in reports[1:]:
            for key in base["service"]:
                ratio = other["service"][key]["img_per_s"] / base["service"][key]["img_per_s"]
                lines.append(f"- {other['pack']} / {base['pack']} service img/s, {key}: {ratio:.2f}x")
    return "\n".join(lines)


def plot(reports: list[dict], path: Path) -> None:
    """Images/s (service and raw) and p99 per workload at 4 clients, one bar per pack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(reports[0]["service"])
    fig, (speed, tail) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(reports)
    for i, report in enumerate(reports):
        xs = np.arange(len(keys)) + i * width
        speed.bar(xs, [report["service"][k]["img_per_s"] for k in keys], width, label=f"{report['pack']} service")
        raw = [report["raw"][k.split("@c")[0]] for k in keys]
        speed.scatter(xs, raw, marker="_", s=300, color="black", zorder=3, label="raw onnxruntime" if i == 0 else None)
        tail.bar(xs, [report["service"][k]["p99_ms"] / 1000 for k in keys], width, label=report["pack"])
    for axis, title in ((speed, "images/s (higher is better)"), (tail, "p99 latency, s (lower is better)")):
        axis.set_xticks(np.arange(len(keys)) + width * (len(reports) - 1) / 2, keys, rotation=20)
        axis.set_title(title)
        axis.legend()
    speed.set_yscale("log")
    fig.suptitle(f"{reports[0]['det']} + {reports[0]['rec']}: packs side by side (1 worker, CPU)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("FACEFLEET_"):
        raise argparse.ArgumentTypeError(f"expected FACEFLEET_NAME=VALUE, got {text!r}")
    return name, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", default="fp32,int8", help="fp32, int8 or both, in that order")
    parser.add_argument("--det", default="scrfd_2.5g")
    parser.add_argument("--rec", default="glintr100")
    parser.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"))
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "images"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every request count")
    parser.add_argument(
        "--providers",
        type=lambda text: tuple(text.split(",")),
        default=("cpu",),
        help="the provider chain, as FACEFLEET_PROVIDERS (openvino,cpu in an onnxruntime-openvino venv)",
    )
    parser.add_argument("--workloads", default="portraits,mixed,crowd", help="any of portraits, mixed, crowd")
    parser.add_argument(
        "--set", action="append", default=[], type=setting, metavar="FACEFLEET_NAME=VALUE", help="a service setting"
    )
    parser.add_argument("--json")
    parser.add_argument("--plot", help="PNG of the figures (docs/img/sidebyside.png in the docs)")
    args = parser.parse_args()
    images = require_dir(args.images, "--images")
    names = [p for p in args.packs.split(",") if p]
    if not names or set(names) - {"fp32", "int8"}:
        parser.error("--packs: fp32, int8 or fp32,int8")
    packs = [
        Pack(n, args.det if n == "fp32" else f"{args.det}@int8", args.rec if n == "fp32" else f"{args.rec}@int8")
        for n in names
    ]
    loads = {name: names for name, names in workloads(images).items() if name in args.workloads.split(",")}
    if not loads:
        parser.error("--workloads: any of portraits, mixed, crowd")
    folder = prepare_models(args, packs)
    reports = [measure_pack(folder, pack, images, loads, args) for pack in packs]
    print(table(reports))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    if args.plot:
        plot(reports, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("sidebyside", main))
