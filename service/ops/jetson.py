"""Jetson hardware as the kernel shows it: sysfs, /etc/nv_tegra_release, the device tree and
`nvpmodel -q`. Every reader takes a root folder so tests can point it at a fixture tree built
in the real formats; every reader returns None (or nothing) for what a host does not have.

Paths follow what jetson_stats (jtop) reads on JetPack 5 and 6.
"""

from __future__ import annotations

import errno
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GPU_NODE_NAMES = ("gpu", "ga10b", "gv11b", "gp10b")
# L4T release -> JetPack, as NVIDIA's Jetson Linux release notes pair them (JetPack 6 = L4T R36,
# JetPack 5 = R35); roles/jetson_host/defaults/main.yml has the same table, kept equal by a test.
JETPACK_BY_L4T = {
    "36.5.0": "6.2.2",
    "36.4.7": "6.2.1",
    "36.4.4": "6.2.1",
    "36.4.3": "6.2",
    "36.4.0": "6.1",
    "36.3.0": "6.0",
    "36.2.0": "6.0 DP",
    "36.0.0": "6.0 EA",
    "35.6.1": "5.1.5",
    "35.6.0": "5.1.4",
    "35.5.0": "5.1.3",
    "35.4.1": "5.1.2",
    "35.3.1": "5.1.1",
    "35.2.1": "5.1",
    "35.1.0": "5.0.2",
}


# What a file that is not there, or a sensor that is switched off, answers: absence, not failure.
ABSENT = {errno.ENOENT, errno.ENODEV, errno.EINVAL, errno.ENODATA, errno.EAGAIN, errno.ENXIO, errno.ENOTDIR}


def _read(path: Path) -> str | None:
    """The file's text, None where the host does not have it; other errors (a file that cannot
    be read) propagate, so the collector reports failure instead of silently reporting nothing."""
    try:
        return path.read_bytes().rstrip(b"\x00\n ").decode(errors="replace").strip("\x00").strip()
    except OSError as exc:
        if exc.errno in ABSENT:
            return None
        raise


def _read_int(path: Path) -> int | None:
    """The file's leading integer, None where the host does not have it; text that is not a
    number raises, like a file that cannot be read: a broken sensor is a failed collector,
    not a silently missing series."""
    text = _read(path)
    if not text:
        return None
    try:
        return int(text.split()[0])
    except ValueError:
        raise ValueError(f"{path}: not a number: {text[:40]!r}") from None


@dataclass(frozen=True)
class Release:
    l4t: str
    jetpack: str
    board: str


def release(root: Path) -> Release | None:
    """L4T from /etc/nv_tegra_release (`# R36 (release), REVISION: 4.3, ...`), the board from
    /proc/device-tree/model; None on a host that is not a Jetson."""
    text = _read(root / "etc" / "nv_tegra_release")
    if text is None:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", text)
    if not match:
        return Release("unknown", "unknown", _read(root / "proc" / "device-tree" / "model") or "unknown")
    l4t = f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
    return Release(l4t, jetpack_for(l4t), _read(root / "proc" / "device-tree" / "model") or "unknown")


def is_jetson(root: Path) -> bool:
    """Whether /etc/nv_tegra_release is there (what `release` needs first, without the rest)."""
    return _read(root / "etc" / "nv_tegra_release") is not None


def jetpack_for(l4t: str) -> str:
    return JETPACK_BY_L4T.get(l4t, "unknown")


@dataclass(frozen=True)
class GPU:
    name: str
    load_ratio: float | None
    cur_hz: int | None
    min_hz: int | None
    max_hz: int | None


def gpu(root: Path) -> GPU | None:
    """The integrated GPU's devfreq device: its `device/load` (per mille) and frequencies (Hz)."""
    devfreq = root / "sys" / "class" / "devfreq"
    if not devfreq.is_dir():
        return None
    for item in sorted(devfreq.iterdir()):
        name = _read(item / "device" / "of_node" / "name")
        if name not in GPU_NODE_NAMES:
            continue
        load = _read_int(item / "device" / "load")
        return GPU(
            name,
            None if load is None else min(max(load / 1000.0, 0.0), 1.0),
            _read_int(item / "cur_freq"),
            _read_int(item / "min_freq"),
            _read_int(item / "max_freq"),
        )
    return None


def temperatures(root: Path) -> dict[str, float]:
    """Every thermal zone's temperature in degrees Celsius (millidegrees in sysfs); zones whose
    sensor is off (reads fail, or the -256 C sentinel) are left out."""
    out: dict[str, float] = {}
    for zone in sorted((root / "sys" / "class" / "thermal").glob("thermal_zone*")):
        kind, milli = _read(zone / "type"), _read_int(zone / "temp")
        if kind and milli is not None and milli > -40_000:
            out[kind] = milli / 1000.0
    return out


@dataclass(frozen=True)
class Rail:
    volts: float
    amperes: float

    @property
    def watts(self) -> float:
        return self.volts * self.amperes


def power_rails(root: Path) -> dict[str, Rail]:
    """INA3221 channels (JetPack 5/6 hwmon layout): in{N}_label, in{N}_input in mV and
    curr{N}_input in mA. `NC` channels and channel 7 (the sum of shunt voltages) are skipped."""
    rails: dict[str, Rail] = {}
    for device in sorted((root / "sys" / "bus" / "i2c" / "devices").glob("*")):
        if "ina3221" not in (_read(device / "name") or ""):
            continue
        for hwmon in sorted((device / "hwmon").glob("hwmon*")):
            for label_file in sorted(hwmon.glob("in*_label")):
                channel = label_file.name[2:].split("_")[0]
                label = _read(label_file) or ""
                if channel == "7" or not label or "NC" in label.split():
                    continue
                millivolts = _read_int(hwmon / f"in{channel}_input")
                milliamps = _read_int(hwmon / f"curr{channel}_input")
                if millivolts is not None and milliamps is not None:
                    rails[label] = Rail(millivolts / 1000.0, milliamps / 1000.0)
    return rails


# Where the memory controller's average activity is, newest layout first (the order jtop reads
# them in): JetPack 6 moved it to the central actmon in debugfs; JetPack 5 and older have it in sysfs.
EMC_ACTIVITY_PATHS = (
    ("sys", "kernel", "debug", "cactmon", "mc_all"),
    ("sys", "kernel", "debug", "bpmp", "debug", "actmon", "mc_all_avg_activity"),
    ("sys", "kernel", "actmon_avg_activity", "mc_all"),
)


def _emc_activity(root: Path) -> int | None:
    """The first readable activity counter of EMC_ACTIVITY_PATHS (debugfs is root's: a
    non-root exporter simply has none)."""
    for parts in EMC_ACTIVITY_PATHS:
        try:
            value = _read_int(root.joinpath(*parts))
        except PermissionError:
            continue
        if value is not None:
            return value
    return None


def emc(root: Path) -> tuple[int | None, float | None]:
    """External memory controller: frequency in Hz (bpmp debugfs, root only) and utilisation.

    actmon's counter is the average activity in kHz scaled by 100: activity / rate-in-kHz is a
    percentage (jtop shows it as one), so the ratio divides by 100 more. A value that still lands
    outside 0..1 means a layout this code does not know: no number then, never a wrong one."""
    try:
        rate = _read_int(root / "sys" / "kernel" / "debug" / "bpmp" / "debug" / "clk" / "emc" / "rate")
    except PermissionError:  # debugfs is root's: an exporter run as a user simply has no EMC rate
        rate = None
    activity = _emc_activity(root)
    if not rate or activity is None:
        return rate, None
    ratio = activity / (rate / 1000.0) / 100.0
    if not 0.0 <= ratio <= 1.05:  # a little overshoot is sampling skew; more is a unit we do not know
        return rate, None
    return rate, min(ratio, 1.0)


class PowerMode:
    """`nvpmodel -q`, run with a timeout and cached: the mode changes rarely, and a scrape must
    never wait on a slow or hung tool."""

    def __init__(self, command: str = "nvpmodel", ttl_s: float = 60.0, timeout_s: float = 2.0) -> None:
        self._command, self._ttl, self._timeout = command, ttl_s, timeout_s
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[str, str] | None] = (-1e9, None)

    def query(self) -> tuple[str, str] | None:
        """(mode name, mode id), e.g. ("MAXN", "0"); None where nvpmodel is absent or fails."""
        with self._lock:
            stamp, value = self._cached
            if time.monotonic() - stamp < self._ttl:
                return value
            value = self._run()
            self._cached = (time.monotonic(), value)
            return value

    def _run(self) -> tuple[str, str] | None:
        try:
            result = subprocess.run(
                [self._command, "-q"], capture_output=True, text=True, timeout=self._timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", result.stdout)
        return (match.group(1), match.group(2)) if match else None
