"""`facefleet bench load URL`: closed-loop clients against a running service, bounded in time and
count, loopback-only unless a target is explicitly allowed, presenting the appliance's API key
(service/ops/client.py). Reports what operators ask first: requests/s, images/s, faces/s, latency
percentiles, errors by kind; JSON and a latency plot. A run of mostly errors is a failure, not
a throughput figure."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import ssl
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from facefleet.errors import FacefleetError
from facefleet.ops.client import NO_KEY_HINT, tls_failure


def require_loopback(url: str, allow_remote: bool) -> None:
    """A load test hits only this machine unless the operator says otherwise."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise FacefleetError(f"cannot resolve {host!r}") from None
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote and not allow_remote:
        raise FacefleetError(
            f"{host} is not this machine ({', '.join(sorted(remote))}); pass --allow-remote to load a remote appliance"
        )


def _body(images: list[Path]) -> bytes:
    data = [base64.b64encode(p.read_bytes()).decode() for p in images]
    return json.dumps({"images": {"data": data}, "extract_embedding": True}).encode()


def _one(
    url: str, body: bytes, timeout: float, headers: dict[str, str], tls: ssl.SSLContext | None = None
) -> tuple[str, float, int, int]:
    """(outcome, seconds, images ok, faces) of one /extract."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/extract", data=body, headers={"Content-Type": "application/json", **headers}
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls) as response:
            payload = json.loads(response.read())
        seconds = time.perf_counter() - start
        ok = [d for d in payload["data"] if d["status"] == "ok"]
        return "ok", seconds, len(ok), sum(len(d["faces"]) for d in ok)
    except urllib.error.HTTPError as exc:
        return f"http_{exc.code}", time.perf_counter() - start, 0, 0
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):  # an unverified appliance is never sent the key
            return f"tls: {tls_failure(exc.reason)}", time.perf_counter() - start, 0, 0
        return f"connection: {type(exc.reason).__name__}", time.perf_counter() - start, 0, 0
    except (TimeoutError, OSError) as exc:
        return f"connection: {type(getattr(exc, 'reason', exc)).__name__}", time.perf_counter() - start, 0, 0


def run(
    url: str,
    images: list[Path],
    clients: int,
    seconds: float,
    max_requests: int,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """Closed-loop clients until `seconds` or `max_requests`; `headers` carry the API key, `tls`
    verifies an https:// service (the fleet CA: `--cacert`)."""
    body = _body(images)
    lock = threading.Lock()
    samples: list[tuple[float, str, float, int, int]] = []  # (at, outcome, seconds, images, faces)
    t0 = time.monotonic()
    deadline = t0 + seconds
    bar = tqdm(total=max_requests, desc="requests", unit="req", leave=False)
    started = [0]  # requests handed out: the bound holds with requests in flight

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if started[0] >= max_requests:
                    return
                started[0] += 1
            outcome, took, ok, faces = _one(url, body, timeout, headers or {}, tls)
            with lock:
                samples.append((time.monotonic() - t0, outcome, took, ok, faces))
                bar.update(1)

    with MemoryWatch(url, headers or {}, tls) as memory, ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    bar.close()
    return {**summarise(samples, time.monotonic() - t0, clients, len(images)), **memory.summary()}


class MemoryWatch:
    """The serving workers' resident memory during the run, from /info's `memory` block once a second (each
    answer is one worker's): the peak seen and the budget, 1.5 x the model files + 250 MiB."""

    def __init__(self, url: str, headers: dict[str, str], tls: ssl.SSLContext | None) -> None:
        self._request = urllib.request.Request(f"{url.rstrip('/')}/info", headers=headers)
        self._tls = tls
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)
        self.peak: dict[int, int] = {}  # worker pid: largest resident bytes seen
        self.budget = 0

    def _sample(self) -> None:
        try:
            with urllib.request.urlopen(self._request, timeout=5, context=self._tls) as response:
                memory = json.loads(response.read()).get("memory")
        except (urllib.error.URLError, TimeoutError, OSError, ValueError):
            return
        if memory:
            pid = int(memory["worker_pid"])
            self.peak[pid] = max(self.peak.get(pid, 0), int(memory["resident_bytes"]))
            self.budget = int(memory["budget_bytes"])

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(1.0):
                return

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # after the load too: what the worker kept

    def summary(self) -> dict[str, Any]:
        if not self.peak:
            return {"worker_resident_mib_peak": None, "memory_budget_mib": None}
        peak = max(self.peak.values())
        return {
            "worker_resident_mib_peak": round(peak / 2**20, 1),
            "memory_budget_mib": round(self.budget / 2**20, 1),
            "within_memory_budget": peak <= self.budget,
        }


def summarise(
    samples: list[tuple[float, str, float, int, int]], elapsed: float, clients: int, per_request: int
) -> dict[str, Any]:
    ok = sorted(s[2] * 1000 for s in samples if s[1] == "ok")

    def pct(q: float) -> float | None:
        return round(ok[min(len(ok) - 1, int(q * len(ok)))], 1) if ok else None

    errors: dict[str, int] = {}
    for sample in samples:
        if sample[1] != "ok":
            errors[sample[1]] = errors.get(sample[1], 0) + 1
    return {
        "clients": clients,
        "images_per_request": per_request,
        "elapsed_s": round(elapsed, 2),
        "requests": len(samples),
        "ok": len(ok),
        "errors": errors,
        "requests_per_s": round(len(ok) / elapsed, 2) if elapsed else 0.0,
        "images_per_s": round(sum(s[3] for s in samples) / elapsed, 2) if elapsed else 0.0,
        "faces_per_s": round(sum(s[4] for s in samples) / elapsed, 2) if elapsed else 0.0,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": round(ok[-1], 1) if ok else None,
        "mean_ms": round(statistics.fmean(ok), 1) if ok else None,
        "timeline": [[round(at, 3), outcome, round(took * 1000, 1)] for at, outcome, took, _, _ in samples],
    }


def mostly_failed(report: dict[str, Any], with_key: bool) -> str:
    """One line when more than half the requests failed (throughput of errors is no figure), else ""."""
    total = report["requests"]
    failed = total - report["ok"]
    if total and failed * 2 <= total:
        return ""
    if not total:
        return "no request was answered"
    kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(report["errors"].items(), key=lambda e: -e[1]))
    line = f"{failed} of {total} requests failed ({kinds}): these figures measure errors, not the service"
    if report["errors"].get("http_401", 0) * 2 > total:
        line += "; the service refused the key" if with_key else f"; the service asks for an API key: {NO_KEY_HINT}"
    if any(kind.startswith("tls: ") for kind in report["errors"]):
        line += "; its certificate was not verified: give the fleet CA with --cacert /etc/facefleet/tls/ca.crt"
    return line


def plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FacefleetError("the plot needs matplotlib: pip install facefleet[bench]") from None
    figure, axis = plt.subplots(figsize=(7, 3.5))
    ok = [(at, ms) for at, outcome, ms in report["timeline"] if outcome == "ok"]
    bad = [(at, ms) for at, outcome, ms in report["timeline"] if outcome != "ok"]
    for points, size, marker, label in ((ok, 6, "o", "ok"), (bad, 10, "x", "error")):
        if points:
            seconds, latencies = zip(*points, strict=True)
            axis.scatter(seconds, latencies, s=size, marker=marker, label=label)
    axis.set_xlabel("seconds since start")
    axis.set_ylabel("latency (ms)")
    axis.set_title(f"{report['clients']} clients: {report['requests_per_s']} req/s, p95 {report['p95_ms']} ms")
    axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
