"""The provider debugging report: what onnxruntime offers, whether the GPU providers' libraries,
the NVIDIA driver and the device (or OpenVINO's library and device plugin) are there
(service/engine/gpuprobe.py), and what the host is. Answers the operator's first question on a
Jetson that runs on CPU: which library is missing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from facefleet.engine import gpuprobe


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


def environment_report(device_id: int = 0, openvino_device: str = "CPU") -> dict[str, Any]:
    from facefleet.engine.ort import ort_module

    ort = ort_module()
    return {
        "onnxruntime": ort.__version__,
        "device": ort.get_device(),
        "available_providers": ort.get_available_providers(),
        "jetson": tegra_release(),
        "gpu": gpuprobe.report(device_id, openvino_device),
    }
