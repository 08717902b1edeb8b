"""The provider debugging report: what onnxruntime offers, whether the GPU libraries it needs
load, and what the host is. Answers the operator's first question on a Jetson that runs on CPU:
which library is missing."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import Any

# sonames by JetPack: 6.x ships CUDA 12, cuDNN 8.9 (6.0) or 9.x (6.1+), TensorRT 8.6 (6.0) or 10.x.
GPU_LIBRARIES = {
    "CUDA runtime": ("libcudart.so.12", "libcudart.so.11.0", "libcudart.so"),
    "cuBLAS": ("libcublas.so.12", "libcublas.so.11", "libcublas.so"),
    "cuDNN": ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"),
    "TensorRT": ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"),
}


def find_library(candidates: tuple[str, ...]) -> str | None:
    """The first soname the dynamic loader can really open (what onnxruntime will do)."""
    for name in candidates:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


def tegra_release(root: Path = Path("/")) -> dict[str, str] | None:
    """L4T release from /etc/nv_tegra_release, e.g. '# R36 (release), REVISION: 4.3, ...'."""
    try:
        text = (root / "etc/nv_tegra_release").read_text()
    except OSError:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return {"raw": text.strip()}
    l4t = f"{match.group(1)}.{match.group(2)}"
    model_file = root / "proc/device-tree/model"
    board = model_file.read_bytes().rstrip(b"\x00\n").decode(errors="replace") if model_file.exists() else ""
    return {"l4t": l4t, "board": board}


def environment_report() -> dict[str, Any]:
    from .runtime import ort_module

    ort = ort_module()
    return {
        "onnxruntime": ort.__version__,
        "device": ort.get_device(),
        "available_providers": ort.get_available_providers(),
        "jetson": tegra_release(),
        "gpu_libraries": {label: find_library(names) for label, names in GPU_LIBRARIES.items()},
    }
