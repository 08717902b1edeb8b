"""The fleet dashboard in a real browser (Debian's chromium driven by Playwright), polling a
real service and exporter plus FAKE appliances: down, slow, a Jetson on CPU, a hostile name."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from prometheus_client import generate_latest

from dashboard import create_app
from dashboard.backends import PollerBackend
from dashboard.config import DashboardSettings
from service.client import KeySource
from service.errors import ConfigError
from service.exporter import build_registry

from .fakeappliance import FakeAppliance
from .fakejetson import AGX_ORIN, build, nvpmodel_script, plain_host
from .server import Process, cpu_service, exporter_process, free_port, until

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
HOSTILE = "<script>alert(1)</script>"
LOCKED_KEY = "a-key-of-another-fleet-00001"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def fleet(default_pack, cache_dir, tmp_path_factory, image_bytes):
    folder = tmp_path_factory.mktemp("dashboard")
    started: list = []
    fakes: list[FakeAppliance] = []
    stop_traffic = threading.Event()
    try:
        keys = folder / "api-keys"  # the service asks for a key; the dashboard reads it as on an appliance
        keys.write_text("# the inference_service role's file\nkey-of-the-lab-appliance-0001\n")
        svc = cpu_service(default_pack, cache_dir, folder, FACEFLEET_AUTH="on", FACEFLEET_API_KEYS_FILE=str(keys))
        started.append(svc)
        key = {"X-API-Key": "key-of-the-lab-appliance-0001"}
        exporter, exporter_url = exporter_process(
            folder, svc, plain_host(folder / "plain"), FACEFLEET_API_KEY_FILE=str(keys)
        )
        started.append(exporter)
        exporter_port = exporter_url.rsplit(":", 1)[1]
        photo = base64.b64encode(image_bytes("biden.jpg")).decode()

        def traffic() -> None:  # bounded: stops with the fixture
            while not stop_traffic.wait(0.3):
                requests.post(f"{svc.url}/extract", json={"images": {"data": [photo]}}, headers=key, timeout=30)

        threading.Thread(target=traffic, daemon=True).start()
        # Bodies captured from the real service and a real exporter reading a FAKE AGX Orin tree.
        info = requests.get(f"{svc.url}/info", headers=key, timeout=10).content
        health = requests.get(f"{svc.url}/health", timeout=30).content
        orin = build(folder / "orin", AGX_ORIN)
        nvpmodel = str(nvpmodel_script(folder, AGX_ORIN.power_mode))
        lab_key = KeySource(file=str(keys), origin="FACEFLEET_API_KEY_FILE")
        jetson_metrics = generate_latest(build_registry(folder / "metrics", orin, svc.url, nvpmodel, lab_key))
        fakes += [
            FakeAppliance(info, health, jetson_metrics),
            FakeAppliance(info, health, jetson_metrics, delay_s=5),
            FakeAppliance(info, health, jetson_metrics),
            FakeAppliance(info, health, b"", api_key=LOCKED_KEY),  # keys of another fleet
        ]
        orin_cpu, slow, hostile, locked = fakes
        down = f"127.0.0.1:{free_port()}"  # nothing listens there
        sd = [
            {
                "targets": [svc.url.removeprefix("http://")],
                "labels": {"appliance": "lab-cpu-01", "group": "lab", "exporter": f"127.0.0.1:{exporter_port}"},
            },
            {
                "targets": [orin_cpu.target],
                "labels": {"appliance": "orin-01", "group": "line-1", "exporter": orin_cpu.target},
            },
            {"targets": [slow.target], "labels": {"appliance": "slow-01", "group": "line-1", "exporter": slow.target}},
            {"targets": [down], "labels": {"appliance": "down-01", "group": "line-2"}},
            {
                "targets": [hostile.target],
                "labels": {"appliance": HOSTILE, "group": "line-2", "exporter": hostile.target},
            },
            {
                "targets": [locked.target],
                "labels": {"appliance": "locked-01", "group": "line-2", "exporter": locked.target},
            },
        ]
        (folder / "targets.json").write_text(json.dumps(sd))
        port = free_port()
        env = {
            "FACEFLEET_DASHBOARD_TARGETS_FILE": str(folder / "targets.json"),
            "FACEFLEET_DASHBOARD_POLL_INTERVAL_S": "1",
            "FACEFLEET_DASHBOARD_TIMEOUT_S": "2",
            "FACEFLEET_DASHBOARD_DATABASE": str(folder / "dash.sqlite3"),
            "FACEFLEET_DASHBOARD_PORT": str(port),
            "FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE": str(keys),
        }
        started.append(Process([sys.executable, "-m", "service", "dashboard"], folder / "dashboard.log", env))
        url = f"http://127.0.0.1:{port}"

        def polled() -> bool:
            rows = {a["name"]: a for a in requests.get(f"{url}/api/fleet", timeout=5).json()["appliances"]}
            return len(rows) == 6 and rows["lab-cpu-01"]["status"] == "ok" and len(rows["lab-cpu-01"]["spark"]) >= 3

        until("three polls of the fleet", polled, timeout=90)
        yield url
    finally:
        stop_traffic.set()
        for fake in fakes:
            fake.close()
        for process in reversed(started):
            process.stop()


def test_statuses_and_reasons_through_the_json_api(fleet):
    rows = {a["name"]: a for a in requests.get(f"{fleet}/api/fleet", timeout=5).json()["appliances"]}
    assert rows["lab-cpu-01"]["status"] == "ok"
    assert rows["lab-cpu-01"]["reason"] == "healthy"  # its exporter's probe presents the appliance's key
    assert rows["lab-cpu-01"]["providers"] == {"yunet_2023mar_int8bq": "cpu", "sface_2021dec_int8bq": "cpu"}
    assert rows["orin-01"]["status"] == "degraded"
    assert rows["orin-01"]["reason"].startswith("Jetson running sface_2021dec_int8bq, yunet_2023mar_int8bq on CPU")
    assert rows["orin-01"]["versions"]["JetPack"] == "6.2" and rows["orin-01"]["gpu_load"] == pytest.approx(0.372)
    assert rows["slow-01"]["status"] == "stale" and "no answer within 2 s" in rows["slow-01"]["reason"]
    assert rows["down-01"]["status"] == "down" and "unreachable" in rows["down-01"]["reason"]
    assert rows[HOSTILE]["status"] == "degraded"
    locked = rows["locked-01"]  # never a healthy row with blank versions
    assert locked["status"] == "unauthorized" and locked["versions"] == {} and locked["last_seen"] is None
    assert locked["reason"] == "the appliance refuses the dashboard's API key (/info answered HTTP 401)"
    detail = requests.get(f"{fleet}/api/appliances/lab-cpu-01", timeout=5).json()
    assert detail["history"] and detail["info"]["models"]["detection"]["name"] == "yunet_2023mar_int8bq"
    assert requests.get(f"{fleet}/api/appliances/nope", timeout=5).status_code == 404


def test_overview_and_appliance_page_in_chromium(fleet):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    console_errors, outside, dialogs = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).hostname != "127.0.0.1" else None)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            start = time.monotonic()
            page.goto(fleet + "/", wait_until="load")
            elapsed = time.monotonic() - start
            assert elapsed < 1.0, f"overview took {elapsed:.2f} s although only slow-01 is slow"
            row = page.locator('tr.appliance[data-name="orin-01"]')
            assert row.locator(".badge").inner_text() == "degraded"
            assert "on CPU" in row.locator(".reason").inner_text()
            assert page.locator('tr.appliance[data-name="down-01"] .badge').inner_text() == "down"
            assert page.locator('tr.appliance[data-name="slow-01"] .badge').inner_text() == "stale"
            assert page.locator('tr.appliance[data-name="locked-01"] .badge').inner_text() == "unauthorized"
            hostile = page.locator("tr.appliance", has_text="alert(1)")
            assert hostile.locator("td.name").inner_text() == HOSTILE  # shown as text, not run
            points = int(page.locator('tr.appliance[data-name="lab-cpu-01"] svg.spark').get_attribute("data-points"))
            assert points >= 2
            counts = page.locator("tbody#rows")
            assert counts.get_attribute("data-down") == "1" and counts.get_attribute("data-stale") == "1"
            assert counts.get_attribute("data-unauthorized") == "1"
            page.wait_for_timeout(2500)  # one in-place refresh of the table
            page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
            page.select_option("select[name=status]", "degraded")
            page.click("form.filters button")
            page.wait_for_load_state("load")
            names = page.locator("tr.appliance").evaluate_all("rows => rows.map(r => r.dataset.name)")
            assert sorted(names) == sorted(["orin-01", HOSTILE])
            page.goto(fleet + "/appliances/lab-cpu-01", wait_until="load")
            assert page.locator("svg.chart").count() == 4
            assert "yunet_2023mar_int8bq" in page.locator("section", has_text="/info").inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-appliance.png"), full_page=True)
        finally:
            browser.close()
    assert console_errors == []
    assert outside == []
    assert dialogs == []


def test_security_headers(fleet):
    response = requests.get(f"{fleet}/", timeout=5)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert HOSTILE not in response.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


def test_login_guards_every_page_and_api(tmp_path):
    settings = DashboardSettings(password="s3cret-pass", database=str(tmp_path / "d.sqlite3"))
    app = create_app(settings, PollerBackend(settings))
    client = app.test_client()
    assert client.get("/").status_code == 302 and "/login" in client.get("/").headers["Location"]
    assert client.get("/api/fleet").status_code == 401
    assert client.get("/fragment/rows").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.post("/login", data={"password": "wrong"}).status_code == 401
    assert client.post("/login?next=//evil.example/", data={"password": "s3cret-pass"}).headers["Location"] == "/"
    assert client.get("/api/fleet").status_code == 200
    client.post("/logout")
    assert client.get("/api/fleet").status_code == 401


def test_dashboard_without_appliances_refuses_to_start():
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "service", "dashboard"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert result.returncode == 2 and "no appliances" in result.stderr


def test_a_failing_exporter_probe_shows_in_the_reason(tmp_path):
    """An exporter whose probe of its service fails (here: nothing listens) says so, and the
    dashboard shows it on the appliance's row rather than a plain "healthy"."""
    dead = f"http://127.0.0.1:{free_port()}"
    metrics = generate_latest(build_registry(tmp_path / "none", plain_host(tmp_path / "root"), dead, "no-nvpmodel"))
    info = json.dumps({"version": "0", "models": {}}).encode()
    fake = FakeAppliance(info, b'{"status": "ok", "checks": {}}', metrics)
    try:
        (tmp_path / "targets.json").write_text(
            json.dumps([{"targets": [fake.target], "labels": {"exporter": fake.target}}])
        )
        settings = DashboardSettings(targets_file=str(tmp_path / "targets.json"), database=str(tmp_path / "d.sqlite3"))
        backend = PollerBackend(settings)
        backend.poller.cycle()
        [row] = backend.fleet()["appliances"]
    finally:
        fake.close()
    assert row["status"] == "ok" and row["reason"] == "the exporter's probe of the service fails (refused)"


def run_dashboard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACEFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "service", "dashboard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **(env or {})},
    )


def test_a_dashboard_on_the_network_needs_a_login(tmp_path):
    """The safe default: on a non-loopback address the dashboard starts only with a password (the
    role generates one, root-only) or an explicit FACEFLEET_DASHBOARD_ALLOW_OPEN=true."""
    (tmp_path / "fleet.json").write_text("[]")
    result = run_dashboard("--host", "0.0.0.0", "--targets-file", str(tmp_path / "fleet.json"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("facefleet: the dashboard would listen on 0.0.0.0 without a login")
    assert "FACEFLEET_DASHBOARD_PASSWORD_FILE" in result.stderr
    secret = tmp_path / "dashboard-password"
    secret.write_text("generated-by-the-role-0001\n")
    settings = DashboardSettings.from_env({"FACEFLEET_DASHBOARD_PASSWORD_FILE": str(secret)}, host="0.0.0.0")
    assert settings.password == "generated-by-the-role-0001"
    settings.require_login_off_loopback()
    DashboardSettings(host="127.0.0.1").require_login_off_loopback()  # loopback: only this machine's users
    DashboardSettings(host="0.0.0.0", allow_open=True).require_login_off_loopback()
    with pytest.raises(ConfigError, match="cannot read FACEFLEET_DASHBOARD_PASSWORD_FILE"):
        DashboardSettings.from_env({"FACEFLEET_DASHBOARD_PASSWORD_FILE": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="expected true or false"):
        DashboardSettings.from_env({"FACEFLEET_DASHBOARD_ALLOW_OPEN": "maybe"})


def test_a_dashboard_port_in_use_is_one_line(tmp_path):
    (tmp_path / "fleet.json").write_text("[]")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_dashboard("--port", str(port), "--targets-file", str(tmp_path / "fleet.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"facefleet: port {port} on 127.0.0.1 is already in use: choose another with --port or FACEFLEET_DASHBOARD_PORT"
    )


def test_the_readme_recipe_stays_off_the_appliance_ports():
    """The README's dashboard recipe runs beside `run.sh`'s appliance (service 18080, exporter
    18090, dashboard 18100): it starts no second exporter, its dashboard has a port of its own,
    and it presents the appliance's key."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The fleet dashboard", 1)[1].split("\n## ", 1)[0]
    recipe = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0] for line in recipe.replace("\\\n", " ").splitlines() if "facefleet " in line]
    assert not [c for c in commands if "facefleet exporter" in c]
    [dashboard] = [c for c in commands if "facefleet dashboard" in c]
    port = int(dashboard.split("--port", 1)[1].split()[0])
    assert port not in (18080, 18081, 18090, 18100)
    assert "FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE=/etc/facefleet/api-keys" in dashboard
