"""Fair tails: crowds and portraits sharing one worker, a git ref's service against this tree's, alternately.

Usage: .venv/bin/python bench/fairness.py [--base main] [--rounds 2] [--rec glintr100] [--det scrfd_2.5g]
           [--pack fp32|int8] [--crowd-requests 12] [--portrait-requests 40] [--mixed-crowds 3]
           [--loads crowd@c4,portraits@c4,mixed] [--images ../shared/images] [--models-dir ../shared/models]
           [--json OUT]

Three loads per service, the same on both sides:
- `crowd`: 4 closed-loop clients sending the Solvay photo (29 faces): p50/p95/p99;
- `portraits`: 4 clients sending the ten one-face photos in turn: p50/p95/p99;
- `mixed`: one client sending crowds (`--mixed-crowds` of them) while 3 clients send portraits until it is
  done: each kind's percentiles apart (do the portraits queued behind a crowd wait for all of it?).

The `--base` ref's service/, dashboard/ and models/ are exported with `git archive` into
.cache/bench-fair/base and served by the same interpreter (PYTHONPATH before the editable install), so
BEFORE and AFTER differ only in the code. Services alternate (base, tree, tree, base ...:
both up at once, only one under load at a time; each load runs on one side then the other, the order
flipped every round) so drift on a shared machine hits both alike; the report gives each figure's median
and min over the rounds. One gunicorn worker each, API keys on, CPU provider.

Loopback only; everything it makes lives in .cache/bench-fair.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_dir  # noqa: E402
from bench.served import body_of, keyed_service, models_folder  # noqa: E402
from tests.conftest import FACE_COUNTS  # noqa: E402

WORK = ROOT / ".cache" / "bench-fair"
KEY = "bench-fairness-api-key"
CROWD = "solvay_conference_1927.png"
# Where each import package of the tree lives (pyproject's package-dir).
PACKAGE_DIRS = {"service": "facefleet", "dashboard": "facefleet/dashboard", "models": "facefleet/manifest_data"}


def export_base(ref: str) -> Path:
    """The ref's packages laid out as installed (facefleet/, facefleet/dashboard, facefleet/manifest_data)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], check=True, capture_output=True, text=True)
    target = WORK / f"base-{commit.stdout.strip()[:10]}"
    if not (target / "facefleet" / "__init__.py").is_file():
        shutil.rmtree(target, ignore_errors=True)
        for folder, package in PACKAGE_DIRS.items():
            dest = target / package
            dest.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", ref, f"{folder}/"], check=True, capture_output=True
            )
            subprocess.run(["tar", "-x", "--strip-components=1", "-C", str(dest)], input=archive.stdout, check=True)
    return target


def prepare_models(args: argparse.Namespace) -> Path:
    """The detector copied from --models-dir, the recognizer copied or synthesized; an @int8 pack must already
    be in .cache/bench-fair/models with its gate."""
    return models_folder(WORK, args.models_dir, (args.det, args.rec))


def served(folder: Path, args: argparse.Namespace, label: str, pythonpath: str | None) -> AbstractContextManager:
    suffix = "@int8" if args.pack == "int8" else ""
    env = {
        "FACEFLEET_MODELS_DIR": str(folder),
        "FACEFLEET_PROVIDERS": "cpu",
        "FACEFLEET_DET_NAME": args.det + suffix,
        "FACEFLEET_REC_NAME": args.rec + suffix,
        "FACEFLEET_WORKERS": "1",
        # tails are measured, not refused: four crowds queue for longer than the default 30 s on a busy machine
        "FACEFLEET_QUEUE_TIMEOUT_S": "600",
        **({"PYTHONPATH": pythonpath} if pythonpath else {}),
    }
    return keyed_service(WORK, label, KEY, env)


def clients(url: str, groups: list[tuple[str, list[bytes], int, int | None]]) -> dict[str, list[float]]:
    """Closed-loop client groups at once: (kind, bodies sent in turn, clients, requests or None = until every
    counted group is done). Latencies of the 200s in ms by kind; any other answer fails the run."""
    lock = threading.Lock()
    done = threading.Event()
    latencies: dict[str, list[float]] = {kind: [] for kind, *_ in groups}
    left = {kind: count for kind, _, _, count in groups}
    turn = {kind: 0 for kind, *_ in groups}

    def client(kind: str, bodies: list[bytes]) -> None:
        with requests.Session() as session:
            session.headers.update({"Content-Type": "application/json", "X-API-Key": KEY})
            while not done.is_set():
                with lock:
                    count = left[kind]
                    if count is not None:
                        if count == 0:
                            return
                        left[kind] = count - 1
                    body = bodies[turn[kind] % len(bodies)]
                    turn[kind] += 1
                start = time.perf_counter()
                response = session.post(f"{url}/extract", data=body, timeout=600)
                if response.status_code != 200:
                    raise RuntimeError(f"{kind}: HTTP {response.status_code} {response.text[:200]}")
                with lock:
                    latencies[kind].append((time.perf_counter() - start) * 1000)

    with ThreadPoolExecutor(sum(n for _, _, n, _ in groups)) as pool:
        counted = [pool.submit(client, k, b) for k, b, n, c in groups if c is not None for _ in range(n)]
        endless = [pool.submit(client, k, b) for k, b, n, c in groups if c is None for _ in range(n)]
        try:
            for future in counted:
                future.result()
        finally:
            done.set()
        for future in endless:
            future.result()
    return latencies


def percentiles(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        **{f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)},
        "max": round(max(ms), 1),
    }


LOADS = ("crowd@c4", "portraits@c4", "mixed")


def one_load(url: str, images: Path, args: argparse.Namespace, load: str) -> dict[str, dict[str, float]]:
    crowd = [body_of(images, CROWD)]
    portraits = [body_of(images, n) for n in sorted(n for n, faces in FACE_COUNTS.items() if faces == 1)]
    if load == "crowd@c4":
        return {load: percentiles(clients(url, [("crowd", crowd, 4, args.crowd_requests)])["crowd"])}
    if load == "portraits@c4":
        return {load: percentiles(clients(url, [("portraits", portraits, 4, args.portrait_requests)])["portraits"])}
    got = clients(url, [("crowd", crowd, 1, args.mixed_crowds), ("portraits", portraits, 3, None)])
    return {"mixed: crowd@c1": percentiles(got["crowd"]), "mixed: portraits@c3": percentiles(got["portraits"])}


def warm_up(url: str, images: Path) -> None:
    bodies = [body_of(images, CROWD), body_of(images, "obama.jpg")]
    clients(url, [("warm", bodies, 2, 4)])


def summary(runs: dict[str, list[dict[str, dict[str, float]]]]) -> str:
    """Per load and figure: each side's median over the rounds (min in brackets)."""
    labels = list(runs)
    lines = [f"| load | figure | {' | '.join(labels)} |", "|---|---|" + "---|" * len(labels)]
    for load in runs[labels[0]][0]:
        for figure in ("p50", "p95", "p99", "max"):
            cells = []
            for label in labels:
                values = [r[load][figure] for r in runs[label]]
                cells.append(f"{statistics.median(values) / 1000:.2f} s ({min(values) / 1000:.2f})")
            lines.append(f"| {load} | {figure} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="the git ref measured BEFORE this tree ('' = this tree only)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--det", default="scrfd_2.5g")
    parser.add_argument("--rec", default="glintr100")
    parser.add_argument("--pack", default="fp32", choices=("fp32", "int8"))
    parser.add_argument("--crowd-requests", type=int, default=12)
    parser.add_argument("--portrait-requests", type=int, default=40)
    parser.add_argument("--mixed-crowds", type=int, default=3)
    parser.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"))
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "images"))
    parser.add_argument("--loads", default=",".join(LOADS), help=f"some of {','.join(LOADS)}")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not args.loads or set(args.loads.split(",")) - set(LOADS):
        parser.error(f"--loads: some of {','.join(LOADS)}")
    images = require_dir(args.images, "--images")
    folder = prepare_models(args)
    sides: dict[str, str | None] = {"tree": None}
    if args.base:
        sides = {f"base ({args.base})": str(export_base(args.base)), "tree": None}
    runs: dict[str, list[dict[str, dict[str, float]]]] = {label: [] for label in sides}
    with ExitStack() as stack:
        urls = {
            label: stack.enter_context(served(folder, args, label.split()[0], path)).url
            for label, path in sides.items()
        }
        for url in urls.values():
            warm_up(url, images)
        for round_ in range(args.rounds):
            for label in sides:
                runs[label].append({})
            for i, load in enumerate(args.loads.split(",")):
                order = list(sides) if (round_ + i) % 2 == 0 else list(reversed(sides))
                for label in order:
                    print(f"round {round_ + 1}/{args.rounds}, {load}: {label}", flush=True)
                    runs[label][-1].update(one_load(urls[label], images, args, load))
                    print(json.dumps(runs[label][-1]), flush=True)
    print(summary(runs))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("fairness", main))
