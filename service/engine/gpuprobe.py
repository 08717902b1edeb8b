"""Why a GPU provider of this onnxruntime cannot run here, found out before onnxruntime is asked.

onnxruntime-gpu lists TensorRT and CUDA as available whether or not their libraries load. Asked
for one that does not, it prints coloured E/W lines to the terminal and quietly builds a CPU
session. What fails is the dynamic loading of the provider's own shared library
(capi/libonnxruntime_providers_cuda.so, ..._tensorrt.so), so it is loaded here the way onnxruntime
loads it (after libonnxruntime_providers_shared.so, global), and the answer names the cause:
every library it needs that the loader cannot find, the NVIDIA driver (libcuda.so.1), or the
device. A provider with a cause is then never handed to onnxruntime, which so prints nothing.

The OpenVINO provider (onnxruntime-openvino, x86_64) is probed the same way, without a driver: its
provider library and the OpenVINO plugin of the configured device (libopenvino_intel_cpu_plugin.so
for CPU) must be in the build, and the host must be x86_64: a Jetson never runs it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facefleet.engine.ort import ort_module

DRIVER = "libcuda.so.1"  # the NVIDIA driver's user-space library (a Jetson: /usr/lib/aarch64-linux-gnu/tegra)
PT_LOAD, PT_DYNAMIC = 1, 2
# The OpenVINO plugin library of each device family the provider's device_type may name.
OPENVINO_PLUGINS = {
    "CPU": "libopenvino_intel_cpu_plugin.so",
    "GPU": "libopenvino_intel_gpu_plugin.so",
    "NPU": "libopenvino_intel_npu_plugin.so",
}
OPENVINO_HOSTS = ("x86_64", "AMD64")
DT_NULL, DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 1, 5, 15, 29


def _read_cstring(handle: Any, offset: int) -> str:
    handle.seek(offset)
    raw: bytes = handle.read(256)
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _segments(handle: Any, header: bytes) -> tuple[list[tuple[int, int, int]], tuple[int, int] | None]:
    """(PT_LOAD segments as (vaddr, offset, size), the PT_DYNAMIC segment as (offset, size))."""
    (phoff,) = struct.unpack_from("<Q", header, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
    handle.seek(phoff)
    table = handle.read(phentsize * phnum)
    loads, dynamic = [], None
    for index in range(phnum):
        kind, _, offset, vaddr, _, size = struct.unpack_from("<IIQQQQ", table, index * phentsize)
        if kind == PT_LOAD:
            loads.append((vaddr, offset, size))
        elif kind == PT_DYNAMIC:
            dynamic = (offset, size)
    return loads, dynamic


def elf_dependencies(path: Path) -> tuple[list[str], list[str]]:
    """(DT_NEEDED sonames, DT_RUNPATH or DT_RPATH folders) of a 64-bit little-endian ELF file (x86_64
    and aarch64 Linux), read from its dynamic segment; ([], []) for anything else. The loader stops
    at the first library it cannot find; this list names all of them at once."""
    with path.open("rb") as handle:
        header = handle.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4:6] != b"\x02\x01":
            return [], []
        loads, dynamic = _segments(handle, header)
        if dynamic is None:
            return [], []
        handle.seek(dynamic[0])
        entries: dict[int, list[int]] = {}
        for tag, value in struct.iter_unpack("<qQ", handle.read(dynamic[1] - dynamic[1] % 16)):
            if tag == DT_NULL:
                break
            entries.setdefault(tag, []).append(value)
        # DT_STRTAB is an address in memory: the PT_LOAD segment holding it maps it to the file.
        address = entries.get(DT_STRTAB, [-1])[0]
        strtab = next((offset + address - vaddr for vaddr, offset, size in loads if 0 <= address - vaddr < size), None)
        if strtab is None:
            return [], []
        needed = [_read_cstring(handle, strtab + value) for value in entries.get(DT_NEEDED, [])]
        paths = [_read_cstring(handle, strtab + v) for v in entries.get(DT_RUNPATH, entries.get(DT_RPATH, []))]
    origin = str(path.resolve().parent)
    return needed, [folder.replace("$ORIGIN", origin) for p in paths for folder in p.split(":") if folder]


@functools.cache
def load_error(name: str, folders: tuple[str, ...] = ()) -> str | None:
    """None when the dynamic loader opens `name` (in `folders` first, as a RUNPATH would), else
    its error's first line, e.g. 'libcublasLt.so.12: cannot open shared object file: ...'."""
    for folder in folders:
        if (Path(folder) / name).exists() and _dlopen(str(Path(folder) / name)) is None:
            return None
    return _dlopen(name)


def _dlopen(name: str, mode: int = ctypes.DEFAULT_MODE) -> str | None:
    try:
        ctypes.CDLL(name, mode=mode)
    except OSError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def capi_dir() -> Path:
    return Path(ort_module().__file__).parent / "capi"


def built_for() -> str:
    """What this onnxruntime build expects, from its own build info, e.g. 'onnxruntime-gpu 1.23.2,
    built for CUDA 12.2'."""
    ort = ort_module()
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        return f"onnxruntime {ort.__version__}"
    text = f"{getattr(info, 'package_name', 'onnxruntime')} {ort.__version__}"
    cuda, cudnn = getattr(info, "cuda_version", ""), getattr(info, "cudnn_version", "")
    return text + (f", built for CUDA {cuda}" if cuda else "") + (f" and cuDNN {cudnn}" if cudnn else "")


@dataclass
class ProviderLibrary:
    """Whether a GPU provider's shared library loads, and if not, which of its libraries do not."""

    provider: str
    path: str
    loads: bool
    error: str = ""
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "loads": self.loads, "missing": self.missing, "error": self.error}


@functools.cache
def provider_library(short: str, folder: Path | None = None) -> ProviderLibrary | None:
    """The probe of `libonnxruntime_providers_<short>.so`; None when this build has no such file
    (the CPU wheel, or a build that links the provider in)."""
    folder = folder or capi_dir()
    path = folder / f"libonnxruntime_providers_{short}.so"
    if not path.is_file():
        return None
    shared = folder / "libonnxruntime_providers_shared.so"
    if shared.is_file():
        _dlopen(str(shared), os.RTLD_GLOBAL)  # what onnxruntime does first: the providers link against it
    error = _dlopen(str(path))
    if error is None:
        return ProviderLibrary(short, str(path), True)
    needed, folders = elf_dependencies(path)
    missing = [name for name in needed if load_error(name, tuple(folders)) is not None]
    return ProviderLibrary(short, str(path), False, error, missing)


def driver_problem(device_id: int, driver: Any = None) -> str | None:
    """None when the NVIDIA driver loads and sees device `device_id`, else what is wrong. `driver`
    is libcuda (ctypes); a test passes a FAKE with the same three functions."""
    if driver is None:
        if load_error(DRIVER) is not None:
            return f"no NVIDIA driver ({DRIVER} not found; in a container: run it with the NVIDIA runtime)"
        driver = ctypes.CDLL(DRIVER)
    status = driver.cuInit(0)
    if status != 0:
        name = ctypes.c_char_p()
        driver.cuGetErrorName(status, ctypes.byref(name))
        label = name.value.decode() if name.value else f"error {status}"
        return f"the NVIDIA driver finds no usable GPU (cuInit: {label})"
    count = ctypes.c_int(0)
    driver.cuDeviceGetCount(ctypes.byref(count))
    if device_id >= count.value:
        return f"no CUDA device {device_id}: the driver sees {count.value} (FACEFLEET_DEVICE_ID)"
    return None


@functools.cache
def provider_problem(short: str, device_id: int, openvino_device: str = "CPU") -> str | None:
    """Why the `short` provider ('cuda', 'tensorrt' or 'openvino') cannot run here, or None when nothing
    is known against it (its library loads and the driver sees the device, or this build has no
    separate library to probe): then onnxruntime is asked and its own answer is checked."""
    if short == "openvino":
        return openvino_problem(openvino_device)
    library = provider_library(short)
    if library is None:
        return None
    if not library.loads:
        return _library_reason(library)
    return driver_problem(device_id)


def _library_reason(library: ProviderLibrary) -> str:
    driver_gone = DRIVER in library.missing or load_error(DRIVER) is not None
    libraries = [name for name in library.missing if name != DRIVER]
    cause = f"missing {', '.join(libraries)}" if libraries else library.error
    reason = f"{Path(library.path).name} does not load: {cause} ({built_for()})"
    if driver_gone and library.provider != "openvino":
        reason += f"; no NVIDIA driver ({DRIVER} not found)"
    return reason


def openvino_problem(device: str, machine: str | None = None, folder: Path | None = None) -> str | None:
    """Why the OpenVINO provider cannot serve `device` here: not an x86_64 host (a Jetson's answer is
    TensorRT and CUDA), its provider library not loading, or no OpenVINO plugin for the device in this
    build. None: onnxruntime is asked (a device the host lacks, an Intel GPU say, is its answer)."""
    machine = machine or platform.machine()
    if machine not in OPENVINO_HOSTS:
        return f"the OpenVINO provider serves x86_64 hosts; this one is {machine}"
    library = provider_library("openvino", folder)
    if library is None:
        return None
    if not library.loads:
        return _library_reason(library)
    where = Path(library.path).parent
    for family in sorted(set(re.findall(r"[A-Z]+", device.split(":", 1)[-1]))):
        plugin = OPENVINO_PLUGINS.get(family)
        if plugin and not (where / plugin).is_file():
            return f"this build has no OpenVINO {family} plugin ({plugin}) for FACEFLEET_OPENVINO_DEVICE={device}"
    return None


def report(device_id: int, openvino_device: str = "CPU") -> dict[str, Any]:
    """The probe of each GPU provider and of OpenVINO for `facefleet providers`."""
    providers: dict[str, Any] = {}
    for short in ("tensorrt", "cuda", "openvino"):
        library = provider_library(short)
        providers[short] = {
            "library": library.as_dict() if library else None,
            "problem": provider_problem(short, device_id, openvino_device),
        }
    return {"built_for": built_for(), "driver": load_error(DRIVER) is None, "providers": providers}
