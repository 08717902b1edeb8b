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

from facefleet.dashboard import create_app, figures
from facefleet.dashboard.backends import PollerBackend
from facefleet.dashboard.status import classify, gpu_expected, provider_states
from facefleet.dashboard.store import COLUMNS, Store
from facefleet.errors import ConfigError
from facefleet.ops.client import KeySource
from facefleet.ops.exporter import build_registry
from facefleet.settings import DashboardSettings

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
            FakeAppliance(cuda_fell_back(info), health, b""),  # a GPU host (not a Jetson) whose CUDA failed
        ]
        orin_cpu, slow, hostile, locked, cuda = fakes
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
            {"targets": [cuda.target], "labels": {"appliance": "cuda-01", "group": "line-3", "exporter": cuda.target}},
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
        started.append(Process([sys.executable, "-m", "facefleet", "dashboard"], folder / "dashboard.log", env))
        url = f"http://127.0.0.1:{port}"

        def polled() -> bool:
            rows = {a["name"]: a for a in requests.get(f"{url}/api/fleet", timeout=5).json()["appliances"]}
            return len(rows) == 7 and rows["lab-cpu-01"]["status"] == "ok" and len(rows["lab-cpu-01"]["spark"]) >= 3

        until("three polls of the fleet", polled, timeout=90)
        yield url
    finally:
        stop_traffic.set()
        for fake in fakes:
            fake.close()
        for process in reversed(started):
            process.stop()


def cuda_fell_back(info: bytes) -> bytes:
    """The real service's /info as a CUDA host's whose CUDA failed for every model: its chain
    starts with cuda (what `inference_service_providers` sets on a GPU host)."""
    answer = json.loads(info)
    for model in (m for m in answer["models"].values() if isinstance(m, dict)):  # the reports, not IFR's keys
        model["attempts"] = [{"provider": "cuda", "ok": False, "reason": "libcudart.so.12: cannot open"}]
        model["attempts"].append({"provider": "cpu", "ok": True, "reason": ""})
    answer["defaults"]["providers"] = ["cuda", "cpu"]
    return json.dumps(answer).encode()


def test_statuses_and_reasons_through_the_json_api(fleet):
    rows = {a["name"]: a for a in requests.get(f"{fleet}/api/fleet", timeout=5).json()["appliances"]}
    assert rows["lab-cpu-01"]["status"] == "ok"
    assert rows["lab-cpu-01"]["reason"] == "healthy"  # its exporter's probe presents the appliance's key
    assert rows["lab-cpu-01"]["providers"] == {"yunet_2023mar_int8bq": "cpu", "sface_2021dec_int8bq": "cpu"}
    assert rows["orin-01"]["status"] == "degraded"
    assert rows["orin-01"]["reason"].startswith("Jetson running sface_2021dec_int8bq, yunet_2023mar_int8bq on CPU")
    assert rows["orin-01"]["versions"]["JetPack"] == "6.2" and rows["orin-01"]["gpu_load"] == pytest.approx(0.372)
    # the CPU is the alarm only where a GPU is expected: a CPU appliance on its CPU is healthy
    assert rows["lab-cpu-01"]["gpu_expected"] == "" and set(rows["lab-cpu-01"]["provider_states"].values()) == {
        "expected"
    }
    assert rows["orin-01"]["gpu_expected"] == "a Jetson"
    assert set(rows["orin-01"]["provider_states"].values()) == {"fallback"}
    assert rows["cuda-01"]["status"] == "degraded" and rows["cuda-01"]["reason"] == (
        "GPU host running sface_2021dec_int8bq, yunet_2023mar_int8bq on CPU "
        "(its provider chain starts with cuda; TensorRT/CUDA fell back)"
    )
    assert rows["lab-cpu-01"]["error_ratio"] == 0 and rows["lab-cpu-01"]["client_error_ratio"] == 0
    assert rows["slow-01"]["status"] == "stale" and "no answer within 2 s" in rows["slow-01"]["reason"]
    assert rows["down-01"]["status"] == "down" and "unreachable" in rows["down-01"]["reason"]
    assert rows[HOSTILE]["status"] == "degraded"
    locked = rows["locked-01"]  # never a healthy row with blank versions
    assert locked["status"] == "unauthorized" and locked["versions"] == {} and locked["last_seen"] is None
    assert locked["reason"] == "the appliance refuses the dashboard's API key (/info answered HTTP 401)"
    detail = requests.get(f"{fleet}/api/appliances/lab-cpu-01", timeout=5).json()
    assert detail["history"] and detail["info"]["models"]["detection"]["name"] == "yunet_2023mar_int8bq"
    assert requests.get(f"{fleet}/api/appliances/nope", timeout=5).status_code == 404


@pytest.mark.slow  # a real browser, about 9 s
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
            check_cpu_appliance_row(page)
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
            assert sorted(names) == sorted(["orin-01", HOSTILE, "cuda-01"])
            page.goto(fleet + "/appliances/lab-cpu-01", wait_until="load")
            check_cpu_appliance_page(page)
            assert "yunet_2023mar_int8bq" in page.locator("section", has_text="/info").inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-appliance.png"), full_page=True)
        finally:
            browser.close()
    assert console_errors == []
    assert outside == []
    assert dialogs == []


def check_cpu_appliance_row(page) -> None:
    """The CPU appliance's providers in the healthy colour (the Jetson's on CPU in the alarm's),
    "no GPU" rather than a dash, server and client errors in their own columns."""
    lab, orin = (page.locator(f'tr.appliance[data-name="{name}"]') for name in ("lab-cpu-01", "orin-01"))
    colours = "all => all.map(e => getComputedStyle(e).color)"
    green, red = "rgb(10, 107, 45)", "rgb(164, 22, 26)"
    assert lab.locator(".provider").evaluate_all(colours) == [green, green]
    assert orin.locator(".provider").evaluate_all(colours) == [red, red]
    assert lab.locator("td.gpu").inner_text() == "no GPU" and orin.locator("td.gpu").inner_text() == "37%"
    assert lab.locator("td.server-errors").inner_text() == "0%"
    assert lab.locator("td.client-errors").inner_text() == "0%"


def check_cpu_appliance_page(page) -> None:
    """Its GPU chart says "no GPU" (not "no data yet" forever) while its own sensors (the FAKE plain
    host's x86_pkg_temp) are drawn; errors split 5xx / 4xx / auth."""
    assert page.locator("svg.chart").count() == 5
    assert page.locator("figure.gpu svg.chart text.scale").text_content() == "no GPU"  # SVG: no innerText
    assert page.locator("figure.sensors svg.chart text.scale").text_content().startswith("38 to 38")
    legends = page.locator("figure.errors text.legend").evaluate_all("all => all.map(e => e.textContent)")
    assert legends == ["5xx", "4xx", "401/403"]
    assert page.locator("td.provider.expected").count() == 2


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


def test_behind_its_tls_front_the_session_cookie_is_https_only(tmp_path):
    """The role sets FACEFLEET_DASHBOARD_SECURE_COOKIE behind the front: a browser never sends the login's
    session over plain HTTP."""
    for secure in (False, True):
        settings = DashboardSettings(
            password="s3cret-pass", database=str(tmp_path / f"{secure}.sqlite3"), secure_cookie=secure
        )
        client = create_app(settings, PollerBackend(settings)).test_client()
        answer = client.post("/login", data={"password": "s3cret-pass"}, base_url="https://dash.example")
        cookie = answer.headers["Set-Cookie"]
        assert ("; Secure" in cookie) is secure and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_dashboard_without_appliances_refuses_to_start():
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "facefleet", "dashboard"],
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
        [sys.executable, "-m", "facefleet", "dashboard", *args],
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


def test_the_cpu_is_an_alarm_only_where_a_gpu_is_expected():
    """What colours a provider and degrades a row: the appliance's expected provider, from its
    chain (/info), its exporter (a Jetson, a GPU's load) or, through Prometheus without /info,
    a model whose chain had providers before the CPU that failed."""
    on_cpu = {"yunet": "cpu", "sface": "cpu"}
    healthy = {"health": {"status": "ok"}, "providers": on_cpu}
    cases = [  # (chains, configured, jetson, gpu_load, fallbacks) -> why a GPU is expected
        (({"yunet": ["cpu"]}, ["cpu"], None, None, {"yunet": 0.0}), ""),
        (({}, [], None, None, {}), ""),
        (({"yunet": ["tensorrt", "cuda", "cpu"]}, ["cpu"], None, None, {}), "its provider chain starts with tensorrt"),
        (({}, ["cuda", "cpu"], None, None, {}), "its provider chain starts with cuda"),
        (({}, [], {"jetpack": "6.2"}, None, {}), "a Jetson"),
        (({}, [], None, 0.2, {}), "its exporter reads a GPU"),
        (({}, [], None, None, {"yunet": 2.0}), "GPU providers of its chain failed"),
    ]
    for args, why in cases:
        assert gpu_expected(*args) == why, args
    assert provider_states(on_cpu, "") == {"yunet": "expected", "sface": "expected"}
    assert provider_states({**on_cpu, "scrfd": "tensorrt"}, "a Jetson") == {
        "yunet": "fallback",
        "sface": "fallback",
        "scrfd": "expected",
    }
    assert classify({**healthy, "gpu_expected": ""}) == ("ok", "healthy")
    assert classify({**healthy, "gpu_expected": "its provider chain starts with cuda"})[0] == "degraded"
    assert classify({**healthy, "jetson": {"l4t": "36.4.3"}})[1].startswith("Jetson running sface, yunet on CPU")


def test_a_401_flood_is_client_errors_apart_from_server_errors(make_settings, default_pack, image_bytes):
    """Requests the real service refuses for a wrong key are client errors (4xx, auth), shown
    apart from server errors (5xx); the row stays healthy and its reason says what happens."""
    from facefleet.api import create_app as create_service

    key = "key-of-the-flooded-appliance-01"
    app = create_service(make_settings(models_dir=str(default_pack), auth="on", api_keys=(key,), log_level="WARNING"))
    client = app.test_client()
    body = {"images": {"data": [base64.b64encode(image_bytes("biden.jpg")).decode()]}}
    before = figures.parse(client.get("/metrics").text, 100.0)
    for _ in range(9):
        assert client.post("/extract", json=body, headers={"X-API-Key": "a-wrong-key-000000001"}).status_code == 401
    assert client.post("/extract", json=body, headers={"X-API-Key": key}).status_code == 200
    found = figures.between(before, figures.parse(client.get("/metrics").text, 110.0))
    assert found.error_ratio == 0 and found.rate_rps == pytest.approx(1.0)
    assert found.client_error_ratio == pytest.approx(0.9) and found.auth_failure_ratio == pytest.approx(0.9)
    snapshot = {"health": {"status": "ok"}, "providers": {}, **vars(found)}
    assert classify(snapshot) == ("ok", "healthy; 90% of requests refused (401/403: a missing or wrong API key)")


def test_an_older_dashboard_database_gains_the_new_columns(tmp_path):
    """A restarted dashboard keeps the history an older version wrote (no client error columns)."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE polls (appliance TEXT NOT NULL, at REAL NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,"
            " p50_s REAL, p95_s REAL, rate_rps REAL, error_ratio REAL, gpu_load REAL, temperature REAL,"
            " power_watts REAL, providers TEXT NOT NULL DEFAULT '{}');"
        )
        db.execute("INSERT INTO polls (appliance, at, status, reason) VALUES ('a', ?, 'ok', 'healthy')", (time.time(),))
    store = Store(str(path), 24)
    row = dict.fromkeys(COLUMNS) | {"appliance": "a", "at": time.time(), "status": "ok", "reason": "", "providers": {}}
    store.add([{**row, "auth_failure_ratio": 0.5}])
    assert [r["auth_failure_ratio"] for r in store.history("a", 60)] == [None, 0.5]
