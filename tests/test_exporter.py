"""The exporter on FAKE Jetson trees (AGX Orin, Orin Nano on JetPack 6) and a plain host."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
import sys
import time

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from facefleet.ops import jetson
from facefleet.ops.client import KeySource
from facefleet.ops.exporter import PROBE_REASONS, ExporterCollector, ServiceProbe, build_registry

from .fakeappliance import FakeAppliance, FakeBrokenAppliance
from .fakejetson import AGX_ORIN, ORIN_NANO, build, nvpmodel_script, plain_host
from .server import cpu_service, exporter_process, free_port, until


def scrape(root, tmp_path, board_mode: str | None = None, metrics_dir=None) -> dict[str, float]:
    command = str(nvpmodel_script(tmp_path, board_mode)) if board_mode else str(tmp_path / "no-nvpmodel")
    registry = build_registry(metrics_dir or tmp_path / "no-metrics", root, "", command)
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def success(samples: dict[str, float]) -> dict[str, float]:
    pattern = re.compile(r'facefleet_exporter_collector_success\{collector="(\w+)"\}')
    return {m.group(1): v for k, v in samples.items() if (m := pattern.fullmatch(k))}


def test_agx_orin_on_jetpack_6_2(tmp_path):
    samples = scrape(build(tmp_path / "root", AGX_ORIN), tmp_path, AGX_ORIN.power_mode)
    assert (
        samples['facefleet_jetson_info{board="NVIDIA Jetson AGX Orin Developer Kit",jetpack="6.2",l4t="36.4.3"}'] == 1
    )
    assert samples["facefleet_jetson_gpu_load_ratio"] == pytest.approx(0.372)
    assert samples["facefleet_jetson_gpu_frequency_hertz"] == 918000000
    assert samples["facefleet_jetson_gpu_max_frequency_hertz"] == 1300500000
    assert samples["facefleet_jetson_clocks_pinned"] == 0
    assert samples['facefleet_jetson_temperature_celsius{zone="cpu-thermal"}'] == pytest.approx(45.531)
    assert samples['facefleet_jetson_rail_power_watts{rail="VDD_GPU_SOC"}'] == pytest.approx(19.192 * 1.208)
    assert samples['facefleet_jetson_rail_voltage_volts{rail="VDDQ_VDD2_1V8AO"}'] == pytest.approx(4.992)
    rails = {k for k in samples if k.startswith("facefleet_jetson_rail_power_watts")}
    assert len(rails) == 4  # NC channels and the sum of shunt voltages are left out
    assert not any("NC" in k or "sum of shunt" in k for k in rails)
    assert samples['facefleet_jetson_power_mode_info{id="0",mode="MAXN"}'] == 1
    assert samples["facefleet_jetson_emc_frequency_hertz"] == 3199000000
    assert samples["facefleet_jetson_emc_utilization_ratio"] == pytest.approx(0.20)  # JetPack 6's cactmon path
    assert success(samples) == {
        "service_metrics": 0,
        "jetson_release": 1,
        "jetson_gpu": 1,
        "jetson_thermal": 1,
        "jetson_power": 1,
        "jetson_emc": 1,
        "jetson_nvpmodel": 1,
    }


def test_orin_nano_with_jetson_clocks(tmp_path):
    samples = scrape(build(tmp_path / "root", ORIN_NANO), tmp_path, ORIN_NANO.power_mode)
    assert (
        samples['facefleet_jetson_info{board="NVIDIA Jetson Orin Nano Developer Kit",jetpack="6.1",l4t="36.4.0"}'] == 1
    )
    assert samples["facefleet_jetson_gpu_load_ratio"] == pytest.approx(0.998)
    assert samples["facefleet_jetson_clocks_pinned"] == 1
    assert samples['facefleet_jetson_power_mode_info{id="0",mode="15W"}'] == 1  # warning lines are skipped
    assert 'facefleet_jetson_temperature_celsius{zone="cv0-thermal"}' not in samples  # sensor off: absent
    assert samples['facefleet_jetson_rail_power_watts{rail="VDD_IN"}'] == pytest.approx(5.048 * 1.432)
    assert "facefleet_jetson_emc_frequency_hertz" not in samples  # no debugfs access: absent, not zero


def test_plain_host_has_no_jetson_metrics(tmp_path):
    samples = scrape(plain_host(tmp_path / "root"), tmp_path)
    jetson_series = [k for k in samples if k.startswith("facefleet_jetson_") and "temperature" not in k]
    assert jetson_series == []
    assert samples['facefleet_jetson_temperature_celsius{zone="x86_pkg_temp"}'] == 38.0
    assert all(v == 1 for k, v in success(samples).items() if k != "service_metrics")


def test_an_unreadable_file_fails_its_collector_only(tmp_path):
    root = build(tmp_path / "root", AGX_ORIN)
    temp = root / "sys" / "class" / "thermal" / "thermal_zone1" / "temp"
    temp.unlink()
    temp.mkdir()  # reading it now fails with EISDIR, as a broken sysfs attribute would
    samples = scrape(root, tmp_path, AGX_ORIN.power_mode)
    result = success(samples)
    assert result["jetson_thermal"] == 0
    assert all(result[name] == 1 for name in ("jetson_gpu", "jetson_power", "jetson_release", "jetson_nvpmodel"))
    assert "facefleet_jetson_gpu_load_ratio" in samples


def test_nvpmodel_is_bounded_in_time_and_cached(tmp_path):
    slow = nvpmodel_script(tmp_path, "NV Power Mode: MAXN\n0\n", delay_s=5)
    mode = jetson.PowerMode(str(slow), ttl_s=60, timeout_s=0.5)
    start = time.monotonic()
    assert mode.query() is None and mode.query() is None  # the second answer comes from the cache
    assert time.monotonic() - start < 3
    fast = jetson.PowerMode(str(nvpmodel_script(tmp_path, "NV Power Mode: 30W\n2\n")))
    assert fast.query() == ("30W", "2")


@pytest.mark.parametrize(
    ("l4t", "jetpack"),
    [("36.4.3", "6.2"), ("36.4.0", "6.1"), ("36.3.0", "6.0"), ("35.6.0", "5.1.4"), ("34.1.0", "unknown")],
)
def test_jetpack_from_l4t(l4t, jetpack):
    assert jetson.jetpack_for(l4t) == jetpack


def test_emc_on_each_layout_and_never_a_wrong_number(tmp_path):
    """JetPack 6 keeps the activity in debugfs' cactmon, JetPack 5 in sysfs' actmon_avg_activity:
    both read as 20 %; a counter of an unknown scale gives no ratio rather than a clamped 100 %."""
    jp6 = build(tmp_path / "jp6", AGX_ORIN)
    jp5 = build(
        tmp_path / "jp5", dataclasses.replace(AGX_ORIN, emc_activity_path="sys/kernel/actmon_avg_activity/mc_all")
    )
    assert jetson.emc(jp6) == (3199000000, pytest.approx(0.20))
    assert jetson.emc(jp5) == (3199000000, pytest.approx(0.20))
    odd = build(tmp_path / "odd", dataclasses.replace(AGX_ORIN, emc=(3199000000, 3199000 * 1000)))
    assert jetson.emc(odd) == (3199000000, None)


# ---------------------------------------------------------------- the probe under API keys (issue 17)
PROBE_KEY = "key-of-the-probed-appliance-0001"
PROBE_INFO = json.dumps(
    {"models": {"detection": {"name": "yunet_2023mar_int8bq", "active_provider": "cpu"}}, "version": "0"}
).encode()
PROBE_HEALTH = b'{"status": "ok", "checks": {}}'


def probe_scrape(probe: ServiceProbe) -> dict[str, float]:
    """One scrape of the probe alone, through the exporter's collector (which reports its success)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExporterCollector({"service_probe": probe.metrics}))
    return samples_of(generate_latest(registry).decode())


def samples_of(text: str) -> dict[str, float]:
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in text.splitlines() if line[:1] not in "#")}


def failure_reasons(samples: dict[str, float]) -> dict[str, float]:
    pattern = re.compile(r'facefleet_probe_failure_reason\{reason="(\w+)"\}')
    return {m.group(1): v for k, v in samples.items() if (m := pattern.fullmatch(k))}


def test_a_probe_with_the_right_key_reports_each_model(tmp_path):
    keys = tmp_path / "api-keys"
    keys.write_text(f"# the role's file\n{PROBE_KEY}\n")
    fake = FakeAppliance(PROBE_INFO, PROBE_HEALTH, b"", api_key=PROBE_KEY)
    try:
        samples = probe_scrape(ServiceProbe(f"http://{fake.target}", KeySource(file=str(keys), origin="FILE")))
    finally:
        fake.close()
    assert samples["facefleet_probe_success"] == 1 and samples["facefleet_probe_up"] == 1
    assert samples['facefleet_probe_model_provider{model="yunet_2023mar_int8bq",provider="cpu",task="detection"}'] == 1
    assert set(failure_reasons(samples).values()) == {0.0} and set(failure_reasons(samples)) == set(PROBE_REASONS)
    assert success(samples) == {"service_probe": 1}


def _failing(case: str, tmp_path) -> tuple[ServiceProbe, list]:
    """A probe and the FAKE appliances behind it, for each way a probe fails."""
    good = KeySource(key=PROBE_KEY)
    if case == "nothing listens":
        return ServiceProbe(f"http://127.0.0.1:{free_port()}", good), []
    if case == "not HTTP":
        broken = FakeBrokenAppliance("not_http")
        return ServiceProbe(f"http://{broken.target}", good), [broken]
    if case == "unreadable key file":
        missing = KeySource(file=str(tmp_path / "none"), origin="FACEFLEET_API_KEY_FILE")
        fake = FakeAppliance(PROBE_INFO, PROBE_HEALTH, b"", api_key=PROBE_KEY)
        return ServiceProbe(f"http://{fake.target}", missing), [fake]
    info = b"<html>not json</html>" if case == "not JSON" else PROBE_INFO
    fake = FakeAppliance(info, PROBE_HEALTH, b"", delay_s=1.5 if case == "slow" else 0.0, api_key=PROBE_KEY)
    key = {"no key": KeySource(), "wrong key": KeySource(key="a-key-of-another-fleet-0001")}.get(case, good)
    return ServiceProbe(f"http://{fake.target}", key, timeout_s=0.5 if case == "slow" else 2.0), [fake]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no key", "unauthorized"),
        ("wrong key", "unauthorized"),
        ("not JSON", "bad_answer"),
        ("not HTTP", "bad_answer"),
        ("slow", "timeout"),
        ("nothing listens", "refused"),
        ("unreadable key file", "no_key"),
    ],
)
def test_every_failed_probe_is_a_failure_with_its_reason(tmp_path, case, reason):
    """Never a success with no data: success 0, the collector failed, the reason one of a fixed set."""
    probe, fakes = _failing(case, tmp_path)
    try:
        samples = probe_scrape(probe)
    finally:
        for fake in fakes:
            fake.close()
    assert samples["facefleet_probe_success"] == 0, samples
    assert failure_reasons(samples) == {r: 1.0 if r == reason else 0.0 for r in PROBE_REASONS}
    assert success(samples) == {"service_probe": 0}
    assert not [k for k in samples if k.startswith("facefleet_probe_model_provider")]
    answered = case in ("no key", "wrong key", "not JSON")
    assert samples["facefleet_probe_up"] == (1 if answered else 0)


@pytest.mark.slow
def test_the_exporter_probes_the_real_service_with_its_key_and_sees_it_stop(default_pack, cache_dir, tmp_path):
    """A real service with keys on (the default), a real exporter given the key file and one
    without: the first has each model's provider, the second says unauthorized; once the service
    stops, the first says refused within one probe interval (5 s)."""
    keys = tmp_path / "api-keys"
    keys.write_text(f"# the inference_service role's file\n{PROBE_KEY}\n")
    svc = cpu_service(default_pack, cache_dir, tmp_path, FACEFLEET_AUTH="on", FACEFLEET_API_KEYS_FILE=str(keys))
    started = [svc]
    try:
        root = plain_host(tmp_path / "plain")
        keyed, keyed_url = exporter_process(tmp_path, svc, root, "keyed.log", FACEFLEET_API_KEY_FILE=str(keys))
        started.append(keyed)
        keyless, keyless_url = exporter_process(tmp_path, svc, root, "keyless.log", FACEFLEET_API_KEY_FILE="")
        started.append(keyless)
        scrape_of = lambda url: samples_of(requests.get(f"{url}/metrics", timeout=10).text)  # noqa: E731
        good = scrape_of(keyed_url)
        assert good["facefleet_probe_success"] == 1 and success(good)["service_probe"] == 1
        providers = {k for k, v in good.items() if k.startswith("facefleet_probe_model_provider") and v == 1}
        assert providers == {
            'facefleet_probe_model_provider{model="yunet_2023mar_int8bq",provider="cpu",task="detection"}',
            'facefleet_probe_model_provider{model="sface_2021dec_int8bq",provider="cpu",task="recognition"}',
        }
        refused = scrape_of(keyless_url)
        assert refused["facefleet_probe_success"] == 0 and failure_reasons(refused)["unauthorized"] == 1
        assert success(refused)["service_probe"] == 0 and refused["facefleet_probe_healthy"] == 1
        assert "service probe failing (unauthorized)" in (tmp_path / "keyless.log").read_text()
        svc.stop()
        stopped = until("the probe to see the service gone", lambda: failure_reasons(scrape_of(keyed_url))["refused"])
        assert stopped == 1 and scrape_of(keyed_url)["facefleet_probe_up"] == 0
    finally:
        for process in reversed(started):
            process.stop()


def test_an_exporter_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "facefleet", "exporter", "--port", str(port), "--root", str(tmp_path)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"facefleet: port {port} on 127.0.0.1 is already in use: choose another with --port or FACEFLEET_EXPORTER_PORT"
    )
