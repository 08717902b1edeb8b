"""Which video decoder a stream runs on, said as plainly as the ONNX providers are.

A Jetson has a hardware decoder (NVDEC) that GStreamer reaches through its `nvv4l2decoder` element; PyAV's
wheels cannot use it. It is probed here (the element registered, the NVDEC device node present) like the ONNX
providers are, and the choice is the operator's (`FACEFLEET_STREAM_DECODER`): `auto` decodes RTSP and file
cameras through it when the probe finds it (streams/gstreamer.py), `ffmpeg` never does. Everything else, and
every connection whose GStreamer pipeline gives no first frame, is decoded in software by FFmpeg through PyAV
(the codec FFmpeg picked, e.g. `h264`). The status says which one runs and, when it is FFmpeg on a machine with
the hardware, why: an operator never has to assume.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av

from facefleet.settings.env import STREAM_DECODERS
from facefleet.streams import gstreamer

HARDWARE_ELEMENT = "nvv4l2decoder"
# The NVDEC device nodes L4T creates (JetPack 5 and 6 on Xavier and Orin); any one of them is enough.
NVDEC_NODES = ("nvhost-nvdec", "nvhost-nvdec1", "v4l2-nvdec")
INSPECT_TIMEOUT_S = 10.0
CHOICES = STREAM_DECODERS  # FACEFLEET_STREAM_DECODER: the hardware when present, or never


@dataclass(frozen=True)
class HardwareProbe:
    """Whether GStreamer's NVDEC element could decode here, and why (not)."""

    element: str
    present: bool
    reason: str  # one line: what was found or what is missing
    gstreamer: str = ""  # GStreamer's version (e.g. "1.20.3"), when gst-inspect-1.0 ran


@dataclass(frozen=True)
class DecoderReport:
    """The decoder a stream really uses, and the hardware one beside it."""

    used: str  # e.g. "h264 (FFmpeg 8.1.1 software via PyAV 17.1.0, 1 thread)"
    hardware: HardwareProbe | None  # None: not probed (the setting says ffmpeg)
    note: str | None = None  # why the hardware, though present, does not decode this connection
    on_hardware: bool = False  # `used` is the hardware decoder

    @property
    def summary(self) -> str:
        """One line for the status: what decodes, and the hardware decoder's standing."""
        if self.hardware is None:
            return f"{self.used}; {HARDWARE_ELEMENT} not used: FACEFLEET_STREAM_DECODER=ffmpeg"
        if self.note is not None:
            return f"{self.used}; {self.hardware.element} {self.note}"
        if self.hardware.present:
            return self.used if self.on_hardware else f"{self.used}; {self.hardware.element} present, not used"
        return f"{self.used}; {self.hardware.element} absent: {self.hardware.reason}"


def software_decoder(codec: str, threads: int) -> str:
    """The software decoder's name as the status shows it (threads 0: FFmpeg picks)."""
    count = "FFmpeg's thread count" if threads <= 0 else f"{threads} thread{'s' if threads != 1 else ''}"
    return f"{codec} (FFmpeg {av.ffmpeg_version_info} software via PyAV {av.__version__}, {count})"


def hardware_decoder(codec: str, probe: HardwareProbe) -> str:
    """The hardware decoder's name as the status shows it."""
    return f"{probe.element} (GStreamer {probe.gstreamer or 'of unknown version'}, hardware) for {codec}"


def probe_hardware(
    gst_inspect: str | None = None, dev: Path = Path("/dev"), python: str = gstreamer.SYSTEM_PYTHON
) -> HardwareProbe:
    """Is `nvv4l2decoder` registered with GStreamer, is an NVDEC device node there, and can the system's Python
    run a pipeline? All three are needed. `gst_inspect` is the gst-inspect-1.0 program (default: the one on
    PATH), `python` the pipeline's interpreter (streams/gstreamer.py)."""
    program = gst_inspect if gst_inspect is not None else shutil.which("gst-inspect-1.0")
    nodes = [name for name in NVDEC_NODES if (dev / name).exists()]
    if program is None:
        return HardwareProbe(HARDWARE_ELEMENT, False, "gst-inspect-1.0 is not installed (no GStreamer tools)")
    try:
        done = subprocess.run(
            [program, HARDWARE_ELEMENT], capture_output=True, text=True, timeout=INSPECT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return HardwareProbe(HARDWARE_ELEMENT, False, f"gst-inspect-1.0 could not run: {exc}")
    if done.returncode != 0:
        where = "" if nodes else f"; no NVDEC device ({', '.join(f'{dev}/{n}' for n in NVDEC_NODES)})"
        return HardwareProbe(HARDWARE_ELEMENT, False, f"GStreamer has no {HARDWARE_ELEMENT} element{where}")
    if not nodes:
        return HardwareProbe(
            HARDWARE_ELEMENT, False, f"{HARDWARE_ELEMENT} is registered but no NVDEC device node is in {dev}"
        )
    missing = _runner_missing(python)
    if missing:
        return HardwareProbe(HARDWARE_ELEMENT, False, f"{HARDWARE_ELEMENT} registered, but {missing}")
    found = f"{HARDWARE_ELEMENT} registered, {dev}/{nodes[0]} present"
    return HardwareProbe(HARDWARE_ELEMENT, True, found, _gstreamer_version(program))


def _runner_missing(python: str) -> str | None:
    """Why the system's Python cannot run the pipeline (streams/gstlaunch.py needs PyGObject and GStreamer's
    typelib), or None when it can."""
    check = "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst"
    try:
        done = subprocess.run([python, "-c", check], capture_output=True, timeout=INSPECT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} cannot run the pipeline ({exc})"
    if done.returncode != 0:
        return f"{python} has no PyGObject for GStreamer (apt-get install python3-gi gir1.2-gstreamer-1.0)"
    return None


def _gstreamer_version(program: str) -> str:
    """`gst-inspect-1.0 --version` says `GStreamer 1.22.0` on its second line; "" when it cannot tell."""
    try:
        done = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=INSPECT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    words = next((line.split() for line in done.stdout.splitlines() if line.startswith("GStreamer ")), [])
    return words[1] if len(words) > 1 else ""


@functools.cache
def hardware() -> HardwareProbe:
    """This machine's probe, once per process (gst-inspect-1.0 loads every plugin: a second or more)."""
    return probe_hardware()


def report(codec: str, threads: int, probe: HardwareProbe | None, note: str | None = None) -> DecoderReport:
    """PyAV's software decoder decodes a stream of `codec`; `probe` is the hardware's (None: not probed, the
    setting says ffmpeg) and `note` why it does not decode this connection although present."""
    return DecoderReport(software_decoder(codec, threads), probe, note)


def hardware_report(codec: str, probe: HardwareProbe) -> DecoderReport:
    """GStreamer's nvv4l2decoder decodes a stream of `codec`."""
    return DecoderReport(hardware_decoder(codec, probe), probe, on_hardware=True)
