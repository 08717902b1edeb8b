"""onnxruntime's own output while a session is made, moved from the terminal into our log.

Where a GPU provider fails, onnxruntime's C++ default logger writes coloured E/W lines straight
to file descriptor 2 (SessionOptions.log_severity_level does not govern it), and its Python
wrapper prints an "EP Error" block to stdout before retrying on the CPU; a session that fails to
load its file says "Could not write a profile" when it is dropped. No Python logging hook sees
any of it. So, while a session is created, warmed up and its profile read, descriptors 1 and 2
point at temporary files and Python's warnings are recorded. Afterwards onnxruntime's lines go
to this log at debug level (and to the caller, to name the cause of a silent fallback); any
other line or warning of that window (say, another thread's log) goes back where it was going,
late but whole. A lock serialises the windows: sessions are made at start-up, and again only on
a failover reopen (where the window lasts one CUDA or CPU session creation).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

log = logging.getLogger(__name__)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The default logger's lines ("2026-... [E:onnxruntime:Default, provider_bridge_ort.cc:...] ...")
# and the Python wrapper's fallback block (its warnings are caught as warnings).
ORT_LINE = re.compile(r"\[[VIWEF]:onnxruntime:|^\*+( EP Error \*+)?$|^EP Error |^ when using \[|^Falling back to \[")
ERROR_LINE = re.compile(r"\[E:onnxruntime:[^\]]*\]\s*(.*)")
STATUS_PREFIX = re.compile(r"^.*?\[ONNXRuntimeError\] : \d+ : \w+ : ")  # after the C++ source location
WRAPPER_LINE = re.compile(r"^EP Error (.*)|UserWarning: (.*)")
SOURCE_PREFIX = re.compile(r"^/\S+:\d+ [^(]*\([^)]*\)\s*")  # "/onnxruntime_src/...cc:560 void f(args) "
_window = threading.Lock()


def first_error(lines: list[str]) -> str:
    """What onnxruntime said went wrong: its first E line without timestamp and source location,
    else its Python wrapper's "EP Error" or warning text; "" when it said nothing."""
    for line in lines:
        match = ERROR_LINE.search(line)
        if match:
            return STATUS_PREFIX.sub("", match.group(1)).strip()
    for line in lines:
        match = WRAPPER_LINE.search(line)
        if match:
            return SOURCE_PREFIX.sub("", match.group(1) or match.group(2)).strip()
    return ""


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def _sort_out(fd: int, text: str, caught: list[str]) -> None:
    """onnxruntime's lines to the log and to `caught`; every other line back to `fd`."""
    others = []
    for line in text.splitlines(keepends=True):
        clean = ANSI.sub("", line).rstrip()
        if not clean:
            continue
        if ORT_LINE.search(clean):
            caught.append(clean)
            log.debug("onnxruntime: %s", clean)
        else:
            others.append(line)
    if others:
        os.write(fd, "".join(others).encode())


@contextmanager
def onnxruntime_output_to_log() -> Iterator[list[str]]:
    """Inside, descriptors 1 and 2 go to temporary files; the list yielded is filled, on leaving,
    with the onnxruntime lines written meanwhile (colour codes stripped)."""
    caught: list[str] = []
    with _window, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        files: dict[int, IO[bytes]] = {1: out, 2: err}
        _flush()
        saved = {fd: os.dup(fd) for fd in files}
        try:
            for fd, file in files.items():
                os.dup2(file.fileno(), fd)
            with warnings.catch_warnings(record=True) as recorded:
                warnings.simplefilter("always")
                yield caught
        finally:
            _flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            for fd, file in files.items():
                file.seek(0)
                _sort_out(fd, file.read().decode(errors="replace"), caught)
            _sort_warnings(recorded, caught)


def _sort_warnings(recorded: list[warnings.WarningMessage], caught: list[str]) -> None:
    """onnxruntime's Python warnings (e.g. 'Specified provider ... is not in available provider
    names') to the log and to `caught`; anyone else's warned again as they were."""
    for warning in recorded:
        if "onnxruntime" in warning.filename:
            caught.append(f"{warning.category.__name__}: {warning.message}")
            log.debug("onnxruntime: %s: %s", warning.category.__name__, warning.message)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
