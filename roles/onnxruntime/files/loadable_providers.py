"""Which onnxruntime execution providers really load on this host, and why the others do not.

`onnxruntime.get_available_providers()` lists the providers compiled into the wheel: onnxruntime-gpu offers
TensorRT and CUDA even where libcublas, cuDNN or libnvinfer are missing, and then falls back to the CPU
while creating a session, saying why only in its log. So this script builds a one-node model (y = x + x)
and opens a session per offered provider, asking for that provider alone: it loads when the session's first
provider is the one asked for and the model runs. Otherwise the reason is onnxruntime's own text (the
missing library, the driver, the device), caught from its log and printed output, one line.

Run with the environment's Python by the onnxruntime role, before facefleet (and the `onnx` package) are
installed: hence no import but onnxruntime and numpy, and the model is serialized by hand (ONNX protobuf
field numbers), byte for byte what `onnx.helper` makes (tests/test_loadable_providers.py checks it).
Prints one JSON object: version, offered, loadable, failed {provider: reason}.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator

FLOAT = 1  # TensorProto.FLOAT
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _tensor_value_info(name: str) -> bytes:
    """ValueInfoProto{name, type: TypeProto{tensor_type: {elem_type: FLOAT, shape: [1]}}}."""
    shape = _bytes(1, _int(1, 1))
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, FLOAT) + _bytes(2, shape)))


def tiny_model() -> bytes:
    """ModelProto (IR 7, opset 13) of one Add node: y = x + x, x float[1]."""
    node = _bytes(1, "x") + _bytes(1, "x") + _bytes(2, "y") + _bytes(4, "Add")
    graph = _bytes(1, node) + _bytes(2, "g") + _bytes(11, _tensor_value_info("x")) + _bytes(12, _tensor_value_info("y"))
    opset = _bytes(1, "") + _int(2, 13)
    return _int(1, 7) + _bytes(7, graph) + _bytes(8, opset)


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Everything written to file descriptors 1 and 2 meanwhile (onnxruntime's C++ log and Python prints),
    kept off the terminal and handed back as text once the block ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    text: list[str] = []
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text.append(ANSI.sub("", sink.read().decode(errors="replace")))


def reason_from_log(log: str, fallback: str) -> str:
    """onnxruntime's own cause, one line: the library that failed to load and why, else its first error."""
    loaded = re.search(r"Failed to load library (\S+) with error: ([^\n]+)", log)
    if loaded:
        return f"{loaded[2].strip()} (loading {loaded[1]})"
    for line in log.splitlines():
        if "[E:onnxruntime" in line or line.startswith("EP Error"):
            message = line.split("] ", 1)[-1] if "[E:onnxruntime" in line else line.removeprefix("EP Error ")
            return re.sub(r"^/\S+:\d+ ", "", message).strip()
    return fallback


def probe(ort, model: bytes, provider: str) -> str | None:
    """None when the provider loads and runs the model alone; else why not."""
    import numpy as np

    with captured_output() as output:
        try:
            session = ort.InferenceSession(model, providers=[provider])
            got = session.get_providers()[0]
            result = session.run(None, {"x": np.ones(1, np.float32)})[0] if got == provider else None
            error = None
        except Exception as exc:  # onnxruntime raises its own Fail/RuntimeError types
            got, result, error = None, None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    log = output[0] if output else ""
    if error:
        return reason_from_log(log, error)
    if got != provider:
        return reason_from_log(log, f"onnxruntime fell back to {got} without saying why")
    if result is None or float(result[0]) != 2.0:
        return f"ran the test model wrongly: {result!r}"
    return None


def main() -> int:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # errors only: no banner, no warnings; the errors are caught above
    model = tiny_model()
    offered = ort.get_available_providers()
    failed = {provider: why for provider in offered if (why := probe(ort, model, provider))}
    report = {
        "version": ort.__version__,
        "offered": offered,
        "loadable": [p for p in offered if p not in failed],
        "failed": failed,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
