"""FAKE Jetsons for tests: sysfs, device-tree, /etc/nv_tegra_release trees and an `nvpmodel`
script, laid out and formatted as JetPack 6 has them on a Jetson AGX Orin and an Orin Nano
(devfreq symlinks to the platform device, of_node names NUL-terminated, temperatures in
millidegrees, INA3221 hwmon channels in mV and mA with NC and sum-of-shunts channels)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Board:
    model: str
    release: str  # first line of /etc/nv_tegra_release
    gpu_hz: tuple[int, int, int]  # min, cur, max
    gpu_load_permille: int
    temps_millic: dict[str, int]
    ina3221: dict[str, dict[int, tuple[str, int, int]]]  # i2c device -> channel -> (label, mV, mA)
    power_mode: str  # what `nvpmodel -q` prints
    emc: tuple[int, int] | None = None  # (rate Hz, actmon mc_all: activity in kHz x 100)
    emc_activity_path: str = "sys/kernel/debug/cactmon/mc_all"  # JetPack 6; JetPack 5: sys/kernel/actmon_avg_activity
    extra_devfreq: dict[str, str] = field(default_factory=lambda: {"15340000.vic": "vic", "15480000.nvdec": "nvdec"})


AGX_ORIN = Board(
    model="NVIDIA Jetson AGX Orin Developer Kit",
    release="# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:49:37 UTC 2025",
    gpu_hz=(306000000, 918000000, 1300500000),
    gpu_load_permille=372,
    temps_millic={
        "cpu-thermal": 45531,
        "gpu-thermal": 43968,
        "cv0-thermal": 43750,
        "soc0-thermal": 44843,
        "tj-thermal": 46218,
        "tboard-thermal": 33000,
    },
    ina3221={
        "1-0040": {
            1: ("VDD_GPU_SOC", 19192, 1208),
            2: ("VDD_CPU_CV", 19200, 402),
            3: ("VIN_SYS_5V0", 5016, 1036),
            7: ("sum of shunt voltages", 19200, 2646),
        },
        "1-0041": {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 4992, 120), 3: ("NC", 0, 0)},
    },
    power_mode="NV Power Mode: MAXN\n0\n",
    emc=(3199000000, 20 * 3199000),  # 20 % of 3199 MHz
)

ORIN_NANO = Board(
    model="NVIDIA Jetson Orin Nano Developer Kit",
    release="# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
    "DATE: Fri Sep 13 04:36:44 UTC 2024",
    gpu_hz=(624750000, 624750000, 624750000),  # jetson_clocks on: minimum pinned to maximum
    gpu_load_permille=998,
    temps_millic={
        "cpu-thermal": 51250,
        "gpu-thermal": 50062,
        "soc0-thermal": 50500,
        "tj-thermal": 52156,
        "cv0-thermal": -256000,
    },  # a zone whose sensor is off reports -256 C
    ina3221={
        "1-0040": {
            1: ("VDD_IN", 5048, 1432),
            2: ("VDD_CPU_GPU_CV", 5048, 552),
            3: ("VDD_SOC", 5048, 312),
            7: ("sum of shunt voltages", 5048, 2296),
        }
    },
    power_mode="NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n0\n",
)


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _devfreq(root: Path, device: str, node_name: str, hz: tuple[int, int, int], load: int | None) -> None:
    platform = root / "sys" / "devices" / "platform" / "bus@0" / device
    node = root / "sys" / "firmware" / "devicetree" / "base" / "bus@0" / f"{node_name}@{device.partition('.')[0]}"
    _write(node / "name", node_name.encode() + b"\x00")
    platform.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(node, platform), platform / "of_node")
    if load is not None:
        _write(platform / "load", f"{load}\n")
    devfreq = platform / "devfreq" / device
    for name, value in zip(("min_freq", "cur_freq", "max_freq"), hz, strict=True):
        _write(devfreq / name, f"{value}\n")
    os.symlink("../../../" + device, devfreq / "device")
    link = root / "sys" / "class" / "devfreq" / device
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(devfreq, link.parent), link)


def build(root: Path, board: Board) -> Path:
    """A JetPack 6 tree for `board` under root; returns root."""
    _write(
        root / "etc" / "nv_tegra_release", board.release + "\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n"
    )
    _write(root / "proc" / "device-tree" / "model", board.model.encode() + b"\x00")
    _devfreq(root, "17000000.gpu", "gpu", board.gpu_hz, board.gpu_load_permille)
    for device, name in board.extra_devfreq.items():
        _devfreq(root, device, name, (115200000, 115200000, 1152000000), None)
    for i, (kind, milli) in enumerate(board.temps_millic.items()):
        _write(root / "sys" / "class" / "thermal" / f"thermal_zone{i}" / "type", f"{kind}\n")
        _write(root / "sys" / "class" / "thermal" / f"thermal_zone{i}" / "temp", f"{milli}\n")
    for n, (device, channels) in enumerate(board.ina3221.items()):
        base = root / "sys" / "bus" / "i2c" / "devices" / device
        _write(base / "name", "ina3221\n")
        hwmon = base / "hwmon" / f"hwmon{n + 1}"
        for channel, (label, mv, ma) in channels.items():
            _write(hwmon / f"in{channel}_label", f"{label}\n")
            _write(hwmon / f"in{channel}_input", f"{mv}\n")
            _write(hwmon / f"curr{channel}_input", f"{ma}\n")
    if board.emc:
        _write(root / "sys" / "kernel" / "debug" / "bpmp" / "debug" / "clk" / "emc" / "rate", f"{board.emc[0]}\n")
        _write(root / board.emc_activity_path, f"{board.emc[1]}\n")
    return root


def plain_host(root: Path) -> Path:
    """An ordinary x86 host: thermal zones of its own, no Jetson anything."""
    _write(root / "sys" / "class" / "thermal" / "thermal_zone0" / "type", "x86_pkg_temp\n")
    _write(root / "sys" / "class" / "thermal" / "thermal_zone0" / "temp", "38000\n")
    (root / "sys" / "class" / "devfreq").mkdir(parents=True, exist_ok=True)
    return root


def nvpmodel_script(folder: Path, output: str, delay_s: float = 0.0) -> Path:
    """A FAKE `nvpmodel` that answers `-q` with the given text (its real output format)."""
    script = folder / "nvpmodel"
    body = f"sleep {delay_s}\n" if delay_s else ""
    script.write_text(f'#!/bin/sh\n{body}[ "$1" = "-q" ] || exit 1\ncat <<\'OUT\'\n{output}OUT\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script
