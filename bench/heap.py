"""Where a busy worker's resident memory goes: what glibc's heap holds live against what it keeps freed.

Usage: .venv/bin/python bench/heap.py --models-dir DIR [--det scrfd_2.5g@int8] [--rec glintr100@int8]
           [--photos portraits|crowd] [--seconds 20] [--clients 4] [--slots 2]

One process, the engine of the service (no HTTP), `--clients` threads sending the shared photos through it
with at most `--slots` inside at once (the service's admission), for `--seconds`; every 20 ms it reads the
resident size (/proc) and glibc's `mallinfo2`: bytes in use, bytes in its own mappings (large buffers), and
bytes freed but kept inside the heap. No trims run meanwhile (the service's trimmer would hide the peak).
Compare allocator settings by running it under them, e.g. `MALLOC_ARENA_MAX=1` or `MALLOC_MMAP_THRESHOLD_=4194304`.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import require_dir  # noqa: E402
from facefleet.engine.pipeline import FaceEngine  # noqa: E402
from facefleet.engine.resident import rss_mib, settled_mib  # noqa: E402
from facefleet.ops.malloc import cap_arenas  # noqa: E402
from facefleet.settings import Settings  # noqa: E402
from tests.conftest import FACE_COUNTS  # noqa: E402

MIB = 2**20


FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


class MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (2.33 and newer)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_reader() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    libc = ctypes.CDLL(None)
    reader = getattr(libc, "mallinfo2", None)
    if reader is not None:
        reader.restype = MallInfo2
    return reader


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--det", default="scrfd_2.5g@int8")
    parser.add_argument("--rec", default="glintr100@int8")
    parser.add_argument("--images", default=str(ROOT.parent / "shared" / "images"))
    parser.add_argument("--photos", choices=("portraits", "crowd"), default="portraits")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    images = require_dir(args.images, "--images")
    reader = heap_reader()
    if reader is None:
        print("bench/heap.py: this C library has no mallinfo2 (glibc 2.33 or newer is needed)", file=sys.stderr)
        return 2
    cap_arenas()  # as gunicorn's master does for the service's workers
    env = {"FACEFLEET_MODELS_DIR": args.models_dir, "FACEFLEET_PROVIDERS": "cpu"}
    settings = Settings.from_env(env, det_name=args.det, rec_name=args.rec)
    engine = FaceEngine.from_settings(settings)
    names = sorted(n for n, faces in FACE_COUNTS.items() if faces == 1) if args.photos == "portraits" else None
    photos = [(images / n).read_bytes() for n in (names or ["solvay_conference_1927.png"])]
    rest = settled_mib()
    samples: list[tuple[float, float, float, float]] = []
    done = [0]
    stop = threading.Event()
    slots = threading.Semaphore(args.slots)

    def client(k: int) -> None:
        while not stop.is_set():
            with slots:
                engine.process([photos[k % len(photos)]])
            done[0] += 1
            k += 1

    def watch() -> None:
        while not stop.is_set():
            info = reader()
            samples.append((rss_mib(), info.uordblks / MIB, info.hblkhd / MIB, info.fordblks / MIB))
            time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    threads.append(threading.Thread(target=watch))
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    peak = max(samples)
    print(f"{args.det} + {args.rec}, {args.photos}, {args.clients} clients, {args.slots} slots, {args.seconds:g} s")
    in_use, mapped, kept = peak[1], peak[2], peak[3]
    print(f"resident at rest (trimmed): {rest:.0f} MiB; peak {peak[0]:.0f} MiB")
    print(f"at the peak: in use {in_use:.0f} MiB, glibc's mappings {mapped:.0f} MiB, freed but kept {kept:.0f} MiB")
    most_live, most_kept = max(s[1] + s[2] for s in samples), max(s[3] for s in samples)
    print(f"largest over the run: in use + mapped {most_live:.0f} MiB, freed but kept {most_kept:.0f} MiB")
    print(f"images/s {done[0] / args.seconds:.2f} (a shared machine's: compare settings side by side)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
