"""A bounded attack on one appliance on this machine: do slow and greedy clients take it down?

Phases (each bounded by the hard --seconds deadline; every socket is closed in a `finally`):
1. idle: the median time of an /extract of one photo, alone (a new connection each, as a fresh client);
2. attack: 200 connections sending their request header one byte at a time (no key needed) and 20 uploads
   sending their body at 1 KB/s (with the key), from another loopback address (--attack-source, 127.0.0.2:
   an ordinary client, not the exempt 127.0.0.1), each reopened when the appliance closes it; meanwhile
   /livez is probed every 0.5 s (criterion: max and p99 < 1 s) and /extract of the same photo is timed
   (criterion: median <= 1.5 x idle);
3. the PNG bomb: one request of 64 greyscale PNGs of 6000x6000 pixels (zeros, about 35 KB each), expected to
   be refused with a 4xx, with the worker's peak RSS growth (VmHWM after `echo 5 > /proc/<pid>/clear_refs`)
   under 300 MB.

By default it starts `facefleet serve` (keys on, CPU, the default pack) and the nginx front of
roles/facefleet_front in front of it (tests/front.py: the role's own template, a throwaway CA) on free ports;
`--no-front` attacks the bare gunicorn instead (the "before" figures); `--url` (with `--ca`, `--key`, and
`--service-pid` for the RSS figure) attacks one already running. Loopback only: other targets are refused.
Prints one table; `--json PATH` writes the figures; exit 1 when a criterion fails.

    .venv/bin/python bench/attack.py              # behind the front
    .venv/bin/python bench/attack.py --no-front   # bare gunicorn
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import secrets
import signal
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import BenchInputError, require_file, require_models  # noqa: E402
from facefleet.errors import FacefleetError  # noqa: E402
from facefleet.ops.loadtest import require_loopback  # noqa: E402
from tests.server import Service  # noqa: E402

PHOTO = "obama.jpg"
LIVEZ_MAX_S = 1.0
EXTRACT_RATIO = 1.5
BOMB_RSS_MB = 300.0
BOMB_IMAGES, BOMB_SIDE = 64, 6000
# what a slow-header connection sends, one byte at a time (then "a" forever: the header never ends)
ATTACK_TIMEOUT_S = 20.0  # longest wait for one probe under attack
BOMB_RESERVE_S = 70.0  # the time kept for the appliance to settle and the bomb, after the attack
HEADER_TRICKLE = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@dataclass
class Target:
    """Where the attack goes: the base URL, the CA that verifies it (https), the key, the gunicorn master."""

    url: str
    ca: str | None
    key: str
    master_pid: int | None

    @property
    def address(self) -> tuple[str, int]:
        parts = urllib.parse.urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    @property
    def verify(self) -> str | bool:
        return self.ca or True


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def remaining(deadline: float) -> float:
    return deadline - time.monotonic()


# ---------------------------------------------------------------- normal clients
def extract_body(photo: bytes) -> bytes:
    return json.dumps({"images": {"data": [base64.b64encode(photo).decode()]}}).encode()


def post_extract(target: Target, body: bytes, timeout: float) -> requests.Response:
    """One /extract with the appliance's key, verified with its CA."""
    return requests.post(
        f"{target.url}/extract",
        data=body,
        headers={"X-API-Key": target.key, "Content-Type": "application/json"},
        verify=target.verify,
        timeout=timeout,
    )


def timed_extract(target: Target, body: bytes, timeout: float) -> tuple[float, int]:
    """Seconds and status of one /extract (a new connection each time, as a fresh client); a timeout or
    a refused connection counts as the whole timeout, status 0."""
    start = time.monotonic()
    try:
        answer = post_extract(target, body, timeout)
        return time.monotonic() - start, answer.status_code
    except requests.RequestException:
        return max(timeout, time.monotonic() - start), 0


def timed_livez(target: Target, timeout: float) -> tuple[float, int]:
    start = time.monotonic()
    try:
        answer = requests.get(f"{target.url}/livez", verify=target.verify, timeout=timeout)
        return time.monotonic() - start, answer.status_code
    except requests.RequestException:
        return max(timeout, time.monotonic() - start), 0


# ---------------------------------------------------------------- slow clients
@dataclass
class Attacker:
    """Slow-header and slow-body connections, kept open (reopened when closed) by one thread."""

    target: Target
    source: str
    headers: int
    bodies: int
    body_bytes: int = 5_000_000
    header_socks: list[socket.socket | None] = field(default_factory=list)
    body_socks: list[socket.socket | None] = field(default_factory=list)
    opened: int = 0
    closed_by_peer: int = 0
    refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    _sent: list[int] = field(default_factory=list)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self.target.address, timeout=5, source_address=(self.source, 0))
        except OSError:
            self.refused += 1
            return None
        try:
            if self.target.tls:
                context = ssl.create_default_context(cafile=self.target.ca)
                sock = context.wrap_socket(sock, server_hostname=self.target.address[0])
            sock.settimeout(2)
        except OSError:
            sock.close()
            self.refused += 1
            return None
        self.opened += 1
        return sock

    def _open_header(self) -> socket.socket | None:
        sock = self._connect()
        if sock is not None and not self._send(sock, HEADER_TRICKLE[:1]):
            return None
        return sock

    def _open_body(self) -> socket.socket | None:
        sock = self._connect()
        head = (
            f"POST /extract HTTP/1.1\r\nHost: {self.target.address[0]}\r\nX-API-Key: {self.target.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {self.body_bytes}\r\n\r\n"
            '{"images": {"data": ["'
        ).encode()
        if sock is not None and not self._send(sock, head):
            return None
        return sock

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        try:
            sock.sendall(data)
            return True
        except OSError:
            self.closed_by_peer += 1
            sock.close()
            return False

    def run(self) -> None:
        """Round after round, one second apart: the next header byte on every other slow-header connection
        (one byte per connection every 2 s, a header that never ends) and 1 KB on every upload."""
        rounds = 0
        while not self.stop.is_set():
            for i, sock in enumerate(self.header_socks):
                if self.stop.is_set():
                    return
                if sock is None:
                    self.header_socks[i] = self._open_header()
                elif (rounds + i) % 2 == 0:
                    sent = self._sent[i] = self._sent[i] + 1
                    if not self._send(sock, HEADER_TRICKLE[sent : sent + 1] or b"a"):
                        self.header_socks[i] = None
            for i, sock in enumerate(self.body_socks):
                if self.stop.is_set():
                    return
                if sock is None:
                    self.body_socks[i] = self._open_body()
                elif not self._send(sock, b"A" * 1024):
                    self.body_socks[i] = None
            rounds += 1
            self.stop.wait(1.0)

    def open_all(self) -> None:
        self._sent = [0] * self.headers
        self.header_socks = [self._open_header() for _ in range(self.headers)]
        self.body_socks = [self._open_body() for _ in range(self.bodies)]

    def open_now(self) -> int:
        return sum(s is not None for s in self.header_socks + self.body_socks)

    def close_all(self) -> None:
        for sock in self.header_socks + self.body_socks:
            if sock is not None:
                with suppress(OSError):
                    sock.close()
        self.header_socks, self.body_socks = [], []


@contextmanager
def attacking(target: Target, source: str, headers: int, bodies: int) -> Iterator[Attacker]:
    attacker = Attacker(target, source, headers, bodies)
    thread = threading.Thread(target=attacker.run, daemon=True)
    try:
        attacker.open_all()
        thread.start()
        yield attacker
    finally:
        attacker.stop.set()
        if thread.is_alive():
            thread.join(timeout=30)
        attacker.close_all()


# ---------------------------------------------------------------- the phases
def idle_phase(target: Target, body: bytes, deadline: float, runs: int) -> dict[str, Any]:
    for _ in range(3):  # warm-up: first requests pay for lazy set-up
        timed_extract(target, body, timeout=min(60, remaining(deadline)))
    times = []
    for _ in range(runs):
        if remaining(deadline) < 5:
            break
        seconds, status = timed_extract(target, body, timeout=min(60, remaining(deadline)))
        if status != 200:
            raise FacefleetError(f"an idle /extract answered {status}: the appliance is not serving")
        times.append(seconds)
    return {"extract_median_s": round(statistics.median(times), 4), "extract_runs": len(times)}


def attack_phase(
    target: Target, body: bytes, args: argparse.Namespace, deadline: float, idle_s: float
) -> dict[str, Any]:
    livez: list[float] = []
    livez_codes: dict[str, int] = {}
    extract: list[float] = []
    extract_codes: dict[str, int] = {}
    stop = threading.Event()

    def probe_livez() -> None:
        while not stop.is_set():
            seconds, status = timed_livez(target, timeout=min(ATTACK_TIMEOUT_S, max(1, remaining(deadline))))
            livez.append(seconds)
            livez_codes[str(status)] = livez_codes.get(str(status), 0) + 1
            stop.wait(0.5)

    reserve = 10.0 if args.no_bomb else BOMB_RESERVE_S
    started = time.monotonic()
    with attacking(target, args.attack_source, args.slow_headers, args.slow_bodies) as attacker:
        held_at_start = attacker.open_now()
        time.sleep(min(3.0, max(0, remaining(deadline) - 10)))
        prober = threading.Thread(target=probe_livez, daemon=True)
        prober.start()
        try:
            for _ in range(args.extract_runs):
                if remaining(deadline) < reserve + 5:
                    break
                # a timeout counts as ATTACK_TIMEOUT_S: enough to fail the criterion, short enough to go on
                timeout = min(ATTACK_TIMEOUT_S, remaining(deadline) - reserve)
                seconds, status = timed_extract(target, body, timeout=timeout)
                extract.append(seconds)
                extract_codes[str(status)] = extract_codes.get(str(status), 0) + 1
            # the attack lasts at least --attack-s, leaving the bomb its time
            stop.wait(max(0.0, min(started + args.attack_s - time.monotonic(), remaining(deadline) - reserve)))
        finally:
            stop.set()
            prober.join(timeout=15)
        held_at_end = attacker.open_now()
        counts = {"opened": attacker.opened, "closed_by_peer": attacker.closed_by_peer, "refused": attacker.refused}
    median = statistics.median(extract) if extract else float("inf")
    return {
        "slow_headers": args.slow_headers,
        "slow_bodies": args.slow_bodies,
        "held_open": {"at_start": held_at_start, "at_end": held_at_end},
        "attack_connections": counts,
        "livez_probes": len(livez),
        "livez_codes": livez_codes,
        "livez_max_s": round(max(livez), 4) if livez else None,
        "livez_p99_s": round(percentile(livez, 0.99), 4) if livez else None,
        "extract_runs": len(extract),
        "extract_codes": extract_codes,
        "extract_median_s": round(median, 4),
        "extract_ratio_to_idle": round(median / idle_s, 2) if idle_s else None,
    }


def settle(target: Target, body: bytes, deadline: float) -> float:
    """Seconds until the appliance answers an /extract again after the attack (requests a bare gunicorn
    still holds finish or time out in its queue), so that the bomb meets a working appliance."""
    start = time.monotonic()
    while remaining(deadline) > 20:
        if timed_extract(target, body, timeout=min(10, remaining(deadline) - 20))[1] == 200:
            break
        time.sleep(1)
    return round(time.monotonic() - start, 1)


def png_bomb() -> bytes:
    """64 identical 6000x6000 greyscale PNGs made from zeros, as one /extract body."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (BOMB_SIDE, BOMB_SIDE), 0).save(out, format="PNG", optimize=True)
    one = base64.b64encode(out.getvalue()).decode()
    return json.dumps({"images": {"data": [one] * BOMB_IMAGES}}).encode()


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return sorted(int(p) for p in children.read_text().split()) if children.exists() else []


def status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def bomb_phase(target: Target, deadline: float) -> dict[str, Any]:
    body = png_bomb()
    workers = worker_pids(target.master_pid) if target.master_pid else []
    before: dict[int, int] = {}
    for pid in workers:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before[pid] = status_kb(pid, "VmHWM")
    start = time.monotonic()
    try:
        answer = post_extract(target, body, max(5, remaining(deadline) - 5))
        status, code = answer.status_code, _error_code(answer)
    except requests.RequestException as exc:
        status, code = 0, type(exc).__name__
    seconds = time.monotonic() - start
    growth = [(status_kb(pid, "VmHWM") - before[pid]) / 1024 for pid in workers if Path(f"/proc/{pid}").exists()]
    return {
        "body_mb": round(len(body) / 1e6, 2),
        "status": status,
        "error_code": code,
        "seconds": round(seconds, 2),
        "worker_peak_rss_growth_mb": round(max(growth), 1) if growth else None,
    }


def _error_code(answer: requests.Response) -> str:
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


# ---------------------------------------------------------------- verdict and output
def verdict(report: dict[str, Any]) -> list[str]:
    failed = []
    attack, bomb = report["attack"], report["bomb"]
    for name in ("livez_max_s", "livez_p99_s"):
        if attack[name] is None or attack[name] >= LIVEZ_MAX_S:
            failed.append(f"/livez {name[6:-2]} {attack[name]} s under attack (criterion < {LIVEZ_MAX_S:g} s)")
    if sum(n for code, n in attack["livez_codes"].items() if code != "200"):
        failed.append(f"/livez answered other than 200 under attack: {attack['livez_codes']}")
    ratio = attack["extract_ratio_to_idle"]
    if ratio is None or ratio > EXTRACT_RATIO or set(attack["extract_codes"]) != {"200"}:
        failed.append(f"/extract under attack {ratio}x idle, codes {attack['extract_codes']} (criterion <= 1.5x)")
    if bomb is not None:
        if not 400 <= bomb["status"] < 500:
            failed.append(f"the PNG bomb answered {bomb['status']} {bomb['error_code']} (criterion: a 4xx)")
        growth = bomb["worker_peak_rss_growth_mb"]
        if growth is None or growth >= BOMB_RSS_MB:
            failed.append(f"the PNG bomb grew the worker's peak RSS by {growth} MB (criterion < {BOMB_RSS_MB:g})")
    return failed


def print_table(report: dict[str, Any]) -> None:
    idle, attack, bomb = report["idle"], report["attack"], report["bomb"]
    rows = [
        ("target", report["target"], ""),
        ("idle /extract median", f"{idle['extract_median_s'] * 1000:.0f} ms ({idle['extract_runs']} runs)", ""),
        (
            "attack",
            f"{attack['slow_headers']} slow headers + {attack['slow_bodies']} slow bodies from "
            f"{report['attack_source']}; open at start/end {attack['held_open']['at_start']}/"
            f"{attack['held_open']['at_end']}; {attack['attack_connections']}",
            "",
        ),
        ("/livez max", f"{attack['livez_max_s']} s", f"< {LIVEZ_MAX_S:g} s"),
        (
            "/livez p99",
            f"{attack['livez_p99_s']} s ({attack['livez_probes']} probes, {attack['livez_codes']})",
            "< 1 s",
        ),
        (
            "/extract median",
            f"{attack['extract_median_s'] * 1000:.0f} ms = {attack['extract_ratio_to_idle']}x idle "
            f"({attack['extract_codes']})",
            f"<= {EXTRACT_RATIO:g}x",
        ),
    ]
    if bomb is not None:
        rows += [
            ("settled after the attack", f"{report['settle_s']} s", ""),
            ("PNG bomb", f"{bomb['status']} {bomb['error_code']} in {bomb['seconds']} s ({bomb['body_mb']} MB)", "4xx"),
            ("worker peak RSS growth", f"{bomb['worker_peak_rss_growth_mb']} MB", f"< {BOMB_RSS_MB:g} MB"),
        ]
    width = max(len(r[0]) for r in rows)
    for name, value, criterion in rows:
        print(f"{name:<{width}}  {value}" + (f"   [{criterion}]" if criterion else ""))
    print("PASS" if not report["failed"] else "FAIL: " + "; ".join(report["failed"]))


# ---------------------------------------------------------------- the appliance under attack
@contextmanager
def appliance(args: argparse.Namespace, stack: ExitStack) -> Iterator[Target]:
    """The target: the one given (--url), or a `facefleet serve` started here, with the front unless --no-front."""
    if args.url:
        require_loopback(args.url, allow_remote=False)
        key = args.key or os.environ.get("FACEFLEET_API_KEY", "")
        yield Target(args.url.rstrip("/"), args.ca, key, args.service_pid)
        return
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facefleet-attack-")))
    key = secrets.token_urlsafe(24)
    (folder / "api-keys").write_text(key + "\n")
    svc = Service(
        {
            "FACEFLEET_MODELS_DIR": args.models_dir,
            "FACEFLEET_CACHE_DIR": str(ROOT / ".cache"),
            "FACEFLEET_METRICS_DIR": str(folder / "metrics"),
            "FACEFLEET_PROVIDERS": "cpu",
            "FACEFLEET_LOG_LEVEL": "WARNING",
            "FACEFLEET_AUTH": "on",
            "FACEFLEET_API_KEYS_FILE": str(folder / "api-keys"),
            **dict(pair.split("=", 1) for pair in args.service_env),
        },
        folder / "service.log",
    )
    stack.callback(svc.stop)
    svc.wait_ready(timeout=min(120, args.seconds / 2))
    if args.no_front:
        yield Target(svc.url, None, key, svc.proc.pid)
        return
    from tests.front import Front

    front = Front(folder / "front", svc.port)
    stack.callback(front.stop)
    yield Target(front.url, str(front.pki.ca), key, svc.proc.pid)


def run(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.seconds
    photo = require_file(Path(args.images) / PHOTO, "--images").read_bytes()
    if not args.url:
        require_models(args.models_dir)  # what `facefleet serve` would refuse, in one line before it starts
    body = extract_body(photo)
    with ExitStack() as stack, appliance(args, stack) as target:
        if not target.key:
            raise FacefleetError("no API key: pass --key or set FACEFLEET_API_KEY")
        report: dict[str, Any] = {"target": target.url, "front": not args.no_front, "attack_source": args.attack_source}
        report["idle"] = idle_phase(target, body, deadline, args.extract_runs)
        report["attack"] = attack_phase(target, body, args, deadline, report["idle"]["extract_median_s"])
        report["settle_s"] = settle(target, body, deadline)
        report["bomb"] = None if args.no_bomb or remaining(deadline) < 10 else bomb_phase(target, deadline)
    report["failed"] = verdict(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=240.0, help="hard deadline of the whole run")
    parser.add_argument("--attack-s", type=float, default=20.0, help="shortest time the attack phase lasts")
    parser.add_argument("--no-front", action="store_true", help="attack a bare gunicorn (the 'before' figures)")
    parser.add_argument("--url", help="a running appliance on this machine instead of starting one")
    parser.add_argument("--ca", help="with --url https://: the CA file that verifies it")
    parser.add_argument("--key", help="with --url: the API key (default: $FACEFLEET_API_KEY)")
    parser.add_argument("--service-pid", type=int, help="with --url: the gunicorn master, for the RSS figure")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the service started here, e.g. FACEFLEET_MAX_REQUEST_PIXELS=10000000000 (repeatable)",
    )
    parser.add_argument("--attack-source", default="127.0.0.2", help="loopback address the slow clients use")
    parser.add_argument("--slow-headers", type=int, default=200)
    parser.add_argument("--slow-bodies", type=int, default=20)
    parser.add_argument("--extract-runs", type=int, default=20, help="timed /extract requests, idle and under attack")
    parser.add_argument("--no-bomb", action="store_true", help="skip the PNG bomb")
    parser.add_argument("--models-dir", default=str(ROOT / ".cache" / "default-pack"))
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "images"))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if any("=" not in pair for pair in args.service_env):
        parser.error("--service-env takes KEY=VALUE")
    if not args.attack_source.startswith("127."):
        parser.error("--attack-source must be a loopback address (127.x.y.z)")
    signal.signal(signal.SIGALRM, _too_late)
    signal.alarm(int(args.seconds) + 60)  # the last resort: every phase already keeps the deadline
    try:
        report = run(args)
    finally:
        signal.alarm(0)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print_table(report)
    return 1 if report["failed"] else 0


def _too_late(signum: int, frame: object) -> None:
    raise TimeoutError("bench/attack.py overran its --seconds deadline; stopped")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchInputError, FacefleetError, OSError, RuntimeError, TimeoutError) as exc:
        print(f"attack: {exc}", file=sys.stderr)
        sys.exit(2)
