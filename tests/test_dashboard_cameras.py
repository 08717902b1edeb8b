"""The appliance page's cameras panel (dashboard/cameras.py): a real service (API keys on) watching a file camera
of the shared photos, a real dashboard with a login, and Debian's chromium driven by Playwright: the camera's row,
the last events and their crops, relayed by the dashboard (the browser never talks to the appliance). The readers
of /streams and /events answers are checked without a server too (fast)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from facefleet.dashboard import create_app
from facefleet.dashboard.backends import PollerBackend
from facefleet.dashboard.cameras import read_cameras, read_events
from facefleet.settings import DashboardSettings
from tests.fakeappliance import FakeAppliance
from tests.media import make_video
from tests.server import Process, Service, camera_service, free_port, until

KEY = "dashboard-cameras-key-0001"
PASSWORD = "cameras-panel-pass"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def appliance(shared_models: Path, cache_dir: Path, tmp_path_factory, images_dir: Path) -> Iterator[Service]:
    video = make_video([images_dir / "person_a_2.jpg", images_dir / "two_people.jpg"], seconds=2.0, gap_s=2.5)
    folder = tmp_path_factory.mktemp("dashboard-cameras-appliance")
    service = camera_service(shared_models, cache_dir, folder, KEY, video.path)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def dashboard(appliance: Service, tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("dashboard-cameras")
    keys = folder / "appliance-key"
    keys.write_text(f"{KEY}\n")
    older = FakeAppliance(b'{"version": "0.0.9"}', b'{"status": "ok"}', b"")  # no /streams, no /events: 404
    sd = [
        {"targets": [appliance.url.removeprefix("http://")], "labels": {"appliance": "edge-01", "group": "lab"}},
        {"targets": [older.target], "labels": {"appliance": "older-01", "group": "lab", "exporter": older.target}},
    ]
    (folder / "targets.json").write_text(json.dumps(sd))
    port = free_port()
    env = {
        "FACEFLEET_DASHBOARD_TARGETS_FILE": str(folder / "targets.json"),
        "FACEFLEET_DASHBOARD_POLL_INTERVAL_S": "2",
        "FACEFLEET_DASHBOARD_TIMEOUT_S": "5",
        "FACEFLEET_DASHBOARD_DATABASE": str(folder / "dash.sqlite3"),
        "FACEFLEET_DASHBOARD_PORT": str(port),
        "FACEFLEET_DASHBOARD_PASSWORD": PASSWORD,
        "FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE": str(keys),
    }
    process = Process([sys.executable, "-m", "facefleet", "dashboard"], folder / "dashboard.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        until("the dashboard", lambda: requests.get(f"{url}/healthz", timeout=5).ok)
        yield url
    finally:
        process.stop()
        older.close()


def _events_with_crops(appliance: Service) -> list[dict]:
    answer = requests.get(f"{appliance.url}/events", headers={"X-API-Key": KEY}, timeout=10)
    return [e for e in answer.json()["events"] if e["has_crop"]]


def _logged_in(dashboard: str) -> requests.Session:
    session = requests.Session()
    assert session.post(f"{dashboard}/login", data={"password": PASSWORD}, timeout=10).ok
    return session


@pytest.mark.slow
def test_the_panel_shows_cameras_and_last_events_with_crops_in_chromium(appliance: Service, dashboard: str):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    until("an event with a crop on the appliance", lambda: _events_with_crops(appliance), timeout=120)
    session = _logged_in(dashboard)
    until("the poller's first view of edge-01", lambda: session.get(f"{dashboard}/api/appliances/edge-01").ok)
    ARTIFACTS.mkdir(exist_ok=True)
    console_errors, elsewhere = [], []
    dashboard_port = urlparse(dashboard).port
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("request", lambda r: elsewhere.append(r.url) if urlparse(r.url).port != dashboard_port else None)
            page.goto(f"{dashboard}/appliances/edge-01", wait_until="load")
            assert "/login" in page.url, "the panel is behind the login"
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{dashboard}/appliances/edge-01")
            row = page.locator('tr.camera[data-name="lobby"]')
            assert row.count() == 1
            assert row.locator("td.state").inner_text().split()[0] in ("running", "ended", "connecting", "backoff")
            assert row.locator("td.fps").inner_text().endswith("/s")
            events = page.locator("tr.event")
            assert events.count() >= 1
            kinds = set(events.locator("td.kind").all_inner_texts())
            assert kinds <= {"track started", "identified", "track ended"} and kinds
            assert set(events.locator("td.camera").all_inner_texts()) == {"lobby"}
            image = page.locator("tr.event img.crop").first
            image.scroll_into_view_if_needed()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            assert image.evaluate("img => img.naturalWidth") > 0
            assert urlparse(image.get_attribute("src")).path.startswith("/appliances/edge-01/events/")
            page.screenshot(path=str(ARTIFACTS / "dashboard-cameras.png"), full_page=True)
            page.goto(f"{dashboard}/appliances/older-01", wait_until="load")
            assert "a release without camera streams" in page.locator("section.cameras").inner_text()
        finally:
            browser.close()
    assert console_errors == []
    assert elsewhere == [], "the browser only ever talks to the dashboard"


@pytest.mark.slow
def test_crops_are_relayed_only_behind_the_login(appliance: Service, dashboard: str):
    event = until("an event with a crop on the appliance", lambda: _events_with_crops(appliance), timeout=120)[0]
    path = f"/appliances/edge-01/events/{event['event_id']}/crop"
    anonymous = requests.get(f"{dashboard}{path}", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    session = _logged_in(dashboard)
    until("the poller's first view of edge-01", lambda: session.get(f"{dashboard}/api/appliances/edge-01").ok)
    relayed = session.get(f"{dashboard}{path}", timeout=10)
    assert relayed.status_code == 200 and relayed.headers["Content-Type"] == "image/jpeg"
    assert relayed.headers["Cache-Control"] == "no-store"
    direct = requests.get(f"{appliance.url}/events/{event['event_id']}/crop", headers={"X-API-Key": KEY}, timeout=10)
    assert relayed.content == direct.content
    for wrong in (f"/appliances/edge-01/events/{uuid.uuid4()}/crop", "/appliances/edge-01/events/..%2Finfo/crop"):
        assert session.get(f"{dashboard}{wrong}", timeout=10).status_code == 404
    assert session.get(f"{dashboard}/appliances/nobody/events/{event['event_id']}/crop", timeout=10).status_code == 404


def _stream(name: str, state: str = "running") -> dict:
    source = {
        "url": "rtsp://cam/1",
        "kind": "rtsp",
        "state": state,
        "frames_in": 100,
        "frames_sampled": 20,
        "frames_dropped": 3,
        "decode_errors": 0,
        "reconnects": 1,
        "gap_seconds_total": 2.5,
        "fps_in": 25.0,
        "fps_sampled": 5.0,
        "last_error": "connection reset",
        "decoder": "h264",
        "width": 640,
        "height": 480,
        "buffered": 1,
    }
    pipeline = {
        "frames": 20,
        "shed": 2,
        "faces": 4,
        "tracks": 1,
        "identified": 1,
        "events": 3,
        "errors": 0,
        "last_error": None,
        "last_latency_s": 0.2,
        "open_tracks": 1,
    }
    return {
        "name": name,
        "url": "rtsp://cam/1",
        "fps": 5,
        "gallery": None,
        "origin": "api",
        "running": True,
        "status": {"source": source, "pipeline": pipeline},
        "status_age_s": 0.5,
    }


def test_answers_are_read_with_the_contract_and_garbage_skipped():
    cameras, skipped = read_cameras([_stream("door"), _stream("yard", "failed"), {"name": 3}, "garbage"])
    assert [(c.name, c.badge, c.shown, c.dropped, c.shed, c.open_tracks) for c in cameras] == [
        ("door", "ok", "running", 3, 2, 1),
        ("yard", "down", "failed", 3, 2, 1),
    ]
    assert cameras[0].last_error == "connection reset" and skipped == 2
    stale = read_cameras([{**_stream("gate"), "running": False}])[0][0]
    assert (stale.badge, stale.shown) == ("stale", "not running")
    good = {
        "seq": 7,
        "event_id": str(uuid.uuid4()),
        "kind": "identified",
        "appliance": "edge-1",
        "camera": "door",
        "track_id": 3,
        "time": "2026-12-04T05:24:35.300Z",
        "subject": "obama",
        "score": 0.61,
        "gallery": "staff",
        "bbox": [1, 2, 3, 4],
        "has_crop": True,
    }
    events, skipped = read_events(
        [good, {**good, "event_id": "../info"}, {**good, "time": "yesterday"}, {**good, "kind": "<b>"}, None]
    )
    assert [e.event_id for e in events] == [good["event_id"]] and skipped == 4
    assert events[0].at == pytest.approx(1796361875.3)


def test_a_malformed_crop_id_is_404_without_asking_the_appliance(tmp_path: Path):
    settings = DashboardSettings(password="", database=str(tmp_path / "d.sqlite3"))
    client = create_app(settings, PollerBackend(settings), start_poller=False).test_client()
    assert client.get("/appliances/edge-01/events/not-a-uuid/crop").status_code == 404
    assert client.get(f"/appliances/edge-01/events/{uuid.uuid4()}/crop").status_code == 404
