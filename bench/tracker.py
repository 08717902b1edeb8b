"""Per-frame cost of the stream face tracker (facefleet.streams.tracker) with a crowd in view.

Usage: .venv/bin/python bench/tracker.py [--number 2000] [--models-dir ../shared/models]

The real detector (scrfd_2.5g) finds the 29 faces of the Solvay photo in 8 frames of a view panning 40 px
and zooming 3 % per frame; `FaceTracker.update` is then timed (timeit) over those frames played back and
forth at 5 fps, so its 29 tracks stay alive. Only the tracker is timed, not the detector.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_file, require_models  # noqa: E402
from facefleet.engine.decode import decode_image  # noqa: E402
from facefleet.engine.pipeline import FaceEngine  # noqa: E402
from facefleet.settings import Settings  # noqa: E402
from facefleet.streams.tracker import FaceTracker, TrackerConfig  # noqa: E402

DETECTOR = "scrfd_2.5g"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=2000, help="updates per timing (best of 5 is shown)")
    parser.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"))
    parser.add_argument("--photo", default=str(ROOT.parent / "shared" / "images" / "solvay_conference_1927.png"))
    args = parser.parse_args()
    require_models(args.models_dir, (DETECTOR, "mobilefacenet"), verify=False)  # only the detector is opened
    photo = decode_image(require_file(args.photo, "--photo").read_bytes())
    settings = Settings.of(models_dir=args.models_dir, providers=("cpu",), det_name=DETECTOR)
    engine = FaceEngine.from_settings(settings, with_recognizer=False)
    frames = []
    for k in range(8):
        scale = 0.55 * (1 + 0.03 * k)
        matrix = np.array([[scale, 0, -40 * k], [0, scale, -15 * k]], np.float32)
        view = cv2.warpAffine(photo, matrix, (1600, 1100), borderValue=(90, 90, 90))
        found = engine.detector.detect([view], threshold=TrackerConfig().low_score)[0]
        frames.append((found.boxes, found.scores))
    played = frames + frames[::-1]
    tracker = FaceTracker()
    count = [0]

    def step() -> None:
        boxes, scores = played[count[0] % len(played)]
        tracker.update(boxes, scores, count[0] * 0.2)
        count[0] += 1

    for _ in range(len(played)):
        step()
    runs = sorted(timeit.repeat(step, number=args.number, repeat=5))
    faces = [len(s) for _, s in frames]
    print(f"faces per frame {min(faces)}-{max(faces)}, tracks alive {tracker.active}")
    print(f"FaceTracker.update: best {runs[0] / args.number * 1e6:.0f} us, median {runs[2] / args.number * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(one_line("tracker", main))
