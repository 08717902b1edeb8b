"""How long the command line takes to start, whole processes timed from outside.

Usage: .venv/bin/python bench/startup.py [--runs 7] [--image ../shared/images/obama.jpg] [--json OUT]

Three figures, each the median (min-max) of --runs runs after one untimed warm-up:
- `help`: `python -m facefleet --help`, start to exit;
- `detect start`: from launching `python -m facefleet detect IMAGE` to the moment the detect command
  begins its work (settings read, nothing loaded yet): what the imports of the command line cost;
- `detect`: the whole `facefleet detect IMAGE` with the default pack, models loaded and run.
The appliance's settings file is not read (FACEFLEET_APPLIANCE_ENV=none).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_file, require_models  # noqa: E402

# Launch the CLI, replace the detect command by one that prints the wall-clock time it was reached.
START_PROBE = """
import sys, time
import facefleet.cli as cli
def reached(args):
    print(repr(time.time()))
    return 0
cli.cmd_detect = reached
sys.exit(cli.main(sys.argv[1:]))
"""


def _env(models_dir: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEFLEET_")}
    env["FACEFLEET_APPLIANCE_ENV"] = "none"
    if models_dir:
        env["FACEFLEET_MODELS_DIR"] = models_dir
    return env


def whole(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of `argv`, start to exit, after one untimed run (page cache, .pyc files)."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if i:
            times.append(time.perf_counter() - start)
    return times


def until_detect_starts(image: str, runs: int, env: dict[str, str]) -> list[float]:
    """Wall seconds from launching the interpreter to the detect command being called."""
    times = []
    for i in range(runs + 1):
        start = time.time()
        out = subprocess.run(
            [sys.executable, "-c", START_PROBE, "detect", image],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if i:
            times.append(float(out.split()[-1]) - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "images" / "obama.jpg"))
    parser.add_argument("--models-dir", default=str(ROOT / ".cache" / "default-pack"))
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.models_dir:
        require_models(args.models_dir)
    require_file(args.image, "--image")
    env = _env(args.models_dir)
    python = [sys.executable, "-m", "facefleet"]
    report = {
        "help": summary(whole([*python, "--help"], args.runs, env)),
        "detect start": summary(until_detect_starts(args.image, args.runs, env)),
        "detect": summary(whole([*python, "detect", args.image], args.runs, env)),
    }
    for name, figures in report.items():
        print(f"{name:13} median {figures['median_s']:.3f} s  ({figures['min_s']:.3f}-{figures['max_s']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("startup", main))
