"""Which execution provider each node of a session really runs on, read from onnxruntime's profiler.

A session on TensorRT or CUDA can still hand the nodes its provider does not take to the CPU
without a word (onnxruntime says so at a log level nobody reads): the model "runs on TensorRT"
while, say, every quantised layer runs on the CPU. The warm-up run is profiled: every kernel event
of onnxruntime's profile (cat "Node", name "<node>_kernel_time") carries the provider of the
kernel that ran it in args.provider, so the count per provider is what really ran where. A
TensorRT subgraph is one fused node; the nodes left outside it are counted one by one.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Placement:
    """Kernels per provider in one profiled run, and the operator types that ran on the CPU."""

    nodes: dict[str, int]
    cpu_ops: list[str] = field(default_factory=list)

    @property
    def cpu_nodes(self) -> int:
        return self.nodes.get(CPU, 0)

    def partial(self, provider_name: str) -> bool:
        """True when a session meant for a GPU provider ran some of its nodes on the CPU."""
        return provider_name != CPU and self.cpu_nodes > 0

    def as_dict(self) -> dict[str, Any]:
        return {"nodes": dict(self.nodes), "cpu_nodes": self.cpu_nodes, "cpu_ops": list(self.cpu_ops)}


def read_profile(path: str | Path) -> Placement:
    """Count the kernel events of an onnxruntime profile (its JSON array of trace events)."""
    events = json.loads(Path(path).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    counts = Counter(str(e.get("args", {}).get("provider", "unknown")) for e in kernels)
    cpu_ops = sorted({str(e["args"].get("op_name", "?")) for e in kernels if e.get("args", {}).get("provider") == CPU})
    return Placement(dict(counts.most_common()), cpu_ops)


class Profiling:
    """Profiling of one session's first run: switched on in its options, read and deleted after."""

    def __init__(self, options: Any) -> None:
        try:
            self.folder = tempfile.mkdtemp(prefix="facefleet-profile-")
        except OSError:  # no writable temporary folder: the placement stays unknown, the model runs
            self.folder = ""
            return
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(self.folder) / "warmup")

    def finish(self, session: Any) -> Placement | None:
        """Stop the session's profiler (later runs are not profiled) and count its nodes; None for a
        session without onnxruntime's profiler (a test's fake) or an unreadable profile."""
        try:
            end = getattr(session, "end_profiling", None)
            if end is None or not self.folder:
                return None
            with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, RuntimeError):
                return read_profile(end())
            return None
        finally:
            if self.folder:
                shutil.rmtree(self.folder, ignore_errors=True)
