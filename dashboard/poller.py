"""The embedded backend's poller: every appliance's /info, /health and exporter /metrics,
fetched concurrently with a per-host timeout, so a dead or slow host delays nobody; each
cycle's figures go to SQLite and the latest view of every appliance stays in memory."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from facefleet.dashboard import answers, figures, targets
from facefleet.dashboard.snapshot import (
    FIGURES,
    ApplianceView,
    Numbers,
    Observation,
    appliance_view,
    flag_lagging,
    gallery_views,
    newest_galleries,
)
from facefleet.dashboard.store import Store
from facefleet.ops.client import TrustSource, tls_failure
from facefleet.settings import DashboardSettings

log = logging.getLogger("facefleet.dashboard")
FAILURES_KEPT = 20


class UnreachableError(Exception):
    """The host refused, reset, or does not resolve."""


class TimedOutError(Exception):
    """The host accepted but did not answer within the timeout."""


def fetch(url: str, timeout: float, api_key: str = "", tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """(status, body) of one GET; `tls` verifies an https:// appliance (FACEFLEET_DASHBOARD_CA_FILE)."""
    headers = {"User-Agent": "facefleet-dashboard"}
    if api_key:
        headers["X-API-Key"] = api_key  # stays server-side: never sent to a browser
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls) as response:
            return response.status, _read_within(response, 8 * 1024 * 1024, time.monotonic() + timeout, timeout)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(1024 * 1024)
    except TimeoutError as exc:
        raise TimedOutError(f"no answer within {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError | socket.timeout):
            raise TimedOutError(f"no answer within {timeout:g} s") from exc
        if isinstance(exc.reason, ssl.SSLError):
            raise UnreachableError(f"{tls_failure(exc.reason)} (FACEFLEET_DASHBOARD_CA_FILE)") from exc
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


@dataclass
class _Poll:
    """The raw answers of one poll of one appliance, before they become an `Observation`."""

    appliance: targets.Appliance
    at: float
    unreachable: str = ""
    timed_out: str = ""
    unauthorized: str = ""
    info_error: str = ""
    exporter_error: str = ""
    info: answers.InfoSeen | None = None
    health: dict[str, Any] = field(default_factory=dict)
    scrape: figures.Scrape | None = None


class Poller:
    def __init__(self, settings: DashboardSettings, store: Store) -> None:
        self.settings, self.store = settings, store
        self.tls = TrustSource(settings.ca_file, "FACEFLEET_DASHBOARD_CA_FILE")  # read again when replaced
        self._pool = ThreadPoolExecutor(settings.pool, thread_name_prefix="poll")
        self._lock = threading.Lock()
        self._scrapes: dict[str, figures.Scrape] = {}
        self._failures: dict[str, deque[tuple[float, str]]] = {}
        self.views: dict[str, ApplianceView] = {}
        self.last_cycle_s: float | None = None
        self.fleet_error = ""
        self._stop = threading.Event()

    # ------------------------------------------------------------ one appliance
    def _poll(self, appliance: targets.Appliance) -> _Poll:
        timeout, key = self.settings.timeout_s, self.settings.appliance_api_key
        poll = _Poll(appliance, time.time())
        try:
            tls = self.tls.context()
            info_answer = fetch(f"{appliance.service}/info", timeout, key, tls)
            health_answer = fetch(f"{appliance.service}/health", timeout, key, tls)
        except UnreachableError as exc:
            poll.unreachable = f"service unreachable: {exc}"
            return poll
        except TimedOutError as exc:
            poll.timed_out = f"service slow: {exc}"
            return poll
        by_path = {"/info": info_answer, "/health": health_answer}
        refused = [f"{path} answered HTTP {code}" for path, (code, _) in by_path.items() if code in (401, 403)]
        if refused:
            poll.unauthorized = f"{_refusal(bool(key))} ({', '.join(refused)})"
        else:
            info = answers.read_info(_json(info_answer))
            poll.info, poll.health = info, _json(health_answer)
            if info_answer[0] != 200 or not info.shown:
                poll.info_error = f"/info answered HTTP {info_answer[0]}{'' if info.shown else ', not a JSON object'}"
        self._scrape_exporter(appliance, poll)
        return poll

    def _scrape_exporter(self, appliance: targets.Appliance, poll: _Poll) -> None:
        """The exporter's figures; the exporter needs no key, so an unauthorized appliance has them too."""
        timeout = self.settings.timeout_s
        try:
            code, body = fetch(f"{appliance.exporter}/metrics", timeout)
            if code == 200:
                poll.scrape = figures.parse(body.decode(errors="replace"), poll.at)
            else:
                poll.exporter_error = f"exporter answered HTTP {code}"
        except (UnreachableError, TimedOutError, ValueError) as exc:
            poll.exporter_error = f"exporter: {exc}"

    def _view(self, poll: _Poll) -> tuple[ApplianceView, dict[str, Any]]:
        """(the in-memory view, the history row) of one appliance's poll."""
        appliance, scrape = poll.appliance, poll.scrape
        found = figures.between(self._scrapes.get(appliance.name), scrape) if scrape else figures.Figures()
        if scrape:
            self._scrapes[appliance.name] = scrape
        seen = Observation(
            name=appliance.name,
            group=appliance.group,
            answered_at=poll.at,
            unreachable=poll.unreachable,
            timed_out=poll.timed_out,
            unauthorized=poll.unauthorized,
            info_error=poll.info_error,
            exporter_error=poll.exporter_error,
            probe_failure=(scrape.probe_failure or "") if scrape else "",
            health=poll.health,
            info=poll.info,
            providers=scrape.providers if scrape else {},
            fallbacks=scrape.fallbacks if scrape else {},
            jetson=scrape.jetson if scrape else None,
            power_mode=scrape.power_mode if scrape else None,
            numbers=Numbers(
                **vars(found),
                gpu_load=scrape.gpu_load if scrape else None,
                temperature=scrape.temperature if scrape else None,
                power_watts=scrape.power_watts if scrape else None,
            ),
        )
        previous = self.views.get(appliance.name)
        view = appliance_view(seen, previous)
        if view.status != "ok":
            self._failures.setdefault(appliance.name, deque(maxlen=FAILURES_KEPT)).append((poll.at, view.reason))
        view = replace(
            view,
            service=appliance.service,
            exporter=appliance.exporter,
            polled=poll.at,
            galleries=gallery_views(answers.galleries(view.info or {})),  # this /info's, or the last one's
            failures=tuple(self._failures.get(appliance.name, ())),
        )
        row = {
            "appliance": appliance.name,
            "at": poll.at,
            "status": view.status,
            "reason": view.reason,
            "providers": dict(view.providers),
            **{k: getattr(view, k) for k in FIGURES},
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
        views, rows = [], []
        with self._lock:
            for snapshot in snapshots:
                view, row = self._view(snapshot)
                views.append(view)
                rows.append(row)
            self.views = {view.name: view for view in flag_lagging(views)}
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
    """{gallery: {version, checksum, subjects, lagging_behind}} from an appliance's /info, in the
    JSON API's form; garbage is skipped."""
    return {name: g.as_json() for name, g in gallery_views(answers.galleries(info)).items()}


def flag_lagging_galleries(views: dict[str, dict[str, Any]]) -> None:
    """`flag_lagging` over views in the JSON API's form ({name: {"galleries": ...}}), in place."""
    newest = newest_galleries({n: g["version"] for n, g in v["galleries"].items()} for v in views.values())
    for view in views.values():
        for name, g in view["galleries"].items():
            g["lagging_behind"] = newest[name] if g["version"] < newest[name] else None
