"""Test media the stream tests share: videos made from the shared photos, an RTSP server and an MJPEG server.

- `make_video`: an H.264 MP4 (ffmpeg, Debian's) of photos each shown for a few seconds, letterboxed to 640 x 480,
  with black gaps between the appearances; `Video.appearances` says which photo is on screen when. Cached under
  .cache/test-media by a digest of the photos and parameters (never committed).
- `make_synthetic`: a moving 1080p test pattern with sensor-like noise, for decode measurements.
- `RtspServer`: GStreamer's RTSP server (tests/rtsp_server.py under Debian's /usr/bin/python3) serving a video
  in a loop on a free loopback port; stop() and start() again on the same port, as a camera rebooting.
- `MjpegServer`: a threaded HTTP server writing multipart/x-mixed-replace JPEG frames (an IP camera's MJPEG),
  optionally behind HTTP basic auth.
Every server runs in its own session and ends with stop() (the tests' fixtures call it in `finally`).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.server import Process, free_port

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "test-media"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's: it has python3-gi and the GStreamer typelibs
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SIZE = (640, 480)


@dataclass(frozen=True)
class Appearance:
    photo: Path
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Video:
    path: Path
    fps: int
    size: tuple[int, int]
    duration_s: float
    appearances: tuple[Appearance, ...]

    def at(self, t: float) -> Path | None:
        """The photo on screen at `t` seconds into one pass (None: a gap)."""
        t = t % self.duration_s
        return next((a.photo for a in self.appearances if a.start_s <= t < a.end_s), None)


def letterboxed(photo: Path, size: tuple[int, int] = SIZE) -> np.ndarray:
    """The photo as the video shows it: scaled to fit `size`, centred on black (RGB uint8), as ffmpeg's
    scale=...:force_original_aspect_ratio=decrease,pad=... does."""
    width, height = size
    with Image.open(photo) as opened:
        image = opened.convert("RGB")
        scale = min(width / image.width, height / image.height)
        w, h = int(image.width * scale) // 2 * 2, int(image.height * scale) // 2 * 2
        canvas = Image.new("RGB", size)
        canvas.paste(image.resize((w, h), Image.Resampling.BICUBIC), ((width - w) // 2, (height - h) // 2))
        return np.asarray(canvas)


def make_video(
    photos: Sequence[Path],
    *,
    seconds: float = 2.0,
    gap_s: float = 1.0,
    fps: int = 10,
    size: tuple[int, int] = SIZE,
    cache: Path = CACHE,
) -> Video:
    """Each photo on screen for `seconds`, a black gap of `gap_s` before each and at the end; H.264 (x264,
    yuv420p, a key frame every second) at `fps`. Built once per distinct input (the photos' bytes and the
    parameters), then read from the cache."""
    digest = hashlib.sha256(repr((float(seconds), float(gap_s), int(fps), tuple(size))).encode())
    for photo in photos:
        digest.update(photo.name.encode() + photo.read_bytes())
    out = cache / f"photos-{digest.hexdigest()[:16]}.mp4"
    appearances, t = [], gap_s
    for photo in photos:
        appearances.append(Appearance(photo, t, t + seconds))
        t += seconds + gap_s
    video = Video(out, fps, size, t, tuple(appearances))
    if out.exists():
        return video
    width, height = size
    args: list[str] = []
    filters, labels = [], []
    blank = f"color=c=black:s={width}x{height}:r={fps}:d={gap_s}"
    for index, photo in enumerate(photos):
        args += ["-f", "lavfi", "-i", blank, "-loop", "1", "-framerate", str(fps), "-t", str(seconds), "-i", str(photo)]
        fit = f"scale={width}:{height}:force_original_aspect_ratio=decrease,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2"
        filters.append(f"[{2 * index}:v]format=yuv420p,setsar=1[g{index}]")
        filters.append(f"[{2 * index + 1}:v]{fit},fps={fps},format=yuv420p,setsar=1[p{index}]")
        labels += [f"[g{index}]", f"[p{index}]"]
    args += ["-f", "lavfi", "-i", blank]
    filters.append(f"[{2 * len(photos)}:v]format=yuv420p,setsar=1[end]")
    labels.append("[end]")
    graph = ";".join(filters) + ";" + "".join(labels) + f"concat=n={len(labels)}:v=1:a=0[out]"
    _ffmpeg([*args, "-filter_complex", graph, "-map", "[out]", *_x264(fps, "stillimage")], out)
    return video


def make_synthetic(
    seconds: float = 10, size: tuple[int, int] = (1920, 1080), fps: int = 25, cache: Path = CACHE
) -> Path:
    """A moving test pattern with temporal noise (a camera's sensor noise keeps the bitrate realistic), H.264
    at about 4 Mbit/s: what the decode measurements read."""
    width, height = size
    out = cache / f"synthetic-{width}x{height}-{fps}fps-{seconds:g}s.mp4"
    if not out.exists():
        source = f"testsrc2=s={width}x{height}:r={fps}:d={seconds},noise=alls=12:allf=t,format=yuv420p"
        _ffmpeg(
            ["-f", "lavfi", "-i", source, *_x264(fps, "film"), "-b:v", "4M", "-maxrate", "4M", "-bufsize", "8M"], out
        )
    return out


def _x264(fps: int, tune: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-tune", tune, "-g", str(fps), "-pix_fmt", "yuv420p"]


def _ffmpeg(args: list[str], out: Path) -> None:
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is not installed (Debian package ffmpeg)")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.mp4")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *args, "-movflags", "+faststart", str(partial)],
        check=True,
        capture_output=True,
    )
    partial.replace(out)


def rtsp_available() -> str | None:
    """None when GStreamer's RTSP server can run here, else what is missing."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer; "
        "Gst.init(None); assert Gst.ElementFactory.find('rtph264pay') and Gst.ElementFactory.find('qtdemux')"
    )
    done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return "GStreamer's RTSP server is missing (gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good/-bad)"
    return None


class RtspServer:
    """GStreamer's RTSP server on 127.0.0.1:`port` (a free one by default) serving `video` at `mount`, looped."""

    def __init__(self, video: Path, log_dir: Path, port: int | None = None, mount: str = "/cam", loop: bool = True):
        self.video, self.log_dir, self.mount, self.loop = video, log_dir, mount, loop
        self.port = port if port is not None else free_port()
        self.process: Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def start(self, timeout: float = 20) -> RtspServer:
        self.starts += 1
        log = self.log_dir / f"rtsp-{self.port}-{self.starts}.log"
        argv = [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.video), str(self.port), self.mount]
        self.process = Process([*argv, *([] if self.loop else ["--once"])], log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"the RTSP server exited with {self.process.proc.returncode}:\n{log.read_text()}")
            if "ready" in log.read_text() and _listening(self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the RTSP server did not listen on {self.port} within {timeout} s:\n{log.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def jpeg_frames(video: Path, quality: int = 85) -> list[bytes]:
    """Every frame of `video` as JPEG bytes (decoded with PyAV, encoded with Pillow)."""
    import av

    out = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            buffer = io.BytesIO()
            frame.to_image().save(buffer, "JPEG", quality=quality)
            out.append(buffer.getvalue())
    return out


class MjpegServer:
    """An IP camera's MJPEG over HTTP: GET `/stream.mjpg` answers multipart/x-mixed-replace, one JPEG part per
    frame at `fps`, looping over `frames`, until the client leaves or stop(). `auth` (user, password) requires
    HTTP basic auth. `served` counts the parts written."""

    BOUNDARY = "facefleetframe"

    def __init__(self, frames: Sequence[bytes], fps: float = 10, auth: tuple[str, str] | None = None):
        self.frames, self.fps, self.served = list(frames), fps, 0
        self.expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        self._stopping = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg server", daemon=True)

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if server.expected and self.headers.get("Authorization") != server.expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={server.BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                index, start = 0, time.monotonic()
                try:
                    while not server._stopping.is_set():
                        data = server.frames[index % len(server.frames)]
                        head = f"--{server.BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                        self.wfile.write(head.encode() + data + b"\r\n")
                        self.wfile.flush()
                        server.served += 1
                        index += 1
                        time.sleep(max(0.0, start + index / server.fps - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler
