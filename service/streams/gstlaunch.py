"""gst-launch-1.0 for one camera pipeline, with the pipeline read from stdin instead of the command line.

streams/gstreamer.py runs this file with the system's Python (`/usr/bin/python3`, which has PyGObject from
python3-gi; facefleet's venv has none) and writes the pipeline's tokens, the camera's address among them, as one
JSON line to its stdin. gst-launch-1.0 would take them as arguments, and every local user can read a process's
arguments (/proc/<pid>/cmdline): a camera's password would be there for as long as the camera runs.

It does what `gst-launch-1.0 -q` does for such a pipeline: `Gst.parse_launchv` on the tokens (the same parser),
PLAYING, then waits for the end of the stream (exit 0) or the first error, which it writes to stderr in
gst-launch's words (`ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: <message>`, exit 1). An
unparsable pipeline is gst-launch's `WARNING: erroneous pipeline: <message>` (exit 1). Nothing of facefleet is
imported here: this runs outside its venv.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

NAME = "facefleet-gst"  # what ps and top show for it (the kernel's comm, at most 15 bytes), zombies too
PARSE_FAILED = 1
PIPELINE_FAILED = 1
NO_GI = 3


def main() -> int:
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(NAME)
    try:
        import gi  # type: ignore[import-not-found,unused-ignore]

        gi.require_version("Gst", "1.0")
        from gi.repository import GLib, Gst  # type: ignore[import-not-found,unused-ignore]
    except (ImportError, ValueError) as exc:
        print(f"ERROR: PyGObject with GStreamer's typelib is missing ({exc}): python3-gi, gir1.2-gstreamer-1.0",
              file=sys.stderr)  # fmt: skip
        return NO_GI
    tokens = json.loads(sys.stdin.readline())
    Gst.init(None)
    try:
        pipeline = Gst.parse_launchv(tokens)
    except GLib.Error as exc:
        print(f"WARNING: erroneous pipeline: {exc.message}", file=sys.stderr)
        return PARSE_FAILED
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)  # a failure to start is an ERROR message on the bus
    kinds = Gst.MessageType.EOS | Gst.MessageType.ERROR
    message = bus.timed_pop_filtered(Gst.CLOCK_TIME_NONE, kinds)
    code = 0
    if message is not None and message.type == Gst.MessageType.ERROR:
        error, _debug = message.parse_error()
        print(f"ERROR: from element {message.src.get_path_string()}: {error.message}", file=sys.stderr)
        code = PIPELINE_FAILED
    pipeline.set_state(Gst.State.NULL)
    return code


if __name__ == "__main__":
    sys.exit(main())
