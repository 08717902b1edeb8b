"""The Jetson's hardware decoder path (streams/gstreamer.py through FrameSource) on real GStreamer, with FAKE Jetson
parts: no Jetson here, so `nvv4l2decoder` and `nvvidconv` are FAKE elements (tests/fake_jetson_gst/python/, loaded
by GStreamer's Python plugin loader: avdec_* and videoconvert inside) and the NVDEC device node is an empty file
in a FAKE /dev. Everything else is real: the pipeline's runner (streams/gstlaunch.py under Debian's python3),
rtspsrc against GStreamer's RTSP server, parsebin,
videorate, y4menc, the pipe, PyAV reading it, the fallback to FFmpeg, the watchdog.

GST_REGISTRY points at a temporary file in every test that runs GStreamer, so the user's registry cache is never
written with the FAKE elements."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from facefleet.streams import decoders, gstlaunch, gstreamer
from facefleet.streams.location import locate
from facefleet.streams.source import Frame, FrameSource, SourceOptions, SourceState
from tests import test_streams_source as source_tests
from tests.media import RtspServer, Video, make_video
from tests.test_streams_source import PHOTOS, assert_shows, fast, wait_for

video = source_tests.video  # the fixtures: the photos' video, and GStreamer's RTSP server serving it
rtsp = source_tests.rtsp
FAKES = Path(__file__).with_name("fake_jetson_gst")
FAKE_PACKAGES = "gstreamer1.0-python3-plugin-loader python3-gst-1.0 gstreamer1.0-libav"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for this module's GStreamer registry files (one per plugin path: the fakes' or none)."""
    return tmp_path_factory.mktemp("gst-registry")


@pytest.fixture
def no_fakes(monkeypatch: pytest.MonkeyPatch, registries: Path) -> None:
    """GStreamer as installed, with a registry of its own."""
    monkeypatch.delenv("GST_PLUGIN_PATH", raising=False)
    monkeypatch.setenv("GST_REGISTRY", str(registries / "plain.bin"))


@pytest.fixture
def fake_jetson(monkeypatch: pytest.MonkeyPatch, registries: Path, tmp_path: Path) -> decoders.HardwareProbe:
    """FAKE Jetson: the FAKE elements on GST_PLUGIN_PATH and a FAKE /dev with an NVDEC node; the real probe of
    decoders.py run against them."""
    monkeypatch.setenv("GST_PLUGIN_PATH", str(FAKES))
    monkeypatch.setenv("GST_REGISTRY", str(registries / "fake-jetson.bin"))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # the plugin loader imports the fakes: no __pycache__
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvhost-nvdec").touch()
    probe = decoders.probe_hardware(dev=dev)
    if not probe.present:
        pytest.skip(f"the FAKE nvv4l2decoder does not load ({probe.reason}): apt-get install {FAKE_PACKAGES}")
    for element in ("nvv4l2decoder", "nvvidconv"):  # what GStreamer registered is the FAKE, and says so
        inspect = subprocess.run(["gst-inspect-1.0", element], capture_output=True, text=True, check=True).stdout
        assert "Long-name                FAKE " in inspect, inspect[:400]
    return probe


def gst_children() -> list[str]:
    """This process's GStreamer pipeline children (streams/gstlaunch.py names itself), zombies included
    ("pid state")."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if comm == gstlaunch.NAME and int(fields[1]) == os.getpid():
            found.append(f"{stat.parent.name} {fields[0]}")
    return found


def command_lines(children: list[str]) -> list[bytes]:
    return [Path(f"/proc/{child.split()[0]}/cmdline").read_bytes() for child in children]


def hardware_line(probe: decoders.HardwareProbe) -> str:
    return f"nvv4l2decoder (GStreamer {probe.gstreamer}, hardware) for h264"


# -- rendering (no I/O) ----------------------------------------------------------------------------------------


def test_the_pipeline_is_an_argv_with_the_address_as_one_element_and_masked_when_shown() -> None:
    camera = locate("rtsp://admin:hunter%202@cam.local/stream1")
    rendered = gstreamer.render(camera, "hevc", fps=2.5, transport="udp", open_timeout_s=3)
    assert rendered.argv == ["/usr/bin/python3", str(gstreamer.RUNNER)]  # the address goes on its stdin
    argv = rendered.tokens
    assert argv[0] == "rtspsrc" and "location=rtsp://admin:hunter%202@cam.local/stream1" in argv
    assert {"protocols=udp", "latency=200", "tcp-timeout=3000000", "rtph265depay", "h265parse"} <= set(argv)
    assert "video/x-h265,stream-format=byte-stream,alignment=au" in argv and "max-rate=3" in argv
    # videorate drops before the one real conversion; y4menc gets packed I420; a live sink never waits
    order = [argv.index(e) for e in ("nvv4l2decoder", "nvvidconv", "videorate", "videoconvert", "y4menc")]
    assert order == sorted(order) and argv[-3:] == ["fdsink", "fd=1", "sync=false"]
    assert "hunter" not in rendered.shown and "location=rtsp://***:***@cam.local/stream1" in rendered.shown

    file = gstreamer.render(locate("/srv/a b.mp4"), "h264", fps=0, realtime=True).tokens
    assert file[:4] == ["filesrc", "location=/srv/a b.mp4", "!", "parsebin"] and "videorate" not in file
    assert file[-1] == "sync=true"  # a realtime file plays at its pace
    assert gstreamer.render(locate("/srv/a.mp4"), "h264", fps=5, realtime=False).tokens[-1] == "sync=false"


def test_what_the_hardware_pipeline_is_not_tried_for() -> None:
    camera, http = locate("rtsp://cam/x"), locate("http://cam/mjpg")
    assert gstreamer.refusal(camera, "h264", 1920, 1080) is None
    assert gstreamer.refusal(camera, "hevc", 1280, 720) is None
    assert gstreamer.refusal(http, "mjpeg", 640, 480) == "not tried for http cameras (RTSP and files only)"
    assert (
        gstreamer.refusal(locate("/dev/video0"), "h264", 640, 480) == "not tried for v4l2 cameras (RTSP and files only)"
    )
    assert gstreamer.refusal(camera, "mjpeg", 640, 480) == "not tried for mjpeg (the pipeline takes H.264 and H.265)"
    assert "642x482: y4menc would write padded rows" in (gstreamer.refusal(camera, "h264", 642, 482) or "")
    with pytest.raises(ValueError, match="decoder must be one of auto, ffmpeg"):
        SourceOptions(decoder="nvdec").check()


def missing_from(gst_inspect: str) -> list[str]:
    """What the GStreamer behind `gst_inspect` (a gst-inspect-1.0 program) lacks of the elements and properties
    the pipeline names (an RTSP H.264 camera's and a file H.265 camera's), but the Jetson's own two."""
    segments: list[list[str]] = []
    for camera, codec in (("rtsp://cam/x", "h264"), ("/a.mp4", "hevc")):
        segments.append([])
        for arg in gstreamer.render(locate(camera), codec, fps=5).tokens:
            segments.append([]) if arg == "!" else segments[-1].append(arg)
    missing = []
    for element, *props in (s for s in segments if s and "/" not in s[0] and not s[0].startswith("nv")):
        done = subprocess.run([gst_inspect, element], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            missing.append(f"GStreamer has no {element}")
        for prop in props:
            name = prop.split("=", 1)[0]
            if f"  {name} " not in done.stdout:
                missing.append(f"{element} has no property {name}")
    return missing


def test_every_element_and_property_of_the_pipeline_is_in_this_gstreamer(no_fakes: None) -> None:
    """The installed GStreamer (Debian's 1.22) has each element and property the pipeline names, but the
    Jetson's own two (checked against the FAKEs below; Ubuntu 22.04's 1.20 in test_streams_gstreamer_jammy.py)."""
    assert missing_from("gst-inspect-1.0") == []


# -- decoding through the FAKE Jetson ----------------------------------------------------------------------------


def test_a_file_camera_decodes_through_nvv4l2decoder_like_ffmpeg(
    fake_jetson: decoders.HardwareProbe, video: Video
) -> None:
    assert_file_camera_like_ffmpeg(video, fake_jetson)


def assert_file_camera_like_ffmpeg(video: Video, probe: decoders.HardwareProbe) -> None:
    """The video as a file camera at 5 fps through the hardware pipeline: to its end, every frame the video's
    (640x480, the photos at their times) and FFmpeg's own, bit for bit."""
    options = SourceOptions(fps=5, realtime=False, buffer=4)
    with FrameSource(str(video.path), options, hardware=probe) as source:
        frames = list(source.frames(timeout=5))
        status = source.status()
    assert status.decoder == hardware_line(probe) and status.state is SourceState.ENDED
    assert status.last_error is None and status.reconnects == 0 and not gst_children()
    assert abs(len(frames) - video.duration_s * 5) <= 2 and status.frames_in == status.frames_sampled == len(frames)
    assert all(f.image.shape == (480, 640, 3) for f in frames)
    for frame in frames:
        assert_shows(frame, video)
    with FrameSource(str(video.path), SourceOptions(fps=10, realtime=False, decoder="ffmpeg")) as software:
        by_pts = {round(f.pts, 1): f for f in software.frames(timeout=5)}
        assert (software.status().decoder or "").endswith("nvv4l2decoder not used: FACEFLEET_STREAM_DECODER=ffmpeg")
    same = [_difference(f, by_pts[round(f.pts, 1)]) for f in frames if round(f.pts, 1) in by_pts]
    assert len(same) >= len(frames) - 2 and float(np.median(same)) < 1.0, same  # the same pictures, bit for bit


def _difference(a: Frame, b: Frame) -> float:
    return float(np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).mean())


@pytest.mark.slow
def test_a_realtime_looped_file_is_paced_and_runs_the_pipeline_again(
    fake_jetson: decoders.HardwareProbe, video: Video
) -> None:
    start = time.monotonic()
    with FrameSource(str(video.path), SourceOptions(fps=5, loop=True, buffer=64), hardware=fake_jetson) as source:
        wait_for(lambda: source.status().frames_sampled >= video.duration_s * 5 + 5, 15, "a pass and a second")
        took = time.monotonic() - start
        status = source.status()
        frames = list(iter(lambda: source.get(0), None))
    assert video.duration_s + 0.5 < took < video.duration_s + 4, took  # paced: about 8 s of stream time
    assert status.decoder == hardware_line(fake_jetson) and status.reconnects == 0
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[-1] > video.duration_s  # the clock continues across the loop
    assert not gst_children()


@pytest.mark.slow
def test_an_rtsp_camera_decodes_through_nvv4l2decoder_at_the_rate(
    fake_jetson: decoders.HardwareProbe, rtsp: RtspServer, video: Video
) -> None:
    assert_rtsp_at_the_rate(rtsp, fake_jetson)


def assert_rtsp_at_the_rate(rtsp: RtspServer, probe: decoders.HardwareProbe) -> None:
    """An RTSP camera (with a password) through the hardware pipeline: 5 fps for 4 s, sampled by videorate, the
    password on no command line, the child ended by stop()."""
    url = rtsp.url.replace("rtsp://", "rtsp://viewer:pa55word@")
    with FrameSource(url, fast(fps=5, buffer=64), hardware=probe) as source:
        wait_for(lambda: source.state is SourceState.RUNNING, 10, "frames")
        while source.get(0) is not None:
            pass
        time.sleep(4.0)
        frames = list(iter(lambda: source.get(0), None))
        status = source.status()
        running = gst_children()
        commands = command_lines(running)
    assert status.decoder == hardware_line(probe) and status.last_error is None
    assert 17 <= len(frames) <= 23 and 4 <= status.fps_sampled <= 6  # 5 fps, sampled by videorate
    assert "pa55word" not in status.url and len(running) == 1 and not gst_children()  # stop() ended it
    assert b"pa55word" not in commands[0] and b"rtsp://" not in commands[0]  # not on any command line


@pytest.mark.slow
def test_a_frozen_camera_trips_the_watchdog_then_the_hardware_is_tried_again(
    fake_jetson: decoders.HardwareProbe, rtsp: RtspServer
) -> None:
    """The server stops answering (SIGSTOP): no EOF ever comes, so only the watchdog ends the blocked read."""
    assert rtsp.process is not None
    server = rtsp.process.proc.pid
    with FrameSource(rtsp.url, fast(fps=5), hardware=fake_jetson) as source:
        wait_for(lambda: source.state is SourceState.RUNNING, 10, "frames")
        os.kill(server, signal.SIGSTOP)
        try:
            wait_for(lambda: source.state is SourceState.BACKOFF, 6, "the watchdog's loss")
            lost = source.status()
        finally:
            os.kill(server, signal.SIGCONT)
        wait_for(lambda: source.state is SourceState.RUNNING and source.status().reconnects >= 1, 15, "frames again")
        status = source.status()
    assert lost.last_error == f"{rtsp.url}: no frame from GStreamer for 2 s"
    assert status.decoder == hardware_line(fake_jetson) and not gst_children()


def test_a_hardware_decoder_that_fails_falls_back_to_ffmpeg_and_says_why(no_fakes: None, video: Video) -> None:
    """FAKE probe: present, while GStreamer here has no nvv4l2decoder element: the pipeline fails, FFmpeg decodes."""
    probe = decoders.HardwareProbe("nvv4l2decoder", True, "FAKE: said present", "1.22.0")
    with FrameSource(str(video.path), SourceOptions(fps=5, realtime=False), hardware=probe) as source:
        frames = list(source.frames(timeout=5))
        status = source.status()
    assert abs(len(frames) - video.duration_s * 5) <= 2 and status.state is SourceState.ENDED
    assert status.last_error is None and not gst_children()
    decoder = status.decoder or ""
    assert decoder.startswith("h264 (FFmpeg ") and "software via PyAV" in decoder
    assert decoder.endswith('; nvv4l2decoder failed: WARNING: erroneous pipeline: no element "nvv4l2decoder"')


def test_an_odd_size_stays_with_ffmpeg_and_an_offline_camera_is_no_decoder_failure(
    fake_jetson: decoders.HardwareProbe, images_dir: Path
) -> None:
    odd = make_video([images_dir / PHOTOS[0]], seconds=1.0, gap_s=0.5, fps=10, size=(642, 482))
    with FrameSource(str(odd.path), SourceOptions(fps=5, realtime=False), hardware=fake_jetson) as source:
        frames = list(source.frames(timeout=5))
        status = source.status()
    assert frames and frames[0].image.shape == (482, 642, 3) and "software via PyAV" in (status.decoder or "")
    assert (status.decoder or "").endswith("nvv4l2decoder not tried for 642x482: y4menc would write padded rows "
                                           "(width a multiple of 8, even height)")  # fmt: skip
    with FrameSource("rtsp://127.0.0.1:9/cam", fast(), hardware=fake_jetson) as offline:
        wait_for(lambda: offline.status().reconnects >= 1, 5, "a reconnect")
        down = offline.status()
    assert down.decoder is None and (down.last_error or "").endswith("Connection refused") and not gst_children()
