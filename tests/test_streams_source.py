"""Stream sources on real parts: videos ffmpeg makes from the shared photos, decoded by PyAV, served by GStreamer's
RTSP server and by an MJPEG-over-HTTP server (tests/media.py). A V4L2 device cannot exist here: only the
address -> FFmpeg input mapping is tested for it. The Jetson's hardware decoder is probed for real (absent here)
and once against a FAKE gst-inspect-1.0 and /dev."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facefleet.streams import decoders
from facefleet.streams.location import SourceKind, locate, mask
from facefleet.streams.source import Frame, FrameSource, Sampler, SourceOptions, SourceState
from tests.media import MjpegServer, RtspServer, Video, jpeg_frames, letterboxed, make_video, rtsp_available

PHOTOS = ("person_a_1.jpg", "person_b_1.jpg")


@pytest.fixture(scope="module")
def video(images_dir: Path) -> Video:
    """Two photos, 2 s each, 1 s of black before each and at the end: 7 s at 10 fps."""
    return make_video([images_dir / name for name in PHOTOS], seconds=2.0, gap_s=1.0, fps=10)


@pytest.fixture
def rtsp(video: Video, tmp_path: Path) -> Iterator[RtspServer]:
    missing = rtsp_available()
    if missing:
        pytest.skip(missing)
    server = RtspServer(video.path, tmp_path)
    try:
        yield server.start()
    finally:
        server.stop()


class RecordingObserver:
    """Keeps what a source reports (a SourceObserver)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def state_changed(self, source: str, state: SourceState, error: str | None) -> None:
        self.events.append(("state", state))

    def frame_decoded(self, source: str) -> None:
        self.events.append(("decoded", None))

    def frame_sampled(self, source: str) -> None:
        self.events.append(("sampled", None))

    def frame_dropped(self, source: str) -> None:
        self.events.append(("dropped", None))

    def decode_error(self, source: str) -> None:
        self.events.append(("error", None))

    def reconnecting(self, source: str) -> None:
        self.events.append(("reconnecting", None))

    def gap_closed(self, source: str, seconds: float) -> None:
        self.events.append(("gap", seconds))

    def count(self, kind: str) -> int:
        return sum(k == kind for k, _ in self.events)


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def fast(**changes: object) -> SourceOptions:
    """Short back-off and timeouts, so losses and reconnects happen within a test's seconds."""
    base = {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "read_timeout_s": 2.0, "open_timeout_s": 3.0}
    return SourceOptions(**{**base, **changes})  # type: ignore[arg-type]


def assert_shows(frame: Frame, video: Video) -> None:
    """The frame is the photo (or the black gap) on screen at its pts: mean absolute difference of a few
    levels (H.264 at veryfast), far below the other photo's."""
    photo = video.at(frame.pts)
    image = frame.image.astype(np.int16)
    if photo is None:
        assert image.mean() < 8, f"the gap at {frame.pts:.1f} s is not black"
        return
    diffs = {p.name: np.abs(image - letterboxed(p)).mean() for p in (a.photo for a in video.appearances)}
    assert diffs[photo.name] < 6, f"frame at {frame.pts:.1f} s differs from {photo.name} by {diffs[photo.name]:.1f}"
    assert diffs[photo.name] * 3 < min(v for k, v in diffs.items() if k != photo.name)


# -- addresses, masking, options, sampling (no I/O) -------------------------------------------------------------


def test_addresses_map_to_ffmpeg_inputs() -> None:
    rtsp = locate("rtsp://cam.local:554/stream1", read_timeout_s=3)
    assert (rtsp.kind, rtsp.format, rtsp.options) == (
        SourceKind.RTSP,
        None,
        {"rtsp_transport": "tcp", "timeout": "3000000"},
    )
    assert locate("rtsp://cam/x", transport="udp").options["rtsp_transport"] == "udp"
    with pytest.raises(ValueError, match="transport"):
        locate("rtsp://cam/x", transport="http")
    http = locate("https://cam/mjpg/video.mjpg", format="mpjpeg")
    assert (http.kind, http.format, http.kind.timed_by_arrival) == (SourceKind.HTTP, "mpjpeg", True)
    # V4L2: no device here, so only the mapping is checked (format v4l2, the device's options passed on)
    v4l2 = locate("/dev/video0", options={"video_size": "1280x720", "input_format": "mjpeg"})
    assert (v4l2.kind, v4l2.target, v4l2.format) == (SourceKind.V4L2, "/dev/video0", "v4l2")
    assert v4l2.options == {"video_size": "1280x720", "input_format": "mjpeg"} and v4l2.kind.live
    assert locate("/dev/video12").kind is SourceKind.V4L2
    assert locate("/dev/videos").kind is SourceKind.FILE
    assert (locate("file:///srv/a.mp4").kind, locate("file:///srv/a.mp4").target) == (SourceKind.FILE, "/srv/a.mp4")
    assert not locate("clips/a.mp4").kind.live
    assert locate("srt://10.0.0.5:9000").kind is SourceKind.OTHER and locate("udp://@:5000").kind.live
    with pytest.raises(ValueError, match="empty"):
        locate("  ")


def test_credentials_are_masked() -> None:
    assert mask("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101") == "rtsp://***:***@10.0.0.5:554/Streaming/101"
    assert mask("http://admin@cam/video.mjpg") == "http://***:***@cam/video.mjpg"
    assert mask("http://cam/cgi?user=admin&password=hunter2&res=hd") == "http://cam/cgi?user=***&password=***&res=hd"
    assert mask("rtsp://cam/stream1") == "rtsp://cam/stream1"
    message = "[Errno 111] Connection refused: 'rtsp://admin:hunter2@10.0.0.5/x'"
    assert "hunter2" not in mask(message) and "admin" not in mask(message)
    source = FrameSource("rtsp://admin:hunter2@127.0.0.1:9/x")
    assert "hunter2" not in source.status().url and source.status().state is SourceState.STOPPED


def test_options_are_checked() -> None:
    for bad in ({"fps": -1}, {"buffer": 0}, {"pixel_format": "yuv420p"}, {"stall_s": 0}, {"backoff_jitter": 1}):
        with pytest.raises(ValueError):
            SourceOptions(**bad).check()  # type: ignore[arg-type]


def test_sampler_keeps_the_rate_and_restarts_on_jumps() -> None:
    sampler = Sampler(5)
    kept = [t / 25 for t in range(100) if sampler.take(t / 25)]  # 4 s at 25 fps
    assert len(kept) == 20 and kept[:3] == [0.0, 0.2, 0.4]
    assert sampler.take(0.0)  # the server looped its file: pts back to 0, kept at once
    assert not sampler.take(0.04)
    slow = Sampler(5)
    assert all(slow.take(t) for t in (0.0, 0.5, 1.0, 1.5))  # a 2 fps stream: every frame, no bursts
    assert all(Sampler(0).take(t / 30) for t in range(10))


# -- decoders ---------------------------------------------------------------------------------------------------


def test_decoder_report_is_honest_here() -> None:
    probe = decoders.probe_hardware()
    assert not probe.present and "nvv4l2decoder" in probe.reason
    summary = decoders.report("h264", 1, probe).summary
    assert summary.startswith("h264 (FFmpeg ") and "software via PyAV" in summary and "1 thread)" in summary
    assert "nvv4l2decoder absent" in summary


def test_decoder_report_on_a_fake_jetson(tmp_path: Path) -> None:
    """FAKE: a gst-inspect-1.0 that knows nvv4l2decoder and a /dev with an NVDEC node (no Jetson here)."""
    inspect = tmp_path / "gst-inspect-1.0"
    inspect.write_text('#!/bin/sh\n[ "$1" = nvv4l2decoder ] && echo "Factory Details:" && exit 0\nexit 1\n')
    inspect.chmod(0o755)
    dev = tmp_path / "dev"
    dev.mkdir()
    assert not decoders.probe_hardware(str(inspect), dev).present  # the element alone is not enough
    (dev / "nvhost-nvdec").touch()
    no_gi = decoders.probe_hardware(str(inspect), dev, python=sys.executable)  # the venv's Python: no PyGObject
    assert not no_gi.present and no_gi.reason.endswith(
        "has no PyGObject for GStreamer (apt-get install python3-gi gir1.2-gstreamer-1.0)"
    )
    probe = decoders.probe_hardware(str(inspect), dev)
    assert probe.present and probe.gstreamer == ""  # this fake says no version
    assert (
        decoders.hardware_report("h264", probe).summary
        == "nvv4l2decoder (GStreamer of unknown version, hardware) for h264"
    )
    refused = decoders.report("mjpeg", 1, probe, "not tried for http cameras (RTSP and files only)").summary
    assert refused.startswith("mjpeg (FFmpeg ") and refused.endswith(
        "; nvv4l2decoder not tried for http cameras (RTSP and files only)"
    )
    assert decoders.report("h264", 1, None).summary.endswith(
        "; nvv4l2decoder not used: FACEFLEET_STREAM_DECODER=ffmpeg"
    )


# -- files ------------------------------------------------------------------------------------------------------


def test_file_frames_are_the_photos_at_the_sampled_rate(video: Video) -> None:
    options = SourceOptions(fps=5, realtime=False, buffer=4)
    with FrameSource(str(video.path), options) as source:
        frames = list(source.frames(timeout=5))
        status = source.status()
    assert status.state is SourceState.ENDED and status.last_error is None
    expected = video.duration_s * 5
    assert abs(len(frames) - expected) <= 2, f"{len(frames)} frames for {expected}"
    assert status.frames_in == video.duration_s * video.fps and status.frames_sampled == len(frames)
    assert status.frames_dropped == 0  # as fast as consumed: nothing dropped
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    for frame in frames:
        assert_shows(frame, video)
    assert status.decoder is not None and status.decoder.startswith("h264 ")


def test_bgr_is_rgb_reversed(video: Video) -> None:
    first = {}
    for fmt in ("rgb24", "bgr24"):
        with FrameSource(str(video.path), SourceOptions(realtime=False, pixel_format=fmt)) as source:
            frames = list(source.frames(timeout=5))
            first[fmt] = frames[len(frames) // 3].image
    assert np.array_equal(first["rgb24"][..., ::-1], first["bgr24"])


def test_looped_file_continues_its_clock(video: Video) -> None:
    with FrameSource(str(video.path), SourceOptions(fps=2, realtime=False, loop=True)) as source:
        frames = [source.get(5) for _ in range(int(video.duration_s * 2) * 2 + 3)]
        status = source.status()
    pts = [f.pts for f in frames if f is not None]
    assert len(pts) == len(frames) and pts == sorted(pts) and pts[-1] > video.duration_s * 2
    assert status.reconnects == 0 and status.state is SourceState.RUNNING


def test_slow_consumer_gets_the_newest_and_drops_are_counted(video: Video) -> None:
    with FrameSource(str(video.path), SourceOptions(fps=0, realtime=True, buffer=2)) as source:
        time.sleep(2.0)  # consumer busy: about 20 frames arrive, 2 are kept
        status = source.status()
        newest = [source.get(1), source.get(1)]
    assert status.buffered == 2
    assert status.frames_dropped == status.frames_sampled - 2 >= 10
    seqs = [f.seq for f in newest if f is not None]
    assert seqs[0] >= status.frames_sampled - 3, f"kept {seqs}, sampled {status.frames_sampled}: not the newest"


@pytest.mark.slow
def test_realtime_file_is_paced(video: Video) -> None:
    start = time.monotonic()
    with FrameSource(str(video.path), SourceOptions(fps=5, realtime=True, buffer=64)) as source:
        wait_for(lambda: source.state is SourceState.ENDED, 15, "the file to end")
        status = source.status()
    took = time.monotonic() - start
    assert video.duration_s - 0.5 < took < video.duration_s + 3
    assert abs(status.frames_sampled - video.duration_s * 5) <= 2
    assert 3 <= status.fps_sampled <= 7 and 7 <= status.fps_in <= 13


@pytest.mark.parametrize(
    ("address", "words"),
    [("{tmp}/missing.mp4", "No such file or directory"), ("{tmp}/junk.mp4", "not a video FFmpeg can read")],
)
def test_a_missing_or_bad_file_fails_for_good_in_one_line(
    tmp_path: Path, address: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    # random bytes (a text file is not bad enough: FFmpeg plays it as ANSI art)
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    url = address.format(tmp=tmp_path)
    with caplog.at_level(logging.WARNING, "facefleet.streams"), FrameSource(url) as source:
        wait_for(lambda: source.state is SourceState.FAILED, 5, "the source to fail")
        assert source.get(0.1) is None
        status = source.status()
    assert status.last_error is not None and words in status.last_error and "\n" not in status.last_error
    assert status.reconnects == 0
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_an_unknown_protocol_fails_for_good() -> None:
    with FrameSource("nosuchproto://cam/x") as source:
        wait_for(lambda: source.state is SourceState.FAILED, 5, "the source to fail")
        assert "Protocol not found" in (source.status().last_error or "")


# -- live: RTSP, HTTP, unreachable -------------------------------------------------------------------------------


def test_unreachable_camera_backs_off_and_reconnects_with_credentials_masked(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]  # bound, not listening: connections are refused
        url = f"rtsp://admin:hunter2@127.0.0.1:{port}/cam"
        with caplog.at_level(logging.INFO, "facefleet.streams"), FrameSource(url, fast()) as source:
            wait_for(lambda: source.status().reconnects >= 2, 10, "two reconnect attempts")
            status = source.status()
    assert status.state in (SourceState.BACKOFF, SourceState.CONNECTING)
    assert status.last_error == f"rtsp://***:***@127.0.0.1:{port}/cam: Connection refused"
    assert status.frames_in == 0 and status.gap_seconds_total == 0
    assert "hunter2" not in caplog.text and "admin" not in caplog.text and "Connection refused" in caplog.text


def test_stop_is_prompt_while_a_camera_never_answers() -> None:
    """A server that accepts and says nothing: the open blocks until its timeout; stop() waits no longer."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        source = FrameSource(f"rtsp://127.0.0.1:{port}/cam", fast(open_timeout_s=1.5, read_timeout_s=1.5)).start()
        wait_for(lambda: source.state is SourceState.CONNECTING, 2, "connecting")
        time.sleep(0.3)
        start = time.monotonic()
        source.stop()
        took = time.monotonic() - start
    assert took < 3.0 and source.state is SourceState.STOPPED
    assert not [t for t in threading.enumerate() if t.name.startswith("stream rtsp://127.0.0.1")]


@pytest.mark.slow
def test_rtsp_frames_and_reconnect_after_the_server_restarts(rtsp: RtspServer, video: Video) -> None:
    url = rtsp.url.replace("rtsp://", "rtsp://viewer:pa55word@")  # the server asks for none: FFmpeg just connects
    observer = RecordingObserver()
    with FrameSource(url, fast(fps=5, buffer=2), observer=observer) as source:
        frames = [f for f in (source.get(5) for _ in range(8)) if f is not None]
        assert len(frames) == 8, source.status()
        running = source.status()
        assert running.state is SourceState.RUNNING and running.decoder and running.decoder.startswith("h264")
        assert (running.width, running.height) == video.size and "pa55word" not in running.url

        rtsp.stop()  # the camera goes away
        wait_for(lambda: source.state is SourceState.BACKOFF, 10, "back-off after the server died")
        wait_for(lambda: source.status().reconnects >= 2, 10, "reconnect attempts while it is down")
        down = source.status()
        assert down.last_error and "pa55word" not in down.last_error and "\n" not in down.last_error
        time.sleep(1.0)
        assert source.status().gap_seconds_total >= 1.0  # an open gap counts as it grows

        rtsp.start()  # it comes back on the same address
        wait_for(lambda: source.state is SourceState.RUNNING, 15, "frames again after the restart")
        while source.get(0) is not None:  # what was buffered before the loss
            pass
        again = source.get(5)
        status = source.status()
    assert again is not None and again.seq > frames[-1].seq
    assert status.gap_seconds_total > 1.0 and status.reconnects >= 2 and status.frames_in > running.frames_in
    assert status.decode_errors == 0
    gaps = [seconds for kind, seconds in observer.events if kind == "gap"]
    assert len(gaps) == 1 and abs(gaps[0] - status.gap_seconds_total) < 0.5  # type: ignore[operator]
    assert observer.count("reconnecting") == status.reconnects and observer.count("sampled") == status.frames_sampled
    states = [state for kind, state in observer.events if kind == "state"]
    assert states[:2] == [SourceState.CONNECTING, SourceState.RUNNING] and SourceState.BACKOFF in states


@pytest.mark.slow
def test_rtsp_sampled_frames_show_the_photos(rtsp: RtspServer, video: Video) -> None:
    """The server's clock starts from 0 with each pass of the file, so pts are the file's times."""
    with FrameSource(rtsp.url, fast(fps=5, buffer=64)) as source:
        time.sleep(video.duration_s + 1)
        frames = [f for f in iter(lambda: source.get(0), None)]
        status = source.status()
    assert 4 <= status.fps_sampled <= 6 and 8 <= status.fps_in <= 12
    assert abs(len(frames) - (video.duration_s + 1) * 5) <= 5
    for frame in frames:
        if (
            min(abs(frame.pts % video.duration_s - edge) for a in video.appearances for edge in (a.start_s, a.end_s))
            > 0.3
        ):
            assert_shows(frame, video)


def test_mjpeg_over_http_with_basic_auth(video: Video) -> None:
    with MjpegServer(jpeg_frames(video.path), fps=10, auth=("admin", "hunter2")) as server:
        with FrameSource(server.url("admin:hunter2"), fast(fps=5, buffer=8)) as source:
            frames = [f for f in (source.get(5) for _ in range(5)) if f is not None]
            status = source.status()
        with FrameSource(server.url("admin:wrong"), fast()) as refused:
            wait_for(lambda: refused.status().last_error is not None, 5, "the refusal")
            error = refused.status().last_error or ""
    assert len(frames) == 5 and status.decoder and status.decoder.startswith("mjpeg")
    assert frames[0].image.shape == (480, 640, 3) and status.url.startswith("http://***:***@")
    assert "401" in error and "hunter2" not in error and "wrong" not in error


@pytest.mark.slow
def test_rtsp_over_udp(rtsp: RtspServer) -> None:
    with FrameSource(rtsp.url, fast(transport="udp", fps=5)) as source:
        frames = [source.get(5) for _ in range(4)]
        status = source.status()
    assert all(f is not None for f in frames) and status.state is SourceState.RUNNING and status.decode_errors == 0


def test_corrupt_frames_are_counted_and_skipped(video: Video) -> None:
    """A camera sending a broken JPEG now and then: each is a decode error; the stream goes on."""
    jpegs = jpeg_frames(video.path)[10:20]
    broken = b"\xff\xd8\xff\xe0" + b"not a jpeg" + bytes(500)
    server = MjpegServer([*jpegs[:5], broken, *jpegs[5:]], fps=20)
    with server, FrameSource(server.url(), fast(fps=0, buffer=64)) as source:
        wait_for(lambda: source.status().decode_errors >= 2, 5, "two broken frames")
        status = source.status()
    assert status.state is SourceState.RUNNING and status.frames_in >= 10 * status.decode_errors - 10
    assert status.last_error is None  # a decode error is not a loss


def test_a_stream_that_stops_decoding_is_a_loss(video: Video) -> None:
    """Packets keep coming but none decodes for stall_s: the source reconnects (and the server's new
    connection starts with good frames again)."""
    jpegs = jpeg_frames(video.path)[10:15]
    broken = b"\xff\xd8\xff\xe0" + b"not a jpeg" + bytes(500)
    server = MjpegServer([*jpegs, *[broken] * 200], fps=20)
    with server, FrameSource(server.url(), fast(fps=0, buffer=64, stall_s=1.0)) as source:
        wait_for(lambda: source.status().reconnects >= 1, 8, "a reconnect after the stall")
        wait_for(lambda: source.status().frames_in >= 2 * len(jpegs), 8, "good frames again")
        status = source.status()
    assert status.last_error and "no frame decoded for 1 s" in status.last_error
    assert status.gap_seconds_total >= 1.0
