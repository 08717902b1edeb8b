"""The exporter on FAKE Jetson trees (AGX Orin, Orin Nano on JetPack 6) and a plain host."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from prometheus_client import generate_latest

from service import jetson
from service.exporter import build_registry

from .fakejetson import AGX_ORIN, ORIN_NANO, build, nvpmodel_script, plain_host


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
