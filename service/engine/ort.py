"""The onnxruntime module, imported late and once.

Its own module so that runtime.py (which opens sessions) and gpuprobe.py (which asks the same
build why a GPU provider cannot load) both import it without importing each other.
"""

from __future__ import annotations

import functools
from typing import Any

from facefleet.errors import ProviderError


@functools.cache
def ort_module() -> Any:
    """onnxruntime, imported late so the CLI can explain a missing install in one line.

    Its default logger (provider loading, TensorRT's builder) writes warnings straight to stderr,
    whatever a session's log level says: errors only from it; the chain's attempts tell the story."""
    try:
        import onnxruntime
    except ImportError:
        raise ProviderError(
            "onnxruntime is not installed: `pip install facefleet[cpu]` here, or the onnxruntime-gpu "
            "wheel from the Jetson AI Lab index on a Jetson"
        ) from None
    onnxruntime.set_default_logger_severity(3)
    return onnxruntime
