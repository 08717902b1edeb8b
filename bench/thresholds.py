"""Per-model detection and verification thresholds, chosen on labelled photos, with their margins.

Usage: .venv/bin/python bench/thresholds.py [--images ../shared/images] [--models-dir ../shared/models]
           [--default-pack .cache/default-pack] [--json OUT] [--check]

Every model of models/manifest.yml whose file is in --models-dir or --default-pack is measured,
on the CPU, with the service's own defaults (640 x 640 letterbox, NMS IoU 0.4):

- detectors, on every photo of known face count (../shared/images/README.md, plus
  skimage.data.astronaut() when scikit-image is installed): the window of score thresholds
  (highest false score, lowest true score] in which every photo yields exactly its known count;
- recognizers, on the largest face of every one-face photo as each available detector finds it
  (identities from tests/conftest.py): every same-person pair (genuine) and every cross-identity
  pair (impostor); the margin is the lowest genuine score minus the highest impostor score.

The rule that turns a window into a threshold is `choose` (docs/models.md states it). --check
exits 1 when a manifest threshold differs from the one chosen here, so the manifest cannot drift
from its evidence.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line  # noqa: E402
from facefleet.app.extract import ExtractRequest, extract  # noqa: E402
from facefleet.app.faces import largest  # noqa: E402
from facefleet.engine.decode import decode_image  # noqa: E402
from facefleet.engine.loader import load_model  # noqa: E402
from facefleet.engine.pipeline import FaceEngine  # noqa: E402
from facefleet.engine.recognizer import Recognizer  # noqa: E402
from facefleet.models.manifest import ModelSpec, load_manifest  # noqa: E402
from facefleet.settings import Settings  # noqa: E402
from tests.conftest import FACE_COUNTS, IDENTITIES  # noqa: E402

ASTRONAUT = "skimage.data.astronaut()"  # one face (Eileen Collins), a further identity
# Thresholds the models' publishers state, per family; a chosen threshold is never below one of
# these unless the published one would lose labelled faces (then the table says so).
PUBLISHED = {
    "yunet": (0.9, "OpenCV FaceDetectorYN / OpenCV Zoo demo score_threshold"),
    "scrfd": (0.5, "InsightFace SCRFD det_thresh"),
    "sface": (0.363, "OpenCV Zoo SFace cosine threshold"),
}
# A false face or impostor seen outside the labelled set (issue 17), per model: a threshold inside
# the labelled window is raised to reject it too.
OUTSIDE = {"yunet_2023mar_int8bq": (0.71, "issue 17: close-up portrait, 2 false faces below 0.71")}
FLOOR = 0.02  # detections are scored down to here; a lower false score cannot move the window


@dataclass
class Row:
    """One model's evidence and the threshold chosen from it."""

    model: str
    task: str
    low: float  # highest false score (detection) / impostor score (recognition)
    high: float  # lowest true score / genuine score
    threshold: float | None
    accepted: str  # true faces found / genuine pairs accepted
    false: str  # false faces kept / impostor pairs accepted
    margin: float
    rule: str
    manifest: float | None
    labelled: str


def choose(low: float, high: float, spec: ModelSpec) -> tuple[float | None, str]:
    """Midpoint of the separating window (low, high], raised to the publisher's threshold and to
    any outside evidence when those lie inside the window; None when nothing separates."""
    if high <= low:
        return None, "no threshold separates the labelled set"
    value, notes = (low + high) / 2, ["midpoint"]
    published = PUBLISHED.get(spec.family)
    if published and published[0] > value:
        if published[0] <= high:
            value, notes = published[0], [f"published {published[0]} ({published[1]})"]
        else:
            notes.append(f"published {published[0]} ({published[1]}) would lose labelled faces or pairs")
    outside = OUTSIDE.get(spec.name)
    if outside and value < outside[0] <= high:
        value = outside[0]
        notes.append(f"raised to {outside[0]} ({outside[1]})")
    for digits in (2, 3, 4):
        if low < round(value, digits) <= high:
            return round(value, digits), "; ".join(notes)
    return value, "; ".join(notes)


def photos(images: Path) -> dict[str, np.ndarray]:
    """RGB photos of known face count; the astronaut only when scikit-image is installed."""
    out = {name: decode_image((images / name).read_bytes()) for name in FACE_COUNTS}
    try:
        from skimage import data
    except ImportError:
        print("scikit-image not installed: skimage.data.astronaut() left out", file=sys.stderr)
    else:
        out[ASTRONAUT] = data.astronaut()
    return out


def known_count(name: str) -> int:
    return 1 if name == ASTRONAUT else FACE_COUNTS[name]


def settings_for(folder: Path, cache: str, name: str) -> Settings:
    """The service's defaults, on the CPU, with room for every candidate face of the Solvay photo."""
    return Settings.of(models_dir=str(folder), cache_dir=cache, providers=("cpu",), max_faces=300, det_name=name)


def measure_detector(spec: ModelSpec, engine: FaceEngine, images: dict[str, np.ndarray]) -> Row:
    """Scores of every photo once, at FLOOR: greedy NMS keeps a box only for higher-scored ones,
    so the faces at threshold t are exactly those of this run scoring t or more."""
    scores = {name: np.sort(engine.detector.detect([img], FLOOR)[0].scores)[::-1] for name, img in images.items()}
    low = max(float(s[known_count(n)]) if len(s) > known_count(n) else FLOOR for n, s in scores.items())
    high = min(float(s[known_count(n) - 1]) if len(s) >= known_count(n) else 0.0 for n, s in scores.items())
    threshold, why = choose(low, high, spec)
    at = threshold if threshold is not None else engine.detector.threshold
    kept = {n: int((s >= at).sum()) for n, s in scores.items()}
    found = sum(min(k, known_count(n)) for n, k in kept.items())
    extra = sum(max(0, k - known_count(n)) for n, k in kept.items())
    total = sum(known_count(n) for n in images)
    return Row(
        spec.name,
        "detection",
        round(low, 4),
        round(high, 4),
        threshold,
        f"{found}/{total}",
        str(extra),
        round(high - low, 4),
        why,
        spec.det_threshold,
        f"{len(images)} photos, {total} faces",
    )


def largest_crops(engine: FaceEngine, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    one_face = {n: img for n, img in images.items() if n == ASTRONAUT or n in IDENTITIES}
    results = extract(engine, list(one_face.values()), ExtractRequest(embed=False, keep_crops=True)).images
    crops = {}
    for name, result in zip(one_face, results, strict=True):
        crop = result.faces[largest(result.faces)].crop if result.faces else None
        if crop is not None:
            crops[name] = crop
    return crops


def measure_recognizer(spec: ModelSpec, recognizer: Recognizer, crops_by_detector: dict[str, dict]) -> Row:
    """Genuine and impostor cosine scores over the crops of every detector."""
    identity = {**IDENTITIES, ASTRONAUT: "collins"}
    genuine: list[float] = []
    impostor: list[float] = []
    for crops in crops_by_detector.values():
        vectors = dict(zip(crops, recognizer.embed(list(crops.values()))[0], strict=True))
        for a, b in itertools.combinations(sorted(vectors), 2):
            (genuine if identity[a] == identity[b] else impostor).append(float(vectors[a] @ vectors[b]))
    low, high = max(impostor), min(genuine)
    threshold, why = choose(low, high, spec)
    at = threshold if threshold is not None else recognizer.threshold
    accepted = sum(s >= at for s in genuine)
    false = sum(s >= at for s in impostor)
    return Row(
        spec.name,
        "recognition",
        round(low, 4),
        round(high, 4),
        threshold,
        f"{accepted}/{len(genuine)}",
        f"{false}/{len(impostor)}",
        round(high - low, 4),
        why,
        spec.verify_threshold,
        f"{len(genuine)} genuine + {len(impostor)} impostor pairs, crops of {len(crops_by_detector)} detectors",
    )


def available(folders: list[Path]) -> dict[str, tuple[ModelSpec, Path]]:
    """Every manifest model whose file is in one of the folders (the first one wins)."""
    found = {}
    for spec in load_manifest().models.values():
        folder = next((f for f in folders if (f / spec.file).is_file()), None)
        if folder is not None:
            found[spec.name] = (spec, folder)
    return found


def markdown(rows: list[Row]) -> str:
    head = "| model | task | threshold | true accepted | false accepted | margin (window) | labelled set |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        window = f"{r.margin:+.4f} ({r.low:.4f}, {r.high:.4f}]"
        lines.append(f"| `{r.model}` | {r.task} | {r.threshold} | {r.accepted} | {r.false} | {window} | {r.labelled} |")
    return "\n".join(lines)


def run(images_dir: Path, folders: list[Path], cache: str) -> list[Row]:
    images = photos(images_dir)
    models = available(folders)
    rows, crops = [], {}
    for name, (spec, folder) in models.items():
        if spec.task == "detection":
            engine = FaceEngine.from_settings(settings_for(folder, cache, name), with_recognizer=False)
            rows.append(measure_detector(spec, engine, images))
            crops[name] = largest_crops(engine, images)
    for spec, folder in models.values():
        if spec.task == "recognition":
            settings = settings_for(folder, cache, "")
            rows.append(measure_recognizer(spec, Recognizer(spec, load_model(spec, settings)[0], settings), crops))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "images")
    parser.add_argument("--models-dir", type=Path, default=ROOT.parent / "shared" / "models")
    parser.add_argument("--default-pack", type=Path, default=ROOT / ".cache" / "default-pack")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 when the manifest differs from the choice")
    args = parser.parse_args()
    missing = [str(p) for p in (args.images, args.default_pack) if not p.is_dir()]
    if missing:
        print(f"not found: {', '.join(missing)} (pull the default pack: facefleet models pull)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="facefleet-thresholds-") as cache:
        rows = run(args.images, [args.default_pack, args.models_dir], cache)
    print(markdown(rows))
    for r in rows:
        print(f"{r.model}: {r.rule}; manifest {r.manifest}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    drift = [r.model for r in rows if r.manifest != r.threshold]
    if args.check and drift:
        print(f"manifest thresholds differ from the chosen ones: {', '.join(drift)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(one_line("thresholds", main))
