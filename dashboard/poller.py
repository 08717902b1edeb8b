"""The embedded backend's poller: every appliance's /info, /health and exporter /metrics,
fetched concurrently with a per-host timeout, so a dead or slow host delays nobody; each
cycle's figures go to SQLite and the latest view of every appliance stays in memory."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from facefleet.dashboard import answers, figures, targets
from facefleet.dashboard.status import classify, gpu_expected, provider_states
from facefleet.dashboard.store import Store
from facefleet.settings import DashboardSettings

log = logging.getLogger("facefleet.dashboard")
FAILURES_KEPT = 20
FIGURES = (
    "p50_s",
    "p95_s",
    "rate_rps",
    "error_ratio",
    "client_error_ratio",
    "auth_failure_ratio",
    "gpu_load",
    "temperature",
    "power_watts",
)


class UnreachableError(Exception):
    """The host refused, reset, or does not resolve."""


class TimedOutError(Exception):
    """The host accepted but did not answer within the timeout."""


def fetch(url: str, timeout: float, api_key: str = "") -> tuple[int, bytes]:
    headers = {"User-Agent": "facefleet-dashboard"}
    if api_key:
        headers["X-API-Key"] = api_key  # stays server-side: never sent to a browser
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _read_within(response, 8 * 1024 * 1024, time.monotonic() + timeout, timeout)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(1024 * 1024)
    except TimeoutError as exc:
        raise TimedOutError(f"no answer within {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError | socket.timeout):
            raise TimedOutError(f"no answer within {timeout:g} s") from exc
        raise UnreachableError(str(exc.reason)) from exc
    except (ConnectionError, OSError) as exc:
        raise UnreachableError(str(exc)) from exc
    except http.client.HTTPException as exc:  # not HTTP, or a body cut short: not an OSError
        raise UnreachableError(f"no valid HTTP answer: {type(exc).__name__}") from exc


def _read_within(response: http.client.HTTPResponse, limit: int, deadline: float, timeout: float) -> bytes:
    """The body (up to `limit` bytes) by `deadline`: a host trickling a byte at a time never
    trips the socket's per-read timeout, and would hold the whole cycle."""
    chunks, size = [], 0
    while size < limit:
        chunk = response.read1(min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() > deadline:
            raise TimedOutError(f"answer not complete within {timeout:g} s")
    return b"".join(chunks)


def _json(status_body: tuple[int, bytes]) -> dict[str, Any]:
    try:
        value = json.loads(status_body[1])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Poller:
    def __init__(self, settings: DashboardSettings, store: Store) -> None:
        self.settings, self.store = settings, store
        self._pool = ThreadPoolExecutor(settings.pool, thread_name_prefix="poll")
        self._lock = threading.Lock()
        self._scrapes: dict[str, figures.Scrape] = {}
        self._failures: dict[str, deque] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.last_cycle_s: float | None = None
        self.fleet_error = ""
        self._stop = threading.Event()

    # ------------------------------------------------------------ one appliance
    def _poll(self, appliance: targets.Appliance) -> dict[str, Any]:
        timeout, key = self.settings.timeout_s, self.settings.appliance_api_key
        snapshot: dict[str, Any] = {"appliance": appliance, "at": time.time()}
        try:
            info_answer = fetch(f"{appliance.service}/info", timeout, key)
            health_answer = fetch(f"{appliance.service}/health", timeout, key)
        except UnreachableError as exc:
            snapshot["unreachable"] = f"service unreachable: {exc}"
            return snapshot
        except TimedOutError as exc:
            snapshot["timed_out"] = f"service slow: {exc}"
            return snapshot
        by_path = {"/info": info_answer, "/health": health_answer}
        refused = [f"{path} answered HTTP {code}" for path, (code, _) in by_path.items() if code in (401, 403)]
        if refused:
            snapshot["unauthorized"] = f"{_refusal(bool(key))} ({', '.join(refused)})"
        else:
            info = answers.clean_info(_json(info_answer))
            snapshot.update(info=info, health=_json(health_answer))
            if info_answer[0] != 200 or not info:
                snapshot["info_error"] = f"/info answered HTTP {info_answer[0]}{'' if info else ', not a JSON object'}"
        self._scrape_exporter(appliance, snapshot)
        return snapshot

    def _scrape_exporter(self, appliance: targets.Appliance, snapshot: dict[str, Any]) -> None:
        """The exporter's figures; the exporter needs no key, so an unauthorized appliance has them too."""
        timeout = self.settings.timeout_s
        try:
            code, body = fetch(f"{appliance.exporter}/metrics", timeout)
            if code == 200:
                snapshot["scrape"] = figures.parse(body.decode(errors="replace"), snapshot["at"])
            else:
                snapshot["exporter_error"] = f"exporter answered HTTP {code}"
        except (UnreachableError, TimedOutError, ValueError) as exc:
            snapshot["exporter_error"] = f"exporter: {exc}"

    def _view(self, snapshot: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the in-memory view, the history row) of one appliance's poll."""
        appliance: targets.Appliance = snapshot["appliance"]
        scrape: figures.Scrape | None = snapshot.get("scrape")
        info = snapshot.get("info") or {}
        models = info.get("models") or {}
        providers = {str(m.get("name")): str(m.get("active_provider")) for m in models.values() if isinstance(m, dict)}
        if not providers and scrape:
            providers = dict(scrape.providers)
        found = figures.between(self._scrapes.get(appliance.name), scrape) if scrape else figures.Figures()
        if scrape:
            self._scrapes[appliance.name] = scrape
        chains = {
            str(m.get("name")): [a.get("provider") for a in m.get("attempts", [])]
            for m in models.values()
            if isinstance(m, dict)
        }
        configured = (info.get("defaults") or {}).get("providers")
        gpu = gpu_expected(
            chains,
            configured if isinstance(configured, list) else [],
            scrape.jetson if scrape else None,
            scrape.gpu_load if scrape else None,
            scrape.fallbacks if scrape else {},
        )
        status, reason = classify(
            {
                **snapshot,
                "providers": providers,
                "error_ratio": found.error_ratio,
                "auth_failure_ratio": found.auth_failure_ratio,
                "jetson": scrape.jetson if scrape else None,
                "gpu_expected": gpu,
            }
        )
        if snapshot.get("exporter_error") and status == "ok":
            reason = snapshot["exporter_error"]
        elif scrape and scrape.probe_failure and status == "ok":
            reason = f"the exporter's probe of the service fails ({scrape.probe_failure})"
        previous = self.views.get(appliance.name, {})
        seen = snapshot["at"] if status in ("ok", "degraded") else previous.get("last_seen")
        view = {
            "name": appliance.name,
            "group": appliance.group,
            "service": appliance.service,
            "exporter": appliance.exporter,
            "status": status,
            "reason": reason,
            "polled": snapshot["at"],
            "last_seen": seen,
            "providers": providers,
            "chains": chains,
            "gpu_expected": gpu,  # why a GPU is expected; "" on a CPU appliance (its charts say "no GPU")
            "provider_states": provider_states(providers, gpu),
            "versions": _versions(info, scrape),
            "galleries": _galleries(info or previous.get("info") or {}),
            "info": info or previous.get("info"),
            "gpu_load": scrape.gpu_load if scrape else None,
            "temperature": scrape.temperature if scrape else None,
            "power_watts": scrape.power_watts if scrape else None,
            "power_mode": scrape.power_mode if scrape else None,
            "p50_s": found.p50_s,
            "p95_s": found.p95_s,
            "rate_rps": found.rate_rps,
            "error_ratio": found.error_ratio,
            "client_error_ratio": found.client_error_ratio,
            "auth_failure_ratio": found.auth_failure_ratio,
        }
        if status != "ok":
            self._failures.setdefault(appliance.name, deque(maxlen=FAILURES_KEPT)).append((snapshot["at"], reason))
        view["failures"] = list(self._failures.get(appliance.name, ()))
        row = {
            "appliance": appliance.name,
            "at": snapshot["at"],
            "status": status,
            "reason": reason,
            "providers": providers,
            **{k: view[k] for k in FIGURES},
        }
        return view, row

    # ------------------------------------------------------------ the fleet
    def cycle(self) -> float:
        """Poll every appliance once, concurrently; returns the cycle's wall time."""
        start = time.perf_counter()
        try:
            fleet = targets.load(self.settings)
            self.fleet_error = ""
        except (OSError, ValueError) as exc:
            self.fleet_error = f"cannot read the appliance list: {exc}"
            log.warning(self.fleet_error)
            fleet = []
        snapshots = list(self._pool.map(self._poll, fleet))
        views, rows = {}, []
        with self._lock:
            for snapshot in snapshots:
                view, row = self._view(snapshot)
                views[view["name"]] = view
                rows.append(row)
            flag_lagging_galleries(views)
            self.views = views
        if rows:
            self.store.add(rows)
        self.last_cycle_s = time.perf_counter() - start
        return self.last_cycle_s

    def run_forever(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.cycle()
            except Exception:  # the poller must outlive any one bad answer
                log.exception("poll cycle failed")
            self._stop.wait(max(0.0, self.settings.poll_interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        threading.Thread(target=self.run_forever, name="poller", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def _refusal(with_key: bool) -> str:
    if with_key:
        return "the appliance refuses the dashboard's API key"
    return "the appliance asks for an API key and the dashboard has none (FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE)"


def _galleries(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{gallery: {version, checksum, subjects}} from an appliance's /info; garbage is skipped."""
    items = info.get("galleries")
    out: dict[str, dict[str, Any]] = {}
    for g in items if isinstance(items, list) else []:
        if isinstance(g, dict) and isinstance(g.get("name"), str) and isinstance(g.get("version"), int):
            out[g["name"]] = {"version": g["version"], "checksum": str(g.get("checksum", "")), "lagging_behind": None}
            out[g["name"]]["subjects"] = g.get("subjects") if isinstance(g.get("subjects"), int) else None
    return out


def flag_lagging_galleries(views: dict[str, dict[str, Any]]) -> None:
    """Mark each appliance's gallery whose version is behind the newest in the fleet: an
    appliance the last bundle did not reach still answers, with yesterday's identities."""
    newest: dict[str, int] = {}
    for view in views.values():
        for name, g in view["galleries"].items():
            newest[name] = max(newest.get(name, 0), g["version"])
    for view in views.values():
        for name, g in view["galleries"].items():
            g["lagging_behind"] = newest[name] if g["version"] < newest[name] else None


def _versions(info: dict[str, Any], scrape: figures.Scrape | None) -> dict[str, str]:
    out = {}
    if info.get("version"):
        out["facefleet"] = str(info["version"])
    ort = info.get("onnxruntime") or {}
    if isinstance(ort, dict) and ort.get("version"):
        out["onnxruntime"] = str(ort["version"])
    if isinstance(ort, dict) and ort.get("tensorrt"):
        out["TensorRT"] = str(ort["tensorrt"])
    if scrape and scrape.jetson:
        out["L4T"] = scrape.jetson.get("l4t", "")
        out["JetPack"] = scrape.jetson.get("jetpack", "")
    return out
