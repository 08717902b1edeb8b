"""FAKE nvv4l2decoder: Jetson's NVDEC decoder element, stood in by FFmpeg's software decoders (avdec_h264,
avdec_h265 through decodebin), for tests on a machine without a Jetson.

Faithful where facefleet depends on it: the same element name, the sink caps of the real one for H.264 and
H.265 (`byte-stream`, `alignment=au`: what parsebin must hand it) and NV12 out. The real element gives NV12 in
NVMM (device) memory, which only nvvidconv reads; this one gives it in system memory. Loaded by GStreamer's
Python plugin loader (gstreamer1.0-python3-plugin-loader) from `$GST_PLUGIN_PATH/python/`.
"""

from __future__ import annotations

from typing import Any

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GObject, Gst  # noqa: E402 - after require_version, as PyGObject requires

Gst.init(None)

SINK_CAPS = (
    "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au; "
    "video/x-h265, stream-format=(string)byte-stream, alignment=(string)au"
)
SRC_CAPS = "video/x-raw, format=(string)NV12"


class FakeNvV4l2Decoder(Gst.Bin):
    """FAKE: capsfilter (the real sink caps) ! decodebin ! videoconvert ! NV12."""

    __gstmetadata__ = (
        "FAKE NVIDIA v4l2 video decoder (software stand-in for tests)",
        "Codec/Decoder/Video",
        "FAKE: decodes H.264/H.265 with avdec_* into NV12 in system memory; no Jetson here",
        "facefleet tests",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, Gst.Caps.from_string(SINK_CAPS)),
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, Gst.Caps.from_string(SRC_CAPS)),
    )

    def __init__(self) -> None:
        super().__init__()
        accept = Gst.ElementFactory.make("capsfilter", None)
        accept.set_property("caps", Gst.Caps.from_string(SINK_CAPS))
        self.decode = Gst.ElementFactory.make("decodebin", None)
        self.convert = Gst.ElementFactory.make("videoconvert", None)
        out = Gst.ElementFactory.make("capsfilter", None)
        out.set_property("caps", Gst.Caps.from_string(SRC_CAPS))
        for element in (accept, self.decode, self.convert, out):
            self.add(element)
        accept.link(self.decode)
        self.convert.link(out)
        self.decode.connect("pad-added", self._decoded)
        self.add_pad(
            Gst.GhostPad.new_from_template("sink", accept.get_static_pad("sink"), self.get_pad_template("sink"))
        )
        self.add_pad(Gst.GhostPad.new_from_template("src", out.get_static_pad("src"), self.get_pad_template("src")))

    def _decoded(self, _decodebin: Any, pad: Any) -> None:
        sink = self.convert.get_static_pad("sink")
        if not sink.is_linked():
            pad.link(sink)


GObject.type_register(FakeNvV4l2Decoder)
__gstelementfactory__ = ("nvv4l2decoder", Gst.Rank.NONE, FakeNvV4l2Decoder)
