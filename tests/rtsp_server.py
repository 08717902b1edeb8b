"""An RTSP server for tests: GStreamer's (gst-rtsp-server) serving one H.264 MP4 at its native pace, looped.

Run by tests/media.py's `RtspServer` with Debian's /usr/bin/python3 (PyGObject and the GStreamer typelibs come
from Debian packages, not the venv): `python3 tests/rtsp_server.py VIDEO PORT MOUNT [--once]`. It prints
`ready` once listening. No re-encoding: the file's H.264 is demuxed, parsed and payloaded.

Looping: gst-rtsp-server seeks the media on every PLAY (FFmpeg sends `Range: npt=0-`), so a source that cannot
seek (multifilesrc ... loop=true with tsdemux) is refused with 503. Instead the payloader's EOS is dropped and a
flushing seek to 0 restarts the file: the stream's timestamps start again from 0 each time round, as a camera's
do when it restarts; readers must cope (facefleet's sampler starts its schedule over on a backwards pts).
The media is shared: every client sees the same picture, like a camera.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - after require_version, as PyGObject requires


def main(argv: list[str]) -> int:
    video, port, mount = argv[1], argv[2], argv[3]
    loop_file = "--once" not in argv
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    location = video.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
    )
    factory.set_shared(True)
    if loop_file:
        factory.connect("media-configure", _loop_media)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    main_loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, main_loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, main_loop.quit)
    print("ready", flush=True)
    main_loop.run()
    return 0


def _loop_media(_factory: Any, media: Any) -> None:
    """Drops the EOS at the payloader and seeks the pipeline back to 0 from the main loop."""
    element = media.get_element()
    pad = element.get_by_name("pay0").get_static_pad("sink")

    def restart() -> bool:
        pipeline = element.get_parent()
        if pipeline is not None:
            pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        return False

    def on_event(_pad: Any, info: Any) -> Any:
        event = info.get_event()
        if event is not None and event.type == Gst.EventType.EOS:
            GLib.idle_add(restart)
            return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
