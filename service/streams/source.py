"""One camera read into a small buffer of sampled frames, reconnecting on its own.

A `FrameSource` owns a reader thread: it opens the address with PyAV (FFmpeg), decodes every frame (H.264 cannot
skip frames others refer to), keeps one each time the frame's pts passes the next sample time (5 fps by default),
converts only those to a uint8 array and puts them in a buffer of a few frames that drops the OLDEST when full:
a slow consumer gets the newest picture, never a growing backlog, and the drops are counted. Whatever ends the
frames (the open fails, a read fails, a live stream ends, nothing decodes for `stall_s`) is a loss: it waits with
exponential back-off (with jitter, so a fleet's cameras do not reconnect in step) and opens again, counting the
attempts and the seconds without frames. A file that does not exist, or holds no video, fails for good: retrying
cannot help. Errors are one line with the address masked; the thread never lets an exception out.

On a Jetson (`decoder="auto"` and the hardware probe of streams/decoders.py present) an RTSP or file camera is
decoded by GStreamer's nvv4l2decoder instead: the FFmpeg open only tells the codec and size, then a GStreamer
child (streams/gstreamer.py) decodes and drops down to the rate, and PyAV reads its YUV4MPEG2 pipe through the
same sampling and buffer. When that pipeline gives no first frame, the connection is decoded by FFmpeg and the
status says why; the next connection tries the hardware again.

Frames are RGB by default, what `FaceEngine.process` takes as an array (`engine/decode.py` gives RGB too);
`pixel_format="bgr24"` gives OpenCV's order.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import av
import av.error
import numpy as np

from facefleet.streams import decoders, gstreamer
from facefleet.streams.location import Location, SourceKind, locate, mask

log = logging.getLogger("facefleet.streams")

PIXEL_FORMATS = ("rgb24", "bgr24")
FPS_WINDOW_S = 5.0  # the measured rates are over this many seconds
# A pts step larger than this (either way) is a new timeline (a camera restarted, a server looped its file):
# sampling starts over from the next frame instead of waiting for the old schedule.
PTS_JUMP_S = 5.0


class SourceState(str, Enum):
    CONNECTING = "connecting"  # opening the address (first time or after a back-off)
    RUNNING = "running"  # frames are arriving
    BACKOFF = "backoff"  # lost; waiting before the next attempt
    ENDED = "ended"  # a file played to its end (not looped)
    STOPPED = "stopped"  # stop() was called (or never started)
    FAILED = "failed"  # failed for good: a file that is missing or not a video; no more attempts


@dataclass(frozen=True)
class SourceOptions:
    """How a source reads. Times in seconds."""

    fps: float = 5.0  # frames kept per second of stream time; 0 keeps every decoded frame
    buffer: int = 2  # frames kept for the consumer; the oldest is dropped when a new one arrives
    realtime: bool = True  # files only: at their native pace (True) or as fast as they are consumed (False)
    loop: bool = False  # files only: start again at the end
    transport: str = "tcp"  # RTSP: tcp or udp
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0  # a read blocked this long is a loss (and bounds how long stop() can wait)
    stall_s: float = 10.0  # packets but no decoded frame for this long is a loss
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.2  # each wait is scaled by a random factor in [1 - jitter, 1 + jitter]
    threads: int = 1  # decoder threads per stream (0: FFmpeg picks); streams share the cores with inference
    pixel_format: str = "rgb24"
    format: str | None = None  # force FFmpeg's demuxer (e.g. "mpjpeg"); None: FFmpeg probes
    ffmpeg_options: dict[str, str] = field(default_factory=dict)  # e.g. V4L2's video_size, framerate
    decoder: str = "auto"  # auto: nvv4l2decoder for RTSP and files when the hardware probe finds it; ffmpeg: never

    def check(self) -> None:
        """A ValueError naming the first setting that cannot work."""
        if self.fps < 0:
            raise ValueError(f"fps must be 0 (every frame) or more, not {self.fps}")
        if self.buffer < 1:
            raise ValueError(f"buffer must hold at least 1 frame, not {self.buffer}")
        if self.pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, not {self.pixel_format!r}")
        for name in ("open_timeout_s", "read_timeout_s", "stall_s", "backoff_initial_s", "backoff_max_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.decoder not in decoders.CHOICES:
            raise ValueError(f"decoder must be one of {', '.join(decoders.CHOICES)}, not {self.decoder!r}")
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError(f"backoff_jitter must be in [0, 1), not {self.backoff_jitter}")


@dataclass(frozen=True)
class Frame:
    """One sampled picture: H x W x 3 uint8 (RGB unless the source was asked for BGR)."""

    image: np.ndarray
    pts: float  # stream time in seconds (files: from 0, continuing across loops)
    wall: float  # time.time() when it was decoded
    seq: int  # 0, 1, 2, ... over the source's life, across reconnects


@dataclass(frozen=True)
class SourceStatus:
    """A snapshot of one source, safe to show: the address is masked."""

    url: str
    kind: str
    state: SourceState
    frames_in: int  # decoded by FFmpeg
    frames_sampled: int  # kept at the sample rate and put in the buffer
    frames_dropped: int  # pushed out of the full buffer before a consumer took them
    decode_errors: int
    reconnects: int  # attempts to open again after a loss
    gap_seconds_total: float  # seconds without frames after losses (a gap still open counts so far)
    fps_in: float  # decoded per second, over the last few seconds
    fps_sampled: float
    last_error: str | None  # one line, address masked
    decoder: str | None  # what decodes (see decoders.DecoderReport.summary); None before the first open
    width: int | None
    height: int | None
    buffered: int


class SourceObserver(Protocol):
    """What a source reports as it happens (metrics implement it; the source never imports them). Called from
    the reader thread: an implementation must be quick, thread-safe and must not raise."""

    def state_changed(self, source: str, state: SourceState, error: str | None) -> None:
        """The source moved to `state`; `error` is the loss or failure that moved it (one masked line)."""

    def frame_decoded(self, source: str) -> None:
        """FFmpeg decoded one frame (every frame, sampled or not)."""

    def frame_sampled(self, source: str) -> None:
        """A frame was kept at the sample rate and buffered."""

    def frame_dropped(self, source: str) -> None:
        """The full buffer dropped its oldest frame for a newer one."""

    def decode_error(self, source: str) -> None:
        """A packet failed to decode (skipped; not a loss)."""

    def reconnecting(self, source: str) -> None:
        """An attempt to open the source again after a loss."""

    def gap_closed(self, source: str, seconds: float) -> None:
        """Frames arrive again after `seconds` without any."""


class NullSourceObserver:
    """Hears nothing (tests and tools that read status() instead)."""

    def state_changed(self, source: str, state: SourceState, error: str | None) -> None:
        pass

    def frame_decoded(self, source: str) -> None:
        pass

    def frame_sampled(self, source: str) -> None:
        pass

    def frame_dropped(self, source: str) -> None:
        pass

    def decode_error(self, source: str) -> None:
        pass

    def reconnecting(self, source: str) -> None:
        pass

    def gap_closed(self, source: str, seconds: float) -> None:
        pass


class StreamLostError(Exception):
    """The frames stopped for a reason retrying may cure; the message is one masked line."""


class StreamFailedError(Exception):
    """The frames cannot come however often it is retried (a missing file); the message is one masked line."""


@dataclass
class Playback:
    """One opening's progress: its sampler, when it started (monotonic), its first and last pts, its last frame."""

    sampler: Sampler
    start: float
    first_pts: float | None = None
    last_pts: float = 0.0
    last_frame: float = field(default_factory=time.monotonic)


class Sampler:
    """Keeps a frame each time the stream time passes the next sample time (interval 1/fps)."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps if fps > 0 else 0.0
        self.next: float | None = None
        self.last: float | None = None

    def take(self, pts: float) -> bool:
        if self.interval == 0:
            return True
        jumped = self.last is not None and abs(pts - self.last) > PTS_JUMP_S
        backwards = self.last is not None and pts < self.last
        self.last = pts
        if self.next is None or jumped or backwards:
            self.next = pts + self.interval
            return True
        if pts + 1e-6 < self.next:
            return False
        self.next += self.interval
        if self.next <= pts:  # the stream is slower than the sample rate: keep pace with it, do not burst
            self.next = pts + self.interval
        return True

    def restart(self) -> None:
        self.next = self.last = None


class Rate:
    """Events per second over the last FPS_WINDOW_S seconds."""

    def __init__(self) -> None:
        self.times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self.times.append(now)
        self._trim(now)

    def per_second(self, now: float) -> float:
        self._trim(now)
        return len(self.times) / max(now - self.times[0], 1.0) if self.times else 0.0

    def _trim(self, now: float) -> None:
        while self.times and self.times[0] < now - FPS_WINDOW_S:
            self.times.popleft()


class FrameSource:
    """One camera (or file) read by its own thread into a bounded, drop-oldest buffer.

    `start()` once, `get(timeout)` from one consumer, `status()` from anywhere, `stop()` at the end (or use it as
    a context manager). `name` labels the observer's reports (default: the masked address). `hardware` is the
    probe of the NVDEC decoder the composition root made (default: this machine's, decoders.hardware()); it is
    not consulted when options.decoder is `ffmpeg`."""

    def __init__(
        self,
        url: str,
        options: SourceOptions | None = None,
        *,
        name: str | None = None,
        observer: SourceObserver | None = None,
        hardware: decoders.HardwareProbe | None = None,
    ) -> None:
        self.options = options if options is not None else SourceOptions()
        self.options.check()
        self.hardware: decoders.HardwareProbe | None = None
        if self.options.decoder == "auto":
            self.hardware = hardware if hardware is not None else decoders.hardware()
        self.location: Location = locate(
            url,
            transport=self.options.transport,
            read_timeout_s=self.options.read_timeout_s,
            format=self.options.format,
            options=self.options.ffmpeg_options,
        )
        self.url = self.location.shown
        self.name = name or self.url
        self.observer: SourceObserver = observer if observer is not None else NullSourceObserver()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._buffer: collections.deque[Frame] = collections.deque()
        self._state = SourceState.STOPPED
        self._counts = {"in": 0, "sampled": 0, "dropped": 0, "errors": 0, "reconnects": 0}
        self._gap_total = 0.0
        self._gap_start: float | None = None  # monotonic time of the last frame before a loss
        self._last_frame_at = 0.0
        self._last_error: str | None = None
        self._decoder: str | None = None
        self._size: tuple[int, int] | None = None
        self._rates = (Rate(), Rate())
        self._seq = 0
        self._pts_offset = 0.0  # files: stream time already played by earlier loops
        self._pipe: gstreamer.Pipe | None = None  # the running GStreamer child, which stop() ends

    # -- the consumer's side -------------------------------------------------------------------------------

    def start(self) -> FrameSource:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"source {self.url} was already started")
            self._state = SourceState.CONNECTING
            self._thread = threading.Thread(target=self._run, name=f"stream {self.name}", daemon=True)
        self.observer.state_changed(self.name, SourceState.CONNECTING, None)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ends the reader thread and waits for it: at most a blocked read (read_timeout_s) plus a little."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
            pipe = self._pipe
        if pipe is not None:
            pipe.close()  # a read blocked on its pipe sees EOF now
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout if timeout is not None else self.options.read_timeout_s + 5)
        with self._lock:
            changed = self._state not in (SourceState.FAILED, SourceState.ENDED, SourceState.STOPPED)
            if changed:
                self._state = SourceState.STOPPED
        if changed:
            self.observer.state_changed(self.name, SourceState.STOPPED, None)

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest buffered frame, waiting up to `timeout` seconds (None: until one comes or the source
        stops); None when none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._buffer:
                if self._stop.is_set() or self._state in (SourceState.FAILED, SourceState.ENDED):
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._ready.wait(left)
            frame = self._buffer.popleft()
            self._ready.notify_all()  # a realtime=False file reader waits for room
            return frame

    def frames(self, timeout: float = 1.0) -> Iterator[Frame]:
        """Frames until the source stops, fails or ends (waiting `timeout` at a time)."""
        while True:
            frame = self.get(timeout)
            if frame is not None:
                yield frame
            elif self._stop.is_set() or self.state in (SourceState.FAILED, SourceState.ENDED):
                return

    @property
    def state(self) -> SourceState:
        with self._lock:
            return self._state

    def status(self) -> SourceStatus:
        now = time.monotonic()
        with self._lock:
            gap = self._gap_total + (now - self._gap_start if self._gap_start is not None else 0.0)
            return SourceStatus(
                url=self.url,
                kind=self.location.kind.value,
                state=self._state,
                frames_in=self._counts["in"],
                frames_sampled=self._counts["sampled"],
                frames_dropped=self._counts["dropped"],
                decode_errors=self._counts["errors"],
                reconnects=self._counts["reconnects"],
                gap_seconds_total=round(gap, 3),
                fps_in=round(self._rates[0].per_second(now), 2),
                fps_sampled=round(self._rates[1].per_second(now), 2),
                last_error=self._last_error,
                decoder=self._decoder,
                width=self._size[0] if self._size else None,
                height=self._size[1] if self._size else None,
                buffered=len(self._buffer),
            )

    def __enter__(self) -> FrameSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the reader thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0  # consecutive losses without a frame in between: the back-off's exponent
        first = True
        while not self._stop.is_set():
            if not first:
                self._count("reconnects")
                self.observer.reconnecting(self.name)
            first = False
            self._set_state(SourceState.CONNECTING)
            try:
                self._read_once()
            except StreamFailedError as exc:
                self._set_state(SourceState.FAILED, str(exc))
                log.error("stream failed: %s", exc)
                break
            except StreamLostError as exc:
                got_frames = self._lost(str(exc))
            except Exception as exc:  # the thread must survive anything PyAV or numpy raise
                got_frames = self._lost(f"unexpected {type(exc).__name__}: {mask(_one_line(str(exc)))}")
            else:  # a file's end (not looped), or stop()
                if not self._stop.is_set():
                    self._set_state(SourceState.ENDED)
                break
            if self._stop.is_set():
                break
            failures = 0 if got_frames else failures + 1
            self._set_state(SourceState.BACKOFF)
            self._backoff(max(1, failures))
        with self._ready:
            self._ready.notify_all()

    def _lost(self, message: str) -> bool:
        """Records a loss; True when frames had arrived on this connection (the back-off starts over)."""
        now = time.monotonic()
        with self._lock:
            got = self._state is SourceState.RUNNING
            if self._gap_start is None and self._counts["in"] > 0:
                self._gap_start = self._last_frame_at if got else now
        if not self._stop.is_set():
            self._set_state(SourceState.BACKOFF, message)
            log.warning("stream lost: %s", message)
        return got

    def _backoff(self, failures: int) -> None:
        o = self.options
        delay = min(o.backoff_max_s, o.backoff_initial_s * 2 ** max(0, failures - 1))
        delay *= 1 + random.uniform(-o.backoff_jitter, o.backoff_jitter)
        self._stop.wait(delay)

    def _read_once(self) -> None:
        """One connection: open, decode until a loss (raised: StreamLostError or StreamFailedError), a file's end
        (not looped) or stop(). A looped file is opened again here: not a reconnect."""
        while True:
            played = self._play_once()
            if played is None or not self.options.loop or self._stop.is_set():
                return

    def _play_once(self) -> bool | None:
        """One opening, through the hardware when it may and does decode it, else FFmpeg; `_decode`'s answer."""
        container = self._open()
        try:
            stream = self._video(container)
            codec, note = stream.codec_context.name, None
            if self.hardware is not None and self.hardware.present:
                note = gstreamer.refusal(self.location, codec, stream.codec_context.width, stream.codec_context.height)
                if note is None:
                    container.close()  # it said the codec and size; GStreamer opens the camera itself
                    played, failure = self._play_hardware(codec, self.hardware)
                    if failure is None:
                        return played
                    note = f"failed: {failure}"
                    log.warning("%s: %s %s; decoding with FFmpeg", self.location.shown, self.hardware.element, note)
                    container = self._open()
                    stream = self._video(container)
            stream.thread_type = "AUTO" if self.options.threads != 1 else "SLICE"
            stream.codec_context.thread_count = self.options.threads
            self._set_decoder(decoders.report(stream.codec_context.name, self.options.threads, self.hardware, note))
            return self._decode(container, stream)
        finally:
            container.close()

    def _video(self, container: Any) -> Any:
        streams = container.streams.video
        if not streams:
            message = f"{self.location.shown}: no video stream"
            if self.location.kind is SourceKind.FILE:
                raise StreamFailedError(message)
            raise StreamLostError(message)
        return streams[0]

    def _play_hardware(self, codec: str, probe: decoders.HardwareProbe) -> tuple[bool | None, str | None]:
        """GStreamer's nvv4l2decoder for one opening: (`_decode`'s answer, None) once it gave a frame, or
        (None, why) when it gave none (the caller decodes with FFmpeg). A loss after frames raises as usual."""
        loc, o = self.location, self.options
        python = gstreamer.available()
        if python is None:
            return None, f"{gstreamer.SYSTEM_PYTHON} is not installed (it runs the GStreamer pipeline)"
        rendered = gstreamer.render(
            loc,
            codec,
            fps=o.fps,
            transport=o.transport,
            realtime=o.realtime,
            open_timeout_s=o.open_timeout_s,
            python=python,
        )
        try:
            pipe = gstreamer.Pipe(
                rendered, first_s=o.open_timeout_s + o.read_timeout_s, read_timeout_s=o.read_timeout_s
            )
        except OSError as exc:
            return None, f"{python} could not run: {_reason(exc)}"
        with self._lock:
            self._pipe = pipe
        if self._stop.is_set():
            pipe.close()
        container = None
        try:
            try:
                container = av.open(pipe.target, format="yuv4mpegpipe")
            except (av.error.FFmpegError, OSError):  # it ended before a header: no frame will come
                return None, (None if self._stop.is_set() else pipe.failure())
            self._set_decoder(decoders.hardware_report(codec, probe))
            try:
                played = self._decode(container, container.streams.video[0], pipe)
                if played and not pipe.ended_cleanly():  # a file's frames ended on an error, not its end
                    raise StreamLostError(f"{loc.shown}: {pipe.failure()}")
                return played, None
            except (StreamLostError, StreamFailedError) as exc:
                if self._stop.is_set():
                    return None, None
                if pipe.frames == 0:
                    return None, pipe.failure()
                if pipe.timed_out or isinstance(exc, StreamFailedError):
                    raise
                raise StreamLostError(f"{loc.shown}: {pipe.failure()}") from None
        finally:
            pipe.close()  # first: PyAV may be reading its pipe
            if container is not None:
                container.close()
            pipe.release()
            with self._lock:
                self._pipe = None

    def _set_decoder(self, report: decoders.DecoderReport) -> None:
        with self._lock:
            self._decoder = report.summary

    def _open(self) -> Any:
        loc, o = self.location, self.options
        try:
            return av.open(
                loc.target, format=loc.format, options=dict(loc.options), timeout=(o.open_timeout_s, o.read_timeout_s)
            )
        except (FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError) as exc:
            message = f"{loc.shown}: {_reason(exc)}"
            if loc.kind is SourceKind.FILE:
                raise StreamFailedError(message) from None
            raise StreamLostError(message) from None
        except av.error.InvalidDataError as exc:
            message = f"{loc.shown}: not a video FFmpeg can read ({_reason(exc)})"
            if loc.kind is SourceKind.FILE:
                raise StreamFailedError(message) from None
            raise StreamLostError(message) from None
        except (av.error.DemuxerNotFoundError, av.error.ProtocolNotFoundError) as exc:
            raise StreamFailedError(f"{loc.shown}: {_reason(exc)}") from None
        except av.error.ExitError:
            raise StreamLostError(f"{loc.shown}: no answer within {o.open_timeout_s:g} s") from None
        except (av.error.FFmpegError, OSError) as exc:
            raise StreamLostError(f"{loc.shown}: {_reason(exc)}") from None

    def _decode(self, container: Any, stream: Any, pipe: gstreamer.Pipe | None = None) -> bool | None:
        """Decodes one opening until it ends: raises StreamLostError for a live source, StreamFailedError for a
        file that played no frame; True when a file played to its end, None on stop(). `pipe`: the GStreamer
        child the container reads, whose watchdog hears each read."""
        loc, o = self.location, self.options
        play = Playback(Sampler(o.fps), time.monotonic())
        for frames in self._frame_lists(container, stream, pipe):
            if not frames and time.monotonic() - play.last_frame > o.stall_s:
                raise StreamLostError(f"{loc.shown}: no frame decoded for {o.stall_s:g} s")
            for frame in frames:
                if not self._take(frame, play):
                    return None
        if self._stop.is_set():
            return None
        if loc.kind.live:
            if pipe is not None and pipe.timed_out:
                raise StreamLostError(f"{loc.shown}: no frame from GStreamer for {o.read_timeout_s:g} s")
            raise StreamLostError(f"{loc.shown}: the stream ended")
        if play.first_pts is None:
            raise StreamFailedError(f"{loc.shown}: no frame could be decoded")
        rate = stream.average_rate
        self._pts_offset = play.last_pts + (1.0 / float(rate) if rate else 0.0)
        return True

    def _frame_lists(self, container: Any, stream: Any, pipe: gstreamer.Pipe | None) -> Iterator[list[Any]]:
        """What each packet decodes to ([] when it decodes to nothing or fails: counted), until the demuxer
        ends or stop(); a failed read raises StreamLostError."""
        loc, o = self.location, self.options
        packets = container.demux(stream)
        while not self._stop.is_set():
            try:
                if pipe is not None:
                    pipe.reading()
                packet = next(packets)
                if pipe is not None:
                    pipe.fed()
            except (StopIteration, av.error.EOFError):
                return
            except av.error.ExitError:
                raise StreamLostError(f"{loc.shown}: no data for {o.read_timeout_s:g} s") from None
            except (av.error.FFmpegError, OSError) as exc:
                raise StreamLostError(f"{loc.shown}: read failed: {_reason(exc)}") from None
            try:
                frames = list(packet.decode())
            except (av.error.FFmpegError, ValueError):
                self._count("errors")
                self.observer.decode_error(self.name)
                frames = []
            yield frames

    def _take(self, frame: Any, play: Playback) -> bool:
        """One decoded frame: counted, paced (a realtime file), sampled. False when stop() came meanwhile."""
        now = time.monotonic()
        play.last_frame = now
        raw = None if self.location.kind.timed_by_arrival else frame.time
        pts = float(raw) if raw is not None else now - play.start
        if play.first_pts is None:
            play.first_pts = pts
            self._first_frame(frame)
        if not self.location.kind.live:
            pts = pts - play.first_pts + self._pts_offset  # from 0, continuing across loops
            if self.options.realtime and self._stop.wait(max(0.0, play.start + pts - self._pts_offset - now)):
                return False
        play.last_pts = pts
        self._frame_in(now)
        if play.sampler.take(pts):
            self._put(frame, pts)
        return True

    def _first_frame(self, frame: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._size = (int(frame.width), int(frame.height))
            gap = now - self._gap_start if self._gap_start is not None else None
            if gap is not None:
                self._gap_total += gap
                self._gap_start = None
        if gap is not None:
            self.observer.gap_closed(self.name, gap)
        self._set_state(SourceState.RUNNING)

    def _frame_in(self, now: float) -> None:
        with self._lock:
            self._counts["in"] += 1
            self._last_frame_at = now
            self._rates[0].tick(now)
        self.observer.frame_decoded(self.name)

    def _put(self, frame: Any, pts: float) -> None:
        image = frame.to_ndarray(format=self.options.pixel_format)
        item_wall = time.time()
        dropped = False
        with self._ready:
            if not self.location.kind.live and not self.options.realtime:
                # as fast as consumed: wait for room instead of dropping (a file has no "newest" to keep up with)
                while len(self._buffer) >= self.options.buffer and not self._stop.is_set():
                    self._ready.wait(0.5)
            if len(self._buffer) >= self.options.buffer:
                self._buffer.popleft()
                self._counts["dropped"] += 1
                dropped = True
            self._buffer.append(Frame(image=image, pts=pts, wall=item_wall, seq=self._seq))
            self._seq += 1
            self._counts["sampled"] += 1
            self._rates[1].tick(time.monotonic())
            self._ready.notify_all()
        if dropped:
            self.observer.frame_dropped(self.name)
        self.observer.frame_sampled(self.name)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _set_state(self, state: SourceState, error: str | None = None) -> None:
        with self._lock:
            if self._stop.is_set() and state in (SourceState.CONNECTING, SourceState.RUNNING, SourceState.BACKOFF):
                return  # stop() has said STOPPED; a thread still finishing a read does not undo it
            changed = self._state is not state
            self._state = state
            if error is not None:
                self._last_error = error
        if changed:
            self.observer.state_changed(self.name, state, error)


def _reason(exc: BaseException) -> str:
    """FFmpeg's sentence without the address it appends (which may carry credentials)."""
    strerror = getattr(exc, "strerror", None)
    text = strerror if isinstance(strerror, str) and strerror else str(exc)
    return mask(_one_line(text))


def _one_line(text: str) -> str:
    return " ".join(text.split())
