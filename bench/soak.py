"""Soak: the real service under N closed-loop clients for a bounded time, with a mix of good
photos, bad inputs and status reads, while the gunicorn worker's resident memory, open file
descriptors and threads are sampled, to catch what a short test cannot: leaks and slow decay.

Usage: .venv/bin/python bench/soak.py [--seconds 600] [--clients 16] [--sample-s 2]
           [--warmup 0.2] [--rss-baseline resting|peak] [--models-dir DIR] [--images DIR]
           [--workdir DIR] [--json OUT]

The mix (weights in `build_mix`): the one- and two-face photos of ../shared/images, the
29-face solvay_conference_1927.png less often, a truncated JPEG, garbage base64, and /health,
/info and /metrics reads. A client told 503 waits its Retry-After, as a well-behaved client does.

Warm-up: before any figure, every distinct input is sent once (onnxruntime plans its memory
per input shape); then the first `--warmup` of the run (and until every kind of request has
been answered once) is warm-up too: the worker's heap keeps growing for good reasons for a
while (gunicorn's thread pool fills up to one thread per client; glibc keeps freed photo
buffers between the worker's trims, facefleet.ops.malloc). The clients pause when it ends,
so the idle worker can be looked at.

Criteria (exit status 1 when one fails; see `verdict`): any 5xx other than 503 or a transport
error; a wrong answer (a good photo without its faces, a bad input said ok); a worker restart;
a resting resident size at the end 10 % or more above the one after warm-up (or above its
peak during warm-up: `--rss-baseline peak`); threads beyond those gthread's pool may add; file
descriptors held at the end that the start did not hold.
Loopback only (the service is started here); every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import BenchInputError, one_line, require_dir, require_models  # noqa: E402
from facefleet.settings import Settings  # noqa: E402
from tests.server import Service  # noqa: E402

RSS_GROWTH_LIMIT = 0.10
SOLVAY = "solvay_conference_1927.png"


@dataclass
class Kind:
    """One kind of request of the mix, and what a right answer to it looks like."""

    name: str
    weight: int
    method: str
    path: str
    bodies: list[bytes] = field(default_factory=list)
    right: Callable[[requests.Response], bool] = lambda response: True


def _extract_body(image: bytes | str) -> bytes:
    data = image if isinstance(image, str) else base64.b64encode(image).decode()
    return json.dumps({"images": {"data": [data]}}).encode()


def _faces(response: requests.Response, at_least: int) -> bool:
    """A 200 carries the photo's faces; any other code is judged by the status criteria."""
    if response.status_code != 200:
        return True
    [image] = response.json()["data"]
    return image["status"] == "ok" and len(image["faces"]) >= at_least


def _refused(response: requests.Response) -> bool:
    """A bad input is refused: 4xx for the request, or 200 with that image marked failed."""
    if response.status_code != 200:
        return True
    return all(image["status"] != "ok" for image in response.json()["data"])


def build_mix(images: Path) -> list[Kind]:
    """The request mix; weights are relative frequencies."""
    small = sorted(p for p in require_dir(images, "--images").glob("*.jpg"))
    missing = [name for name in ("biden.jpg", SOLVAY) if not (images / name).is_file()]
    if missing:
        raise BenchInputError(f"--images {images}: {', '.join(missing)} missing (the photos of ../shared/images)")
    jpeg = (images / "biden.jpg").read_bytes()
    return [
        Kind("photo", 56, "POST", "/extract", [_extract_body(p.read_bytes()) for p in small], lambda r: _faces(r, 1)),
        Kind("solvay_29_faces", 4, "POST", "/extract", [_extract_body((images / SOLVAY).read_bytes())], _solvay),
        Kind("truncated_jpeg", 8, "POST", "/extract", [_extract_body(jpeg[: len(jpeg) // 3])], _refused),
        Kind("garbage_base64", 8, "POST", "/extract", [_extract_body("@@not*base64%%" * 20)], _refused),
        Kind("health", 8, "GET", "/health", right=lambda r: r.status_code != 200 or r.json()["status"] == "ok"),
        Kind("info", 8, "GET", "/info", right=lambda r: r.status_code != 200 or "models" in r.json()),
        Kind("metrics", 8, "GET", "/metrics", right=lambda r: "facefleet_http_requests_total" in r.text),
    ]


def _solvay(response: requests.Response) -> bool:
    return _faces(response, 20)  # 29 people; leave the detector its borderline faces


class Tally:
    """Answers by kind: status codes (or the transport error's name), latencies, wrong answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.latency_ms: dict[str, list[float]] = defaultdict(list)
        self.wrong: dict[str, int] = defaultdict(int)

    def add(self, kind: str, code: str, ms: float, right: bool) -> None:
        with self.lock:
            self.codes[kind][code] += 1
            if code == "200":
                self.latency_ms[kind].append(ms)
            if not right:
                self.wrong[kind] += 1

    def total(self) -> int:
        with self.lock:
            return sum(sum(c.values()) for c in self.codes.values())

    def kinds_answered(self) -> set[str]:
        with self.lock:
            return {k for k, c in self.codes.items() if c.get("200")}


def one_request(session: requests.Session, url: str, kind: Kind, rng: random.Random) -> tuple[str, bool, float]:
    """(status code or error name, answer right?, seconds to wait: Retry-After on 503)."""
    body = rng.choice(kind.bodies) if kind.bodies else None
    headers = {"Content-Type": "application/json"} if body else {}
    try:
        response = session.request(kind.method, url + kind.path, data=body, headers=headers, timeout=120)
    except requests.RequestException as exc:
        return type(exc).__name__, True, 0.0
    retry = float(response.headers.get("Retry-After", 0)) if response.status_code == 503 else 0.0
    try:
        right = kind.right(response)
    except (ValueError, KeyError, TypeError):
        right = False
    return str(response.status_code), right, retry


def client(url: str, mix: list[Kind], deadline: float, tally: Tally, seed: int) -> None:
    """One closed-loop client: a request, its answer, the next request, until the deadline."""
    rng = random.Random(seed)
    weights = [k.weight for k in mix]
    with requests.Session() as session:
        while time.monotonic() < deadline:
            [kind] = rng.choices(mix, weights)
            start = time.perf_counter()
            code, right, retry = one_request(session, url, kind, rng)
            tally.add(kind.name, code, (time.perf_counter() - start) * 1000, right)
            time.sleep(min(retry, max(0.0, deadline - time.monotonic())))


# ---------------------------------------------------------------- the worker, from /proc
def worker_pids(master: int) -> list[int]:
    """The gunicorn master's children (the workers)."""
    children = Path(f"/proc/{master}/task/{master}/children")
    if children.exists():
        return sorted(int(p) for p in children.read_text().split())
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == master:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(out)


def process_figures(pid: int) -> dict[str, float]:
    """Resident memory (MiB: all, then anonymous, the heap, and file-backed, the mapped models and
    libraries), open file descriptors and threads of one process."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "rss_anon_mib": round(int(status["RssAnon"].split()[0]) / 1024, 1),
        "rss_file_mib": round(int(status["RssFile"].split()[0]) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
    }


def fd_targets(pid: int) -> dict[str, int]:
    """What the process's descriptors point at, counted: paths, and socket, pipe, anon_inode."""
    found: dict[str, int] = defaultdict(int)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        found[target if target.startswith("/") else target.split(":")[0]] += 1
    return dict(found)


class Sampler:
    """Samples the worker every `every_s` on its own thread, and shows progress on stderr."""

    def __init__(self, master: int, tally: Tally, every_s: float, seconds: float) -> None:
        self.master, self.tally, self.every, self.seconds = master, tally, every_s, seconds
        self.samples: list[dict] = []
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._start = time.monotonic()
        self.phase = "warm-up"  # then "pause" (clients done, idle figures), then "run"

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def sample(self) -> dict | None:
        pids = worker_pids(self.master)
        if not pids:
            return None
        self.pids.update(pids)
        try:
            found: dict[str, Any] = {"t": round(time.monotonic() - self._start, 1), "pid": pids[0]}
            found.update(process_figures(pids[0]))
        except (OSError, KeyError):
            return None
        found["requests"], found["phase"] = self.tally.total(), self.phase
        self.samples.append(found)
        return found

    def _run(self) -> None:
        shown = 0.0
        while not self._stop.wait(self.every):
            found = self.sample()
            if found and found["t"] - shown >= 10:
                shown = found["t"]
                print(
                    f"soak {found['t']:5.0f}/{self.seconds:.0f} s  {found['requests']} answers  "
                    f"rss {found['rss_mib']} MiB  fds {found['fds']}  threads {found['threads']}",
                    file=sys.stderr,
                    flush=True,
                )

    def start(self) -> None:
        self._start = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def quiet_figures(master: int, wait_s: float = 15.0, settle_s: float = 4.0) -> dict:
    """The worker's figures with no client connected: connections the clients closed take a
    moment to close on the server side too, so wait until the descriptors stop changing, and
    at least `settle_s` (the worker trims its heap 2 s after its engine goes idle)."""
    start = time.monotonic()
    deadline = start + wait_s
    last: dict = {}
    while time.monotonic() < deadline:
        pid = worker_pids(master)[0]
        now = {**process_figures(pid), "fd_targets": fd_targets(pid)}
        if last and now["fd_targets"] == last["fd_targets"] and time.monotonic() - start >= settle_s:
            return now
        last = now
        time.sleep(1.0)
    return last


# ---------------------------------------------------------------- the run
def warm_up(url: str, mix: list[Kind]) -> None:
    """Every distinct request once before the start figures: first-use allocations (a memory
    plan per input shape, caches, lazily opened files) are not leaks."""
    with requests.Session() as session:
        for kind in mix:
            bodies: list[bytes | None] = [*kind.bodies] or [None]  # a request without a body once
            for body in bodies:
                headers = {"Content-Type": "application/json"} if body else {}
                session.request(kind.method, url + kind.path, data=body, headers=headers, timeout=120)


def load(url: str, mix: list[Kind], tally: Tally, args: argparse.Namespace, seconds: float, seed: int) -> None:
    """`args.clients` closed-loop clients for `seconds`; returns when every client has its answer."""
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=client, args=(url, mix, deadline, tally, seed + n), daemon=True)
        for n in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 130)


def drive(url: str, mix: list[Kind], master: int, args: argparse.Namespace) -> tuple[Tally, Sampler, dict]:
    """The clients for `args.seconds` in two legs, sampled all along, with the idle worker's
    figures taken between them (the end of warm-up: at least `args.warmup` of the run, and
    until every kind of request has been answered once)."""
    tally = Tally()
    sampler = Sampler(master, tally, args.sample_s, args.seconds)
    sampler.start()
    warm_s = args.warmup * args.seconds
    load(url, mix, tally, args, warm_s, seed=0)
    while tally.kinds_answered() < {k.name for k in mix} and sampler.elapsed() < args.seconds / 2:
        load(url, mix, tally, args, 2.0, seed=1000)
    sampler.phase = "pause"
    warm = {"t": round(sampler.elapsed(), 1), **quiet_figures(master)}
    sampler.phase = "run"
    load(url, mix, tally, args, max(1.0, args.seconds - sampler.elapsed()), seed=2000)
    sampler.sample()
    sampler.stop()
    return tally, sampler, warm


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None


def floor_mib(samples: list[dict], phase: str, until_s: float, window_s: float) -> float:
    """The worker's resting size under load: the 10th percentile of the resident sizes sampled
    in `phase` during the `window_s` before `until_s` (at least three samples)."""
    inside = [s["rss_mib"] for s in samples if s["phase"] == phase and s["t"] <= until_s]
    recent = [s["rss_mib"] for s in samples if s["phase"] == phase and until_s - window_s <= s["t"] <= until_s]
    values = sorted(recent if len(recent) >= 3 else inside[-3:])
    return values[int(0.1 * len(values))]


def fd_growth(start: dict[str, int], end: dict[str, int], threads: int) -> dict[str, list[int]]:
    """Descriptor targets held more often at the end than at the start, [start, end]. A file
    may be open once per thread (thread-local SQLite connections), never more; sockets,
    pipes and other handles may not grow at all."""
    grown = {}
    for target, count in end.items():
        allowed = max(start.get(target, 0), threads if target.startswith("/") else 0)
        if count > allowed:
            grown[target] = [start.get(target, 0), count]
    return grown


def summarise(tally: Tally, sampler: Sampler, idle: dict[str, dict], seconds: float, baseline: str) -> dict:
    """The report: answers by code and kind, latencies, and the worker's figures when idle
    (`idle`: start, after_warm_up, end) and under load (every sample); memory growth is the
    resting size at the end over `baseline` ("resting" or "peak") after warm-up."""
    samples, warm_end = sampler.samples, idle["after_warm_up"]["t"]
    every_ok = [ms for values in tally.latency_ms.values() for ms in values]
    codes = {k: dict(v) for k, v in tally.codes.items()}
    by_code: dict[str, int] = defaultdict(int)
    for per_kind in codes.values():
        for code, n in per_kind.items():
            by_code[code] += n
    window = max(0.1 * seconds, 3 * sampler.every)
    rss = {
        "idle_start": idle["start"]["rss_mib"],
        "after_warm_up_resting": floor_mib(samples, "warm-up", warm_end, window),
        "after_warm_up_peak": max(s["rss_mib"] for s in samples if s["phase"] == "warm-up"),
        "end": floor_mib(samples, "run", samples[-1]["t"], window),
        "peak": max(s["rss_mib"] for s in samples),
    }
    return {
        "requests": sum(by_code.values()),
        "by_code": dict(sorted(by_code.items())),
        "by_kind": codes,
        "server_errors": {c: n for c, n in by_code.items() if c.startswith("5") and c != "503"},
        "transport_errors": {c: n for c, n in by_code.items() if not c.isdigit()},
        "wrong_answers": dict(tally.wrong),
        "latency_ms_of_200": {
            "all": {"p50": percentile(every_ok, 0.5), "p99": percentile(every_ok, 0.99)},
            **{k: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99)} for k, v in sorted(tally.latency_ms.items())},
        },
        "warm_up_end_s": warm_end,
        "rss_mib": rss,
        "rss_baseline": baseline,
        "rss_growth_after_warm_up": round(rss["end"] / rss[f"after_warm_up_{baseline}"] - 1, 4),
        "rss_idle_mib": {k: [idle[k]["rss_mib"], idle[k]["rss_anon_mib"], idle[k]["rss_file_mib"]] for k in idle},
        "fds_idle": {k: idle[k]["fds"] for k in idle},
        "fd_growth": fd_growth(idle["start"]["fd_targets"], idle["end"]["fd_targets"], idle["end"]["threads"]),
        "threads_idle": {k: idle[k]["threads"] for k in idle},
        "worker_pids": sorted(sampler.pids),
        "samples": samples,
    }


def verdict(report: dict) -> list[str]:
    """The failed criteria, in words (empty: the soak passed).

    Memory: the resting size under load (`floor_mib`) over the last tenth of the run, against
    the same over the last tenth of warm-up (`--rss-baseline resting`), or against the most the
    worker held during warm-up (`peak`, for runs too short for the resting size to settle; it
    sees a leak only once the leak outgrows the photos in flight). Neither a single sample nor
    the idle worker is compared: a sample swings by hundreds of MiB with the photos in flight
    at that instant (the 29-face photo alone is ~20 MB decoded), and the idle size depends on
    where glibc's free chunks happen to lie.

    Threads: the idle worker at the end against after warm-up, or against the start plus
    gthread's whole pool where that is more (the pool grows to its size as concurrency peaks,
    and never shrinks). Descriptors: what the idle worker holds at the end against the start
    (`fd_growth`)."""
    threads, failed = report["threads_idle"], []
    if report["server_errors"]:
        failed.append(f"5xx other than 503: {report['server_errors']}")
    if report["transport_errors"]:
        failed.append(f"transport errors: {report['transport_errors']}")
    if report["wrong_answers"]:
        failed.append(f"wrong answers: {report['wrong_answers']}")
    if len(report["worker_pids"]) != 1:
        failed.append(f"the worker restarted: pids {report['worker_pids']}")
    if report["rss_growth_after_warm_up"] >= RSS_GROWTH_LIMIT:
        failed.append(f"RSS grew {report['rss_growth_after_warm_up']:.1%} after warm-up: {report['rss_mib']}")
    if report["fd_growth"]:
        failed.append(f"descriptors held at the end and not at the start: {report['fd_growth']}")
    if threads["end"] > max(threads["after_warm_up"], threads["start"] + report["gunicorn_threads"]):
        failed.append(f"threads grew past gthread's pool of {report['gunicorn_threads']}: {threads}")
    return failed


@contextmanager
def started(env: dict[str, str], workdir: Path) -> Iterator[Service]:
    svc = Service(env, workdir / "service.log")
    try:
        svc.wait_ready()
        yield svc
    finally:
        svc.stop()


def service_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    return {
        "FACEFLEET_MODELS_DIR": args.models_dir,
        "FACEFLEET_CACHE_DIR": str(workdir / "cache"),
        "FACEFLEET_METRICS_DIR": str(workdir / "metrics"),
        "FACEFLEET_PROVIDERS": "cpu",
        "FACEFLEET_LOG_LEVEL": "WARNING",
        "FACEFLEET_AUTH": "off",  # loopback only, started here
    }


def run(args: argparse.Namespace) -> dict:
    mix = build_mix(Path(args.images))
    workdir = Path(args.workdir)
    env = service_env(args, workdir)
    models = Settings.from_env({**os.environ, **env}).models  # refused here as `facefleet serve` would refuse it
    require_models(args.models_dir, (models.det_name, models.rec_name), models.verify_models)
    workdir.mkdir(parents=True, exist_ok=True)
    with started(env, workdir) as svc:
        warm_up(svc.url, mix)
        start = quiet_figures(svc.proc.pid)
        tally, sampler, warm = drive(svc.url, mix, svc.proc.pid, args)
        end = quiet_figures(svc.proc.pid)
    report = summarise(
        tally, sampler, {"start": start, "after_warm_up": warm, "end": end}, args.seconds, args.rss_baseline
    )
    report.update(seconds=args.seconds, clients=args.clients, cpus=os.cpu_count())
    report["gunicorn_threads"] = Settings.from_env({**os.environ, **env}).server.gunicorn_threads
    report["failed"] = verdict(report)
    return report


def print_summary(report: dict) -> None:
    lat, rss = report["latency_ms_of_200"]["all"], report["rss_mib"]
    print(f"soak: {report['clients']} clients, {report['seconds']:g} s, {report['requests']} requests")
    print(f"  by code: {report['by_code']}  (5xx other than 503: {sum(report['server_errors'].values())})")
    print(f"  latency of 200s: p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    print(
        f"  RSS MiB: resting at the end {rss['end']} vs {report['rss_baseline']} after warm-up"
        f" ({report['warm_up_end_s']} s) {rss['after_warm_up_' + report['rss_baseline']]}:"
        f" {report['rss_growth_after_warm_up']:+.1%}  (idle start {rss['idle_start']},"
        f" resting after warm-up {rss['after_warm_up_resting']}, peak {rss['peak']})"
    )
    print(f"  idle RSS MiB [all, anonymous, file]: {report['rss_idle_mib']}")
    print(f"  idle fds: {report['fds_idle']}; idle threads: {report['threads_idle']}")
    print("  PASS" if not report["failed"] else "  FAIL: " + "; ".join(report["failed"]))


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: a number above 0 (argparse then names the flag in its one error line)."""

    def parse(text: str) -> float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid int value" names the type
    return parse


def fraction(text: str) -> float:
    """An argparse type: a fraction of the run, above 0 and below 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=positive(float), default=600.0)
    parser.add_argument("--clients", type=positive(int), default=16)
    parser.add_argument("--sample-s", type=positive(float), default=2.0, help="seconds between samples of the worker")
    parser.add_argument("--warmup", type=fraction, default=0.2, help="fraction of the run that is warm-up")
    parser.add_argument(
        "--rss-baseline",
        choices=("resting", "peak"),
        default="resting",
        help="memory after warm-up: its resting size, or its peak (short runs); see verdict()",
    )
    parser.add_argument("--models-dir", default=str(ROOT / ".cache" / "default-pack"))
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "images"))
    parser.add_argument("--workdir", default=str(ROOT / ".cache" / "bench-soak"))
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    report = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print_summary(report)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(one_line("soak", main))
