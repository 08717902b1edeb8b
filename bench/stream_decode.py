"""What decoding a camera costs: PyAV's software H.264 decode of a 1080p file flat out, and the CPU a
`FrameSource` spends on a 1080p RTSP stream it samples to 5 fps (every frame decoded, 5 a second converted).

    .venv/bin/python bench/stream_decode.py [--seconds 20] [--threads 1]

The video is tests/media.py's synthetic 1080p25 (moving pattern with sensor-like noise, about 4 Mbit/s); the
RTSP server is GStreamer's (tests/rtsp_server.py, its own process, not counted). CPU is this process's user +
system time (getrusage), in % of one core.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import BenchInputError, one_line  # noqa: E402
from facefleet.streams.source import FrameSource, SourceOptions  # noqa: E402
from tests.media import RtspServer, make_synthetic, rtsp_available  # noqa: E402


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decode_flat_out(video: Path, threads: int) -> tuple[int, float, float]:
    """(frames, wall s, cpu s) decoding every frame of `video` as fast as one stream decodes."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if threads != 1 else "SLICE"
        stream.codec_context.thread_count = threads
        frames, wall, cpu = 0, time.perf_counter(), cpu_s()
        for _ in container.decode(stream):
            frames += 1
        return frames, time.perf_counter() - wall, cpu_s() - cpu


def rtsp_sampled(video: Path, seconds: float, threads: int, fps: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as logs, RtspServer(video, Path(logs)) as server:
        options = SourceOptions(fps=fps, threads=threads, buffer=2)
        with FrameSource(server.url, options) as source:
            while source.get(10) is None:  # connected and decoding: measure from here
                pass
            before, wall, cpu = source.status(), time.perf_counter(), cpu_s()
            taken = 0
            end = wall + seconds
            while time.perf_counter() < end:
                taken += source.get(1) is not None  # a consumer that keeps up
            after, wall, cpu = source.status(), time.perf_counter() - wall, cpu_s() - cpu
    return {
        "decoded_fps": (after.frames_in - before.frames_in) / wall,
        "sampled_fps": (after.frames_sampled - before.frames_sampled) / wall,
        "consumed_fps": taken / wall,
        "cpu_percent": 100 * cpu / wall,
        "decode_errors": after.decode_errors,
    }


def main() -> None:
    if shutil.which("ffmpeg") is None:
        raise BenchInputError("ffmpeg is not installed (Debian package ffmpeg): it makes the 1080p video")
    missing = rtsp_available()
    if missing:
        raise BenchInputError(missing)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fps", type=float, default=5)
    args = parser.parse_args()
    video = make_synthetic(seconds=max(args.seconds, 10) + 10)
    frames, wall, cpu = decode_flat_out(video, args.threads)
    print(f"file 1080p25 H.264, {args.threads} thread(s): {frames} frames in {wall:.2f} s = {frames / wall:.0f} fps "
          f"decoded, {100 * cpu / wall:.0f}% CPU")  # fmt: skip
    result = rtsp_sampled(video, args.seconds, args.threads, args.fps)
    print(
        f"RTSP 1080p25 sampled to {args.fps:g} fps over {args.seconds:g} s: decoded {result['decoded_fps']:.1f} fps, "
        f"sampled {result['sampled_fps']:.1f}, consumed {result['consumed_fps']:.1f}, "
        f"CPU {result['cpu_percent']:.1f}% of one core, decode errors {result['decode_errors']:g}"
    )


if __name__ == "__main__":
    sys.exit(one_line("stream_decode", main))
