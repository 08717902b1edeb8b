"""Every client of an appliance speaks HTTPS to its front and verifies it: the exporter's probe, the
dashboard's poller and `facefleet bench load`, each against a real nginx front (tests/front.py) before a
real service with keys on (our default). A client given the fleet CA gets through; one without it refuses
the appliance (and never sends the key) with a reason that says TLS, not "refused"."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from facefleet.dashboard import targets
from facefleet.dashboard.poller import UnreachableError, fetch
from facefleet.errors import ConfigError
from facefleet.ops.client import KeySource, TrustSource, tls_context
from facefleet.ops.exporter import ServiceProbe
from facefleet.settings import DashboardSettings

from .front import Front, make_pki
from .server import cpu_service

KEY = "tls-clients-test-key-0001"
PHOTO = Path(__file__).resolve().parents[2] / "shared" / "images" / "obama.jpg"


@pytest.fixture(scope="module")
def front(default_pack: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    folder = tmp_path_factory.mktemp("tls-clients")
    keys = folder / "api-keys"
    keys.write_text(f"{KEY}\n")
    svc = cpu_service(default_pack, cache_dir, folder, FACEFLEET_AUTH="on", FACEFLEET_API_KEYS_FILE=str(keys))
    try:
        nginx = Front(folder / "nginx", svc.port)
        try:
            yield nginx
        finally:
            nginx.stop()
    finally:
        svc.stop()


def probe_failure(probe: ServiceProbe) -> str | None:
    """The reason of the probe's failure, or None when it got /health and /info."""
    failure = probe._probe().failure  # one probe now, without the background thread
    return failure.reason if failure else None


def test_the_exporter_probe_verifies_the_front_with_the_fleet_ca(front: Front) -> None:
    trusted = ServiceProbe(front.url, KeySource(key=KEY), tls=TrustSource(str(front.pki.ca), "FACEFLEET_CA_FILE"))
    assert probe_failure(trusted) is None
    untrusted = ServiceProbe(front.url, KeySource(key=KEY))  # the system's trust store: not our CA
    assert probe_failure(untrusted) == "tls"


def test_a_replaced_ca_file_reaches_a_running_probe(front: Front, tmp_path: Path) -> None:
    """The roles replace ca.crt when the fleet CA changes (and re-sign the host): the exporter keeps running."""
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")  # another fleet's CA first
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(other.ca.read_bytes())
    probe = ServiceProbe(front.url, KeySource(key=KEY), tls=TrustSource(str(ca_file), "FACEFLEET_CA_FILE"))
    assert probe_failure(probe) == "tls"
    ca_file.write_bytes(front.pki.ca.read_bytes() + b"\n")  # the roles' copy of this fleet's CA
    assert probe_failure(probe) is None


def test_an_unreadable_ca_file_is_one_line_naming_its_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot use FACEFLEET_CA_FILE=.*/missing.crt as a CA certificate"):
        tls_context(str(tmp_path / "missing.crt"), "FACEFLEET_CA_FILE")
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="FACEFLEET_DASHBOARD_CA_FILE"):
        tls_context(str(bad), "FACEFLEET_DASHBOARD_CA_FILE")


def test_the_dashboard_polls_https_appliances_named_by_their_scheme_label(front: Front, tmp_path: Path) -> None:
    listed = tmp_path / "appliances.json"
    target = front.url.removeprefix("https://")
    listed.write_text(json.dumps([{"targets": [target], "labels": {"appliance": "edge", "__scheme__": "https"}}]))
    settings = DashboardSettings(targets_file=str(listed), ca_file=str(front.pki.ca), appliance_api_key=KEY)
    [appliance] = targets.load(settings)
    assert appliance.service == front.url
    status, body = fetch(f"{appliance.service}/info", 5, KEY, tls_context(settings.ca_file, "CA"))
    assert status == 200 and "models" in json.loads(body)
    with pytest.raises(
        UnreachableError, match=r"its certificate was not verified \(unable to get local issuer certificate\)"
    ):
        fetch(f"{appliance.service}/info", 5, KEY, tls_context("", "CA"))


def test_a_scheme_label_that_is_neither_http_nor_https_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "appliances.json"
    listed.write_text(json.dumps([{"targets": ["edge:18080"], "labels": {"__scheme__": "ftp"}}]))
    with pytest.raises(ValueError, match="__scheme__ is 'ftp', not http or https"):
        targets.load(DashboardSettings(targets_file=str(listed)))


def bench_load(front: Front, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "facefleet", "bench", "load", front.url, "--image", str(PHOTO)]
    argv += ["--api-key", KEY, "--clients", "1", "--requests", "2", "--seconds", "60", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_bench_load_speaks_https_with_cacert_and_says_why_without(front: Front) -> None:
    verified = bench_load(front, "--cacert", str(front.pki.ca))
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert json.loads(verified.stdout)["ok"] == 2
    unverified = bench_load(front)
    assert unverified.returncode == 1
    assert "its certificate was not verified: give the fleet CA with --cacert" in unverified.stderr
