"""Raw onnxruntime speed of facefleet's models across onnxruntime versions: the evidence behind the pins.

Usage: .venv/bin/python bench/ort_versions.py [--versions onnxruntime==1.32.0 onnxruntime-openvino==1.24.1 ...]
           [--models scrfd_2.5g glintr100 ...] [--rounds 5] [--runs 4] [--threads 2]
           [--json OUT.json] [--markdown OUT.md]

Why a venv per version: two onnxruntime builds cannot share one interpreter, and the pin is about what pip
installs. Each version gets a cached venv under .cache/ortbench/<dist>-<version> (that release from PyPI alone
plus numpy==1.26.4, which every release from 1.16 on accepts), and bench/ort_worker.py times the bare
InferenceSession.run there, with the session options the service uses.

Models (made once into .cache/ortbench/models by the project's own commands): scrfd_2.5g and mobilefacenet from
../shared/models, glintr100 synthesized (IResNet-100, random weights: speed only), the default pack
(`facefleet models pull`), each run as the prepared copy the service runs, and every INT8 copy that
`facefleet models quantize` makes (calibrated and judged on the shared photos, sorted by person) and its
accuracy gate passes. Recognizers at batch 1 and 8, detectors at
640x640, batch 1.

Noise: versions are never run back to back in blocks. Each round runs every version once (a fresh worker
process, `--runs` timed runs per model and batch after `--warmup`), in an order rotated each round, so a
slow minute of a shared machine lands on every version alike. The table gives the median over all rounds'
runs, its p90 and the fastest run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_dir  # noqa: E402
from facefleet.models.manifest import load_manifest  # noqa: E402
from facefleet.models.modelfiles import model_path, require_model_file  # noqa: E402
from facefleet.models.prepare import prepare_model  # noqa: E402
from tests.conftest import labelled_tree  # noqa: E402

WORK = ROOT / ".cache" / "ortbench"
WORKER = Path(__file__).resolve().parent / "ort_worker.py"
NUMPY = "1.26.4"  # accepted by every onnxruntime release from 1.16 to 1.32 (and the OpenVINO builds)
# Latest patch of every minor release line with a CPython 3.11 x86_64 wheel on PyPI (pip index versions
# onnxruntime, 2026-12-03), and every onnxruntime-openvino release installable here.
CPU_VERSIONS = [
    "1.16.3", "1.17.3", "1.18.1", "1.19.2", "1.20.1", "1.21.1", "1.22.1", "1.23.2",
    "1.24.4", "1.25.1", "1.26.0", "1.27.0", "1.28.0", "1.29.0", "1.30.0", "1.31.1", "1.32.0",
]  # fmt: skip
OPENVINO_VERSIONS = ["1.17.1", "1.18.0", "1.19.0", "1.20.0", "1.21.0", "1.22.0", "1.23.0", "1.24.1"]
DEFAULT_VERSIONS = [f"onnxruntime=={v}" for v in CPU_VERSIONS] + [
    f"onnxruntime-openvino=={v}" for v in OPENVINO_VERSIONS
]
SHARED = ("scrfd_2.5g", "mobilefacenet")
SYNTH = ("glintr100",)
DETECTOR_HW = (640, 640)


@dataclass(frozen=True)
class Version:
    """One installable onnxruntime: distribution and release."""

    dist: str
    version: str

    @classmethod
    def parse(cls, text: str) -> Version:
        dist, _, version = text.partition("==")
        return cls("onnxruntime", dist) if not version else cls(dist, version)

    @property
    def key(self) -> str:
        return f"{self.dist}=={self.version}"

    @property
    def provider(self) -> str:
        return "openvino" if self.dist == "onnxruntime-openvino" else "cpu"

    @property
    def venv(self) -> Path:
        return WORK / f"{self.dist}-{self.version}"


def pip_env() -> dict[str, str]:
    """PyPI alone: the machine's pip configuration (extra indexes, find-links, constraints) left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def make_venv(version: Version, python: str) -> str | None:
    """The version's venv, made once (stamp.json says it is complete); None, or the reason it cannot be."""
    stamp = version.venv / "stamp.json"
    if stamp.is_file():
        return None
    shutil.rmtree(version.venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(version.venv)], check=True)
    pip = [str(version.venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, version.key, f"numpy=={NUMPY}"], check=False, env=pip_env(), capture_output=True, text=True
    )
    if done.returncode != 0:
        shutil.rmtree(version.venv, ignore_errors=True)
        return (done.stderr.strip().splitlines() or ["pip failed"])[-1][:300]
    stamp.write_text(json.dumps({"dist": version.dist, "version": version.version, "numpy": NUMPY}))
    return None


def facefleet(*args: str) -> subprocess.CompletedProcess[str]:
    """The project's own CLI (this venv's), so the models are exactly the ones an operator would make."""
    command = [str(Path(sys.executable).with_name("facefleet")), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def make_models(args: argparse.Namespace) -> dict[str, Path]:
    """Every model file under test, prepared as the service runs it: label -> path."""
    folder, cache = WORK / "models", WORK / "model-cache"
    folder.mkdir(parents=True, exist_ok=True)
    flags = ["--models-dir", str(folder), "--cache-dir", str(cache)]
    manifest = load_manifest()
    default = [manifest.default_detection, manifest.default_recognition]
    steps = [*SHARED, *SYNTH, *default]
    for name in tqdm(steps, desc="models", unit="model"):
        target = model_path(manifest.get(name), str(folder))
        if target.exists():
            continue
        if name in SHARED:
            shutil.copy(Path(args.shared_models) / target.name, target)
        elif name in SYNTH:
            check(facefleet("models", "synth", name, "--out", str(target), *flags), name)
        else:
            check(facefleet("models", "pull", name, *flags), name)
    # DIR/<person>/<photo>: the recognizers' gate needs to know who is who (tests/conftest.py IDENTITIES)
    photos = str(labelled_tree(Path(args.images), WORK / "photos"))
    models: dict[str, Path] = {}
    for name in steps:
        spec = manifest.get(name)
        models[name] = prepare_model(spec, *require_model_file(spec, str(folder), False), str(cache))
        int8 = manifest.get(f"{name}@int8")
        judged = folder / f"{Path(spec.file).stem}.int8.gate.json"  # a copy that failed its gate is not retried
        if not model_path(int8, str(folder)).exists() and not judged.exists():
            done = facefleet("models", "quantize", name, "--images", photos, *flags)
            tqdm.write(f"{name}@int8: {(done.stdout + done.stderr).strip().splitlines()[-1]}")
        if model_path(int8, str(folder)).exists():
            models[int8.name] = prepare_model(int8, *require_model_file(int8, str(folder), False), str(cache))
    return models


def check(done: subprocess.CompletedProcess[str], name: str) -> None:
    if done.returncode != 0:
        raise SystemExit(f"ort_versions: {name}: {(done.stderr or done.stdout).strip()[-400:]}")


def job(models: dict[str, Path], tasks: dict[str, str], args: argparse.Namespace, provider: str) -> dict[str, Any]:
    entries = []
    for label, path in models.items():
        batches = [1] if tasks[label] == "detection" else args.rec_batches
        entries.append({"label": label, "path": str(path), "batches": batches, "hw": list(DETECTOR_HW)})
    return {"provider": provider, "threads": args.threads, "warmup": args.warmup, "runs": args.runs, "models": entries}


def run_worker(version: Version, payload: dict[str, Any]) -> dict[str, Any]:
    python = str(version.venv / "bin" / "python")
    env = {**os.environ, "OMP_NUM_THREADS": str(payload["threads"])}
    done = subprocess.run(
        [python, str(WORKER)], check=False, input=json.dumps(payload), capture_output=True, text=True, env=env
    )
    try:
        if done.returncode == 0:
            return json.loads(done.stdout)
    except json.JSONDecodeError:
        pass
    return {"error": (done.stderr.strip().splitlines() or ["worker failed, no answer"])[-1][:300]}


def measure(versions: list[Version], models: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of every version once, in a rotated order; runs merged per (version, model, batch)."""
    manifest = load_manifest()
    tasks = {label: manifest.get(label).task for label in models}
    merged: dict[str, dict[str, Any]] = {v.key: {"models": {}} for v in versions}
    steps = [(r, versions[(i + r) % len(versions)]) for r in range(args.rounds) for i in range(len(versions))]
    for _, version in tqdm(steps, desc="rounds x versions", unit="run"):
        answer = run_worker(version, job(models, tasks, args, version.provider))
        into = merged[version.key]
        if "error" in answer:
            into["error"] = answer["error"]
            continue
        into.update({k: answer[k] for k in ("onnxruntime", "numpy")})
        for label, result in answer["models"].items():
            slot = into["models"].setdefault(label, {"ms": {}, "load_ms": []})
            if "error" in result:
                slot["error"] = result["error"]
                continue
            slot["ran_on"], slot["skipped"] = result["ran_on"][0], result["skipped"]
            slot["load_ms"].append(result["load_ms"])
            for batch, times in result["ms"].items():
                slot["ms"].setdefault(batch, []).extend(times)
    return summarise(merged, tasks)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(merged: dict[str, Any], tasks: dict[str, str]) -> dict[str, Any]:
    for result in merged.values():
        for label, slot in result["models"].items():
            slot["task"] = tasks[label]
            slot["figures"] = {
                batch: {
                    "median_ms": round(statistics.median(times), 2),
                    "p90_ms": round(percentile(times, 0.9), 2),
                    "min_ms": round(min(times), 2),
                    "runs": len(times),
                    "median_ms_per_image": round(statistics.median(times) / int(batch), 2),
                }
                for batch, times in slot.pop("ms").items()
            }
            slot["load_ms"] = round(statistics.median(slot["load_ms"]), 1) if slot["load_ms"] else None
    return merged


def columns(results: dict[str, Any]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for result in results.values():
        for label, slot in result["models"].items():
            for batch in slot.get("figures", {}):
                seen[(label, batch)] = None
    return list(seen)


def cell(result: dict[str, Any], label: str, batch: str) -> str:
    slot = result["models"].get(label, {})
    figures = slot.get("figures", {}).get(batch)
    if figures is None:
        return "fails" if "error" in slot or batch in slot.get("skipped", {}) else "-"
    return f"{figures['median_ms']:.1f} ({figures['p90_ms']:.1f})"


def relative(result: dict[str, Any], base: dict[str, Any], cols: list[tuple[str, str]], int8: bool) -> str:
    """Geometric mean of this version's median over the baseline's, across the fp32 (or INT8) columns both ran."""
    ratios = []
    for label, batch in cols:
        if label.endswith("@int8") != int8:
            continue
        mine = result["models"].get(label, {}).get("figures", {}).get(batch)
        theirs = base["models"].get(label, {}).get("figures", {}).get(batch)
        if mine and theirs:
            ratios.append(mine["median_ms"] / theirs["median_ms"])
    return f"{statistics.geometric_mean(ratios):.2f}" if ratios else "-"


def table(results: dict[str, Any], baseline: str) -> str:
    """Markdown: one row per version, median (p90) ms per run for each model and batch, and the geometric
    mean ratio to the baseline for fp32 and INT8 (below 1.00: faster than the baseline)."""
    cols = columns(results)
    base = results.get(baseline, next(iter(results.values())))
    head = ["version", *[f"{label} b{batch}" for label, batch in cols], "fp32 vs base", "int8 vs base"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, result in results.items():
        if "error" in result and not result["models"]:
            lines.append(f"| {key} | " + " | ".join(["fails"] * len(cols)) + f" | {result['error'][:60]} | |")
            continue
        cells = [cell(result, label, batch) for label, batch in cols]
        cells += [relative(result, base, cols, False), relative(result, base, cols, True)]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--versions", nargs="+", default=DEFAULT_VERSIONS, help="DIST==VERSION (bare VERSION: onnxruntime)"
    )
    parser.add_argument("--models", nargs="+", help="labels to time (default: every model made, INT8 copies included)")
    parser.add_argument("--rounds", type=int, default=5, help="times each version is run, alternating (default 5)")
    parser.add_argument("--runs", type=int, default=4, help="timed runs per model and batch in a round (default 4)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first, per model and batch (default 2)")
    parser.add_argument("--rec-batches", nargs="+", type=int, default=[1, 8], help="recognizer batches (default 1 8)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2, the appliance's)")
    parser.add_argument("--baseline", default="onnxruntime==1.32.0", help="the version the ratios compare against")
    parser.add_argument("--python", default=sys.executable, help="interpreter the venvs are made from")
    parser.add_argument("--shared-models", default=str(ROOT.parent / "shared" / "models"))
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "images"))
    parser.add_argument("--json", type=Path, default=WORK / "ort_versions.json")
    parser.add_argument("--markdown", type=Path, default=WORK / "ort_versions.md")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    require_dir(args.shared_models, "--shared-models")
    require_dir(args.images, "--images")
    versions = [Version.parse(v) for v in args.versions]
    WORK.mkdir(parents=True, exist_ok=True)
    failed = {}
    for version in tqdm(versions, desc="venvs", unit="venv"):
        reason = make_venv(version, args.python)
        if reason:
            tqdm.write(f"{version.key}: not installable here: {reason}")
            failed[version.key] = reason
    models = make_models(args)
    if args.models:
        models = {label: path for label, path in models.items() if label in args.models}
    started = time.time()
    results = measure([v for v in versions if v.key not in failed], models, args)
    results.update({key: {"error": f"not installable: {reason}", "models": {}} for key, reason in failed.items()})
    report = {
        "rounds": args.rounds,
        "runs": args.runs,
        "threads": args.threads,
        "seconds": round(time.time() - started),
    }
    args.json.write_text(json.dumps({**report, "results": results}, indent=1))
    text = table(results, args.baseline)
    args.markdown.write_text(text)
    print(text)
    print(f"json: {args.json}\nmarkdown: {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(one_line("ort_versions", main))
