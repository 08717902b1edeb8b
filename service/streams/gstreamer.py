"""Jetson's hardware decoder for one camera connection: a GStreamer child process writing YUV4MPEG2 to a pipe.

The service's venv has no PyGObject, and PyAV's FFmpeg cannot reach NVDEC; GStreamer's `nvv4l2decoder` can. So
a child (streams/gstlaunch.py: what gst-launch-1.0 does, run by the system's Python, reading the pipeline from
its stdin so that the camera's address and password are never on a command line, where every local user could read
them) decodes (`nvv4l2decoder ! nvvidconv`), drops frames down to the camera's rate before any
conversion (`videorate drop-only=true max-rate=N`), converts the kept ones to packed I420 and writes them as
YUV4MPEG2 to its stdout (`y4menc ! fdsink fd=1`); PyAV reads that pipe with its `yuv4mpegpipe` demuxer, whose
header carries the width, height and rate. The source's sampling, buffer and status code is the same for both.

Why each piece:
- The codec is known before the pipeline is rendered (an FFmpeg open of the camera said it): the real
  nvv4l2decoder takes only `byte-stream`/`au` H.264 and H.265, which an explicit depayloader or parser then a
  caps filter guarantee; `parsebin` alone would hand it MP4's `avc` form and fail to link.
- `videoconvert` really converts (NV12 to I420): y4menc (1.22, and JetPack 6's 1.20.3 alike) writes a buffer as
  it is, and a decoder's passthrough buffers are padded. Converted buffers have GStreamer's default strides,
  rounded up to 4 bytes: they are packed only when the width is a multiple of 8 and the height even (`refusal`
  says so before anything runs, and the source keeps FFmpeg for other sizes).
- A blocked pipe read never times out, so a watchdog kills the child when no frame came for the read timeout
  (and the source kills it on stop()): PyAV then reads EOF, which the source treats as any other loss.
- The child runs in its own process group; `close` terminates, then kills, then waits: no zombie, no orphan.
  Its stderr is kept (bounded) for the one-line reason a pipeline failed (its first `ERROR`).

The pipeline is a list of gst-launch tokens (no shell, no quoting: `Gst.parse_launchv` takes them as they are);
the address is one of them, sent on the child's stdin, and only its masked form is ever logged.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from facefleet.streams.location import Location, SourceKind, mask

# The pipeline's runner and its interpreter: the system's Python, where python3-gi lives (not the venv's).
SYSTEM_PYTHON = "/usr/bin/python3"
RUNNER = Path(__file__).with_name("gstlaunch.py")
# FFmpeg's codec name -> (RTSP depayloader, parser, the caps nvv4l2decoder takes): the two codecs cameras send
# that the pipeline is rendered for.
CODECS = {
    "h264": ("rtph264depay", "h264parse", "video/x-h264,stream-format=byte-stream,alignment=au"),
    "hevc": ("rtph265depay", "h265parse", "video/x-h265,stream-format=byte-stream,alignment=au"),
}
RTSP_LATENCY_MS = 200  # rtspsrc's jitter buffer: enough for a LAN camera over TCP, small for a live picture
STDERR_LINES = 40  # the child's last stderr lines kept (each cut to LINE_CHARS)
LINE_CHARS = 400
TERMINATE_WAIT_S = 2.0  # SIGTERM, then this long before SIGKILL
ERROR_LINE = re.compile(r"^(ERROR|WARNING: erroneous pipeline)")
ELEMENT_PATH = re.compile(r"from element /\S*?([^/:]+:)?([^/:]+): ")


@dataclass(frozen=True)
class Render:
    """What the child runs: its argv (no address in it), the pipeline's tokens it reads from stdin, and the
    pipeline with the address masked (for logs and errors)."""

    argv: list[str]
    tokens: list[str]
    shown: str


def refusal(location: Location, codec: str, width: int, height: int) -> str | None:
    """Why the hardware pipeline is not tried for this connection (None: it is). RTSP and file cameras only
    (MJPEG over HTTP and V4L2 stay with FFmpeg); H.264 and H.265; a size y4menc writes packed."""
    if location.kind not in (SourceKind.RTSP, SourceKind.FILE):
        return f"not tried for {location.kind.value} cameras (RTSP and files only)"
    if codec not in CODECS:
        return f"not tried for {codec} (the pipeline takes H.264 and H.265)"
    if width % 8 or height % 2:
        return f"not tried for {width}x{height}: y4menc would write padded rows (width a multiple of 8, even height)"
    return None


def render(
    location: Location,
    codec: str,
    *,
    fps: float,
    transport: str = "tcp",
    realtime: bool = True,
    open_timeout_s: float = 10.0,
    python: str = SYSTEM_PYTHON,
) -> Render:
    """The pipeline (gst-launch-1.0's tokens) decoding `location` (of `codec`, one of CODECS) with nvv4l2decoder
    into YUV4MPEG2 on stdout. Every element and property is older than GStreamer 1.20 (JetPack 6's); tests
    check them against Debian's 1.22 and Ubuntu 22.04's 1.20.3. `fps` 0 keeps every frame; a fractional rate is
    rounded up here, sampled exactly by the source."""
    depay, parse, caps = CODECS[codec]
    if location.kind is SourceKind.RTSP:
        timeout_us = str(int(open_timeout_s * 1_000_000))
        head = [
            "rtspsrc",
            f"location={location.target}",
            f"protocols={transport}",
            f"latency={RTSP_LATENCY_MS}",
            f"tcp-timeout={timeout_us}",
            "!",
            "application/x-rtp,media=video",
            "!",
            depay,
        ]
        sync = "false"
    else:
        head = ["filesrc", f"location={location.target}", "!", "parsebin"]
        sync = "true" if realtime else "false"
    rate = ["videorate", "drop-only=true", f"max-rate={_ceil(fps)}", "!"] if fps > 0 else []
    tail = [
        "!",
        parse,
        "!",
        caps,
        "!",
        "nvv4l2decoder",
        "!",
        "nvvidconv",
        "!",
        "video/x-raw,format=NV12",
        "!",
        *rate,
        "videoconvert",
        "!",
        "video/x-raw,format=I420",
        "!",
        "y4menc",
        "!",
        "fdsink",
        "fd=1",
        f"sync={sync}",
    ]
    tokens = [*head, *tail]
    shown = f"location={location.shown}"
    return Render(
        [python, str(RUNNER)], tokens, " ".join(shown if arg.startswith("location=") else arg for arg in tokens)
    )


def available(python: str = SYSTEM_PYTHON) -> str | None:
    """The Python that runs the pipeline, or None when it is not installed."""
    found = python if os.sep in python else shutil.which(python)
    return found if found is not None and os.access(found, os.X_OK) else None


class Pipe:
    """One running pipeline (streams/gstlaunch.py): its stdout for PyAV (`target`), a watchdog, its stderr kept
    for the reason.

    The reader calls `reading()` before each blocking read and `fed()` after it: a read that waits longer than
    `read_timeout_s` (`first_s` for the first frame, which includes connecting) makes the watchdog kill the
    child. `close()` ends it for good; it may be called from another thread (stop()) and more than once."""

    def __init__(self, render: Render, *, first_s: float, read_timeout_s: float, env: dict[str, str] | None = None):
        self.render = render
        self.read_timeout_s = read_timeout_s
        self.frames = 0  # reads that returned data
        self.timed_out = False  # the watchdog killed it
        self._lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._error: str | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._deadline: float | None = time.monotonic() + first_s
        self.proc = subprocess.Popen(
            render.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: the whole pipeline ends with it
            env=env,
        )
        self._send(render.tokens)
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stderr,), name="gst stderr", daemon=True),
            threading.Thread(target=self._watch, name="gst watchdog", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _send(self, tokens: list[str]) -> None:
        """The pipeline, address included, on the child's stdin (never its command line); then EOF."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError), self.proc.stdin as stdin:  # it died at once: failure() says why
            stdin.write((json.dumps(tokens) + "\n").encode())

    @property
    def target(self) -> str:
        """What av.open reads: the child's stdout by its descriptor (FFmpeg's pipe protocol)."""
        assert self.proc.stdout is not None
        return f"pipe:{self.proc.stdout.fileno()}"

    def reading(self) -> None:
        """A blocking read starts: it may last read_timeout_s (or what is left of the first frame's time)."""
        with self._lock:
            if self._deadline is None:
                self._deadline = time.monotonic() + self.read_timeout_s

    def fed(self) -> None:
        """A read returned data: the watchdog rests until the next read (the consumer may hold the reader)."""
        with self._lock:
            self.frames += 1
            self._deadline = None

    def failure(self) -> str:
        """Why the pipeline gave no (more) frames, in one masked line: gst's first ERROR, else how it ended."""
        self._wait_exit(TERMINATE_WAIT_S)
        with self._lock:
            error, last = self._error, (self._lines[-1] if self._lines else None)
        if self.timed_out:
            return f"no frame within {self.read_timeout_s:g} s"
        if error is not None:
            return error
        code = self.proc.returncode
        ending = "still running" if code is None else f"exit status {code}"
        return f"the GStreamer pipeline's {ending}" + (f": {mask(last)}" if last else "")

    def ended_cleanly(self) -> bool:
        """After its output ended: did the pipeline exit 0 (a file's EOS), not on an error or a signal?"""
        return self._wait_exit(TERMINATE_WAIT_S) and self.proc.returncode == 0

    def close(self) -> None:
        """Ends the child: SIGTERM to its group, SIGKILL if it lingers, then waits for it (no zombie)."""
        self._closed.set()
        _signal_group(self.proc, signal.SIGTERM)
        if not self._wait_exit(TERMINATE_WAIT_S):
            _signal_group(self.proc, signal.SIGKILL)
            self._wait_exit(None)

    def release(self) -> None:
        """After close() and after PyAV closed its container: the pipe's descriptor, the helper threads."""
        self.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        for thread in self._threads:
            thread.join(TERMINATE_WAIT_S)

    def _watch(self) -> None:
        while not self._closed.wait(0.1):
            with self._lock:
                late = self._deadline is not None and time.monotonic() > self._deadline
            if late and self.proc.poll() is None:
                self.timed_out = True
                _signal_group(self.proc, signal.SIGKILL)  # the read sees EOF: the source's usual loss
                return

    def _drain(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with stream:
            for raw in stream:
                line = " ".join(raw.decode("utf-8", "replace").split())[:LINE_CHARS]
                if not line:
                    continue
                with self._lock:
                    self._lines.append(line)
                    if self._error is None and ERROR_LINE.match(line):
                        self._error = _error_line(line)

    def _wait_exit(self, timeout: float | None) -> bool:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


def _error_line(line: str) -> str:
    """gst-launch's `ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not open resource`
    as `rtspsrc0: Could not open resource`, masked."""
    text = re.sub(r"^ERROR:\s*", "", line)
    text = ELEMENT_PATH.sub(lambda m: f"{m.group(2)}: ", text)
    return mask(text)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        os.killpg(proc.pid, sig)


def _ceil(fps: float) -> int:
    whole = int(fps)
    return whole if whole == fps else whole + 1
