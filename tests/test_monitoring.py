"""Alert rules, the Grafana dashboard and the metric names they use, checked with promtool and
against what the service and the exporter really export; plus the exporter's own naming lint."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from facefleet.ops.exporter import build_registry

from .fakejetson import AGX_ORIN, build, nvpmodel_script
from .media import make_video
from .monitoring.render import ROLE, render
from .server import cpu_service, until

TESTS = Path(__file__).resolve().parent / "monitoring"
DASHBOARD = ROLE / "files" / "grafana" / "dashboards" / "facefleet.json"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: install Debian's prometheus package (scripts/test.sh does)"
    return path


@pytest.fixture(scope="module")
def live(default_pack, cache_dir, tmp_path_factory, image_bytes, images_dir):
    """A real service with some traffic, and the text of its /metrics and of the exporter."""
    folder = tmp_path_factory.mktemp("monitoring")
    metrics_dir = folder / "metrics"
    # one camera (a file of a photo), so the stream series exist as on an appliance that watches cameras
    video = make_video([images_dir / "two_people.jpg"], seconds=2.0, gap_s=0.5)
    cameras = folder / "cameras.yml"
    cameras.write_text(f"- name: door\n  url: {video.path}\n")
    svc = cpu_service(
        default_pack,
        cache_dir,
        folder,
        FACEFLEET_STREAMS_FILE=str(cameras),
        FACEFLEET_STREAMS_DIR=str(folder / "streams"),
    )
    try:
        until(
            "the camera's frames in /metrics",
            lambda: (
                "facefleet_stream_up" in (text := requests.get(f"{svc.url}/metrics", timeout=10).text)
                and 'stage="processed"' in text
            ),
        )
        photo = base64.b64encode(image_bytes("two_people.jpg")).decode()
        for body in ({"images": {"data": [photo, "@@"]}}, {"images": {"data": [photo]}}):
            requests.post(f"{svc.url}/extract", json=body, timeout=60)
        requests.post(f"{svc.url}/extract", data=b"{", headers={"Content-Type": "application/json"}, timeout=30)
        service_text = requests.get(f"{svc.url}/metrics", timeout=10).text
        root = build(folder / "orin", AGX_ORIN)
        nvpmodel = nvpmodel_script(folder, AGX_ORIN.power_mode)
        exporter_text = generate_latest(build_registry(metrics_dir, root, svc.url, str(nvpmodel))).decode()
        yield {"service": service_text, "exporter": exporter_text}
    finally:
        svc.stop()


def sample_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def used_metric_names(text: str) -> set[str]:
    return set(re.findall(r"\b(facefleet_[a-z_]+|up)\b(?=\s*[{\[)=!<>]|\s*$|\s)", text)) - {
        "facefleet_service",
        "facefleet_exporter",
    }


# ----------------------------------------------------------------- rules
def test_rules_pass_promtool_check_and_unit_tests(tmp_path):
    rules = render("facefleet-alerts.yml.j2", tmp_path / "facefleet-alerts.yml")
    check = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 10 rules found" in check.stdout
    shutil.copy(TESTS / "alerts_test.yml", tmp_path)
    unit = subprocess.run(
        [promtool(), "test", "rules", str(tmp_path / "alerts_test.yml")], capture_output=True, text=True, check=False
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_alert_has_a_unit_test(tmp_path):
    rules = yaml.safe_load(render("facefleet-alerts.yml.j2", tmp_path / "r.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tested = {
        case["alertname"]
        for test in yaml.safe_load((TESTS / "alerts_test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert names == tested


def test_rules_and_dashboard_use_only_exported_metrics(live, tmp_path):
    exported = sample_names(live["service"]) | sample_names(live["exporter"]) | {"up"}
    rules = render("facefleet-alerts.yml.j2", tmp_path / "r.yml").read_text()
    dashboard = DASHBOARD.read_text()
    for source in (rules, dashboard):
        used = used_metric_names(source)
        assert used, "no metric names found"
        assert used <= exported, used - exported


def test_dashboard_shape():
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "facefleet_build_info" in variables["job"]["definition"]
    assert 'facefleet_build_info{job="$job"}' in variables["instance"]["definition"]
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    quantiles = [e for e in exprs if "histogram_quantile" in e]
    assert quantiles and all("_bucket" in e and "[$__rate_interval]" in e for e in quantiles)
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for topic in (
        "status",
        "provider",
        "request rate",
        "error",
        "latency",
        "batch",
        "gpu load",
        "temperature",
        "power",
        "power mode",
    ):
        assert topic in titles, topic


def test_grafana_provisioning_files(tmp_path):
    datasource = yaml.safe_load(render("grafana-datasource.yml.j2", tmp_path / "ds.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"
    assert datasource["datasources"][0]["url"] == "http://127.0.0.1:9090"
    provider = yaml.safe_load(
        (ROLE / "files" / "grafana" / "provisioning" / "dashboards" / "facefleet.yml").read_text()
    )
    assert provider["providers"][0]["type"] == "file"


# ----------------------------------------------------------------- naming
def test_endpoint_labels_are_readable_route_names(make_settings, default_pack):
    """Every route's `endpoint` label is a plain name (`docs`, not `docs_<path:path>`, the raw
    Flask rule a Grafana legend used to show), and the real /metrics with it passes promtool."""
    from facefleet.api import create_app
    from facefleet.api.logs import endpoint_label

    app = create_app(make_settings(models_dir=str(default_pack), log_level="WARNING"))
    adapter = app.url_map.bind("localhost")
    labels = {}
    for rule in app.url_map.iter_rules():
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        path = adapter.build(rule.endpoint, dict.fromkeys(rule.arguments, "x"), method=method)
        with app.test_request_context(path, method=method):
            labels[rule.rule] = endpoint_label()
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", label) for label in labels.values()), labels
    assert labels["/docs/<path:path>"] == labels["/docs/"] == "docs"
    assert labels["/static/<path:filename>"] == "static" and labels["/openapi.json"] == "openapi_json"
    assert labels["/galleries/<name>/search"] == "galleries_name_search" and labels["/"] == "root"
    assert labels["/extract"] == "extract"  # plain routes keep their names (alert rules and dashboards use it)
    client = app.test_client()
    assert client.get("/docs/swagger-ui.css").status_code == 200
    text = client.get("/metrics").text
    assert 'endpoint="docs"' in text and "<path" not in text
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_exporter_output(live):
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=live["exporter"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


UNITS = {
    "temperature": "_celsius",
    "power": "_watts",
    "frequency": "_hertz",
    "voltage": "_volts",
    "current": "_amperes",
    "duration": "_seconds",
    "load": "_ratio",
    "utilization": "_ratio",
}
UNBOUNDED_LABELS = {"path", "url", "request_id", "ip", "user", "image"}


@pytest.mark.parametrize("source", ["service", "exporter"])
def test_naming_lint_beyond_promtool(live, source):
    """Base units in the name, ratios within 0 to 1, no percent, _total counters, bounded labels."""
    for family in text_string_to_metric_families(live[source]):
        name = family.name
        if not name.startswith("facefleet_"):
            continue
        assert "percent" not in name, name
        for word, suffix in UNITS.items():
            if word in name.split("_") and family.type != "info":
                assert name.endswith(suffix) or name.endswith("_info"), f"{name} should end with {suffix}"
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        if name.endswith("_ratio"):
            assert all(0.0 <= s.value <= 1.0 for s in family.samples), name
        labels = {key for s in family.samples for key in s.labels}
        assert not labels & UNBOUNDED_LABELS, (name, labels)
        assert len(family.samples) <= 200, (name, len(family.samples))
