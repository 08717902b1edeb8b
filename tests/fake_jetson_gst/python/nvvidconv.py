"""FAKE nvvidconv: Jetson's converter from NVMM (device) memory to system memory, stood in by videoconvert and
videoscale for tests on a machine without a Jetson (see nvv4l2decoder.py beside it).

The real element copies the decoder's NVMM frames into system memory in the format its caps ask (NV12, I420,
BGRx, ...), scaling if asked; this one converts and scales frames already in system memory.
"""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GObject, Gst  # noqa: E402 - after require_version, as PyGObject requires

Gst.init(None)


class FakeNvVidConv(Gst.Bin):
    """FAKE: videoconvert ! videoscale."""

    __gstmetadata__ = (
        "FAKE NvVidConv (software stand-in for tests)",
        "Filter/Converter/Video/Scaler",
        "FAKE: videoconvert ! videoscale in system memory; no Jetson here",
        "facefleet tests",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, Gst.Caps.from_string("video/x-raw")),
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, Gst.Caps.from_string("video/x-raw")),
    )

    def __init__(self) -> None:
        super().__init__()
        convert = Gst.ElementFactory.make("videoconvert", None)
        scale = Gst.ElementFactory.make("videoscale", None)
        self.add(convert)
        self.add(scale)
        convert.link(scale)
        self.add_pad(
            Gst.GhostPad.new_from_template("sink", convert.get_static_pad("sink"), self.get_pad_template("sink"))
        )
        self.add_pad(Gst.GhostPad.new_from_template("src", scale.get_static_pad("src"), self.get_pad_template("src")))


GObject.type_register(FakeNvVidConv)
__gstelementfactory__ = ("nvvidconv", Gst.Rank.NONE, FakeNvVidConv)
