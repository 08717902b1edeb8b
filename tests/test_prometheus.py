"""A real Prometheus server (Debian's) scraping a real service and a real exporter, discovered
through file_sd JSON (the format the Ansible roles write), with the alert rules loaded."""

from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess

import pytest
import requests
import yaml

from .fakejetson import AGX_ORIN, build, nvpmodel_script
from .monitoring.render import render
from .server import Process, cpu_service, exporter_process, free_port, until

KEY = "key-of-the-scraped-appliance-01"
KEYED = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def stack(default_pack, cache_dir, tmp_path_factory):
    """Service + exporter (on a FAKE AGX Orin tree, so: a Jetson whose models run on CPU) +
    Prometheus with the rendered rules; torn down whatever happens."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus not found: install Debian's prometheus package (scripts/test.sh does)"
    folder = tmp_path_factory.mktemp("prometheus")
    started: list = []
    keys = folder / "api-keys"  # keys on, as on every appliance: Prometheus scrapes the open /metrics
    keys.write_text(f"{KEY}\n")
    try:
        svc = cpu_service(default_pack, cache_dir, folder, FACEFLEET_AUTH="on", FACEFLEET_API_KEYS_FILE=str(keys))
        started.append(svc)
        root = build(folder / "orin", AGX_ORIN)
        nvpmodel = str(nvpmodel_script(folder, AGX_ORIN.power_mode))
        exporter, exporter_url = exporter_process(
            folder, svc, root, FACEFLEET_NVPMODEL=nvpmodel, FACEFLEET_API_KEY_FILE=str(keys)
        )
        started.append(exporter)
        exporter_port = int(exporter_url.rsplit(":", 1)[1])
        for job, port in (("service", svc.port), ("exporter", exporter_port)):
            (folder / f"{job}.json").write_text(
                json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"appliance": "orin-01", "group": "lab"}}])
            )
        # the role's variables let a deployment choose how long a degraded model waits before alerting
        render("facefleet-alerts.yml.j2", folder / "facefleet-alerts.yml", monitoring_degraded_for="0s")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(folder / "facefleet-alerts.yml")],
            "scrape_configs": [
                {"job_name": "facefleet_service", "file_sd_configs": [{"files": [str(folder / "service.json")]}]},
                {"job_name": "facefleet_exporter", "file_sd_configs": [{"files": [str(folder / "exporter.json")]}]},
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        server = Process(
            [
                prometheus,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            folder / "prometheus.log",
        )
        started.append(server)
        api = f"http://127.0.0.1:{port}/api/v1"
        until("prometheus", lambda: requests.get(f"{api}/status/buildinfo", timeout=5).ok)
        yield {"api": api, "service": svc.url, "exporter": exporter_url}
    finally:
        for process in reversed(started):
            process.stop()


def query(api: str, expr: str) -> list[dict]:
    answer = requests.get(f"{api}/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.mark.slow  # waits for Prometheus to scrape both targets, about 6 s
def test_targets_are_up(stack):
    def both_up() -> bool:
        result = {r["metric"]["job"]: r["value"][1] for r in query(stack["api"], "up")}
        return result == {"facefleet_service": "1", "facefleet_exporter": "1"}

    until("both targets up", both_up)
    labels = query(stack["api"], 'up{job="facefleet_exporter"}')[0]["metric"]
    assert labels["appliance"] == "orin-01" and labels["group"] == "lab"  # file_sd labels carried over


def test_request_counter_grows_and_quantiles_compute(stack, image_bytes):
    expr = 'sum(facefleet_http_requests_total{job="facefleet_service", endpoint="extract"})'
    before = float((query(stack["api"], expr) or [{"value": [0, "0"]}])[0]["value"][1])
    photo = base64.b64encode(image_bytes("biden.jpg")).decode()
    for _ in range(3):
        assert requests.post(
            f"{stack['service']}/extract", json={"images": {"data": [photo]}}, headers=KEYED, timeout=60
        ).ok
    until("the counter to grow by 3", lambda: float(query(stack["api"], expr)[0]["value"][1]) >= before + 3)
    p95 = (
        "histogram_quantile(0.95, sum by (le) (rate(facefleet_http_request_duration_seconds_bucket"
        '{job="facefleet_service", endpoint="extract"}[1m])))'
    )

    def finite_p95() -> float | None:
        # rate() needs a change between two scrapes: keep traffic going while polling
        requests.post(f"{stack['service']}/extract", json={"images": {"data": [photo]}}, headers=KEYED, timeout=60)
        value = float(query(stack["api"], p95)[0]["value"][1])
        return None if math.isnan(value) else value

    assert 0.0 < until("a finite p95", finite_p95) < 10.0


def test_rules_load_and_the_cpu_fallback_alert_fires(stack):
    groups = requests.get(f"{stack['api']}/rules", timeout=10).json()["data"]["groups"]
    assert {rule["name"] for group in groups for rule in group["rules"]} >= {
        "FacefleetApplianceDown",
        "FacefleetModelOnCPU",
        "FacefleetLatencyHigh",
        "FacefleetGPUTemperatureHigh",
        "FacefleetProbeFailing",
    }

    def firing() -> list[dict]:
        alerts = requests.get(f"{stack['api']}/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "FacefleetModelOnCPU" and a["state"] == "firing"]

    alerts = until("FacefleetModelOnCPU to fire", firing)
    assert {a["labels"]["model"] for a in alerts} == {"yunet_2023mar_int8bq", "sface_2021dec_int8bq"}
    others = requests.get(f"{stack['api']}/alerts", timeout=10).json()["data"]["alerts"]
    quiet = ("FacefleetApplianceDown", "FacefleetHealthFailing", "FacefleetProbeFailing")  # not even pending
    assert not [a for a in others if a["labels"]["alertname"] in quiet]


def test_exporter_process_serves_hardware_and_service_metrics(stack):
    text = requests.get(f"{stack['exporter']}/metrics", timeout=10).text
    assert 'facefleet_jetson_info{board="NVIDIA Jetson AGX Orin Developer Kit"' in text
    assert "facefleet_http_requests_total" in text and "facefleet_probe_healthy 1.0" in text
    assert "facefleet_probe_success 1.0" in text  # the probe presents the appliance's key
    assert 'facefleet_probe_model_provider{model="yunet_2023mar_int8bq",provider="cpu",task="detection"} 1.0' in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_reads_the_same_fleet_through_prometheus(stack, tmp_path):
    """The dashboard's second backend: the fake-Jetson appliance is degraded, through PromQL."""
    from facefleet.dashboard.backends import PrometheusBackend
    from facefleet.settings import DashboardSettings

    backend = PrometheusBackend(DashboardSettings(prometheus_url=stack["api"].removesuffix("/api/v1")))

    def degraded() -> dict | None:
        fleet = backend.fleet()
        rows = {a["name"]: a for a in fleet["appliances"]}
        row = rows.get("orin-01")
        return row if row and row["status"] == "degraded" else None

    row = until("orin-01 degraded through Prometheus", degraded)
    assert "on CPU" in row["reason"] and row["group"] == "lab"
    assert row["providers"] == {"yunet_2023mar_int8bq": "cpu", "sface_2021dec_int8bq": "cpu"}
    assert row["versions"]["JetPack"] == "6.2"
    assert row["gpu_expected"] == "a Jetson" and set(row["provider_states"].values()) == {"fallback"}

    def refused() -> dict | None:
        """Requests without a key (401) through PromQL: client errors, apart from server errors."""
        requests.post(f"{stack['service']}/extract", json={}, timeout=10)
        row = {a["name"]: a for a in backend.fleet()["appliances"]}["orin-01"]
        return row if row["auth_failure_ratio"] else None

    # the camera panel's address: the service as Prometheus scrapes it (its targets API)
    assert backend.appliance_view("orin-01").service == stack["service"]
    assert backend.appliance_view("no-such-appliance") is None

    row = until("401s counted as client errors through Prometheus", refused)
    # every 4xx here is a 401 (the two queries are evaluated a moment apart)
    assert row["client_error_ratio"] == pytest.approx(row["auth_failure_ratio"], abs=0.05) and not row["error_ratio"]
