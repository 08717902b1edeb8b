"""1:N search and enrolment, measured.

Usage: .venv/bin/python bench/gallery.py [--identities 100000] [--dim 512] [--searches 200]
           [--models-dir ../shared/models --det scrfd_2.5g --rec mobilefacenet] [--json OUT]

Search: a gallery of N random unit identities (one face each) in the real SQLite store,
loaded into its matrix, then single-face searches (top 5): p50/p99, the matrix's memory per
identity and the process's resident memory. Import: the same gallery as a bundle, installed.
Enrolment: real photos of ../shared/images through the enrolment use case (facefleet.app.galleries,
the real detector and recognizer, then the gallery): photos per second, end to end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_dir, require_models  # noqa: E402
from facefleet.app import galleries as app  # noqa: E402
from facefleet.engine.pipeline import FaceEngine  # noqa: E402
from facefleet.galleries import bundle  # noqa: E402
from facefleet.galleries.store import GalleryStore, Recognizer  # noqa: E402
from facefleet.settings import Settings  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def synthetic_bundle(identities: int, dim: int, identity: Recognizer) -> bytes:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((identities, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    header = {"name": "big", "version": 1, "recognizer": identity.name, "recognizer_sha256": identity.sha256}
    return bundle.pack(header, [(f"id{i:07d}", {}, 1) for i in range(identities)], matrix)


def measure_search(args: argparse.Namespace, work: Path) -> dict:
    identity = Recognizer("synthetic", "0" * 64, args.dim)
    data = synthetic_bundle(args.identities, args.dim, identity)
    store = GalleryStore(work / "big.sqlite3", identity)
    start = time.perf_counter()
    app.import_bundle(store, app.ImportBundle(data))
    import_s = time.perf_counter() - start
    rss_before = rss_mib()
    start = time.perf_counter()
    index = store.index("big")
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    times = []
    for _ in range(args.searches):
        query = rng.standard_normal((1, args.dim)).astype(np.float32)
        t0 = time.perf_counter()
        store.search("big", query, 5, 0.3)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "identities": args.identities,
        "dim": args.dim,
        "bundle_mb": round(len(data) / 1e6, 1),
        "import_s": round(import_s, 2),
        "index_load_s": round(load_s, 2),
        "search_p50_ms": round(statistics.median(times), 2),
        "search_p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
        "matrix_bytes_per_identity": index.matrix.nbytes // args.identities,
        "int8_bytes_per_identity": index.coarse.nbytes // args.identities if index.coarse else 0,
        "rss_growth_mib_with_index": round(rss_mib() - rss_before, 1),
        "sqlite_bytes_per_identity": (work / "big.sqlite3").stat().st_size // args.identities,
    }


def measure_enrolment(args: argparse.Namespace, work: Path) -> dict:
    settings = Settings.of(
        models_dir=args.models_dir, det_name=args.det, rec_name=args.rec, providers=("cpu",), auth="off"
    )
    engine = FaceEngine.from_settings(settings)
    store = GalleryStore(work / "enrol.sqlite3", app.engine_identity(engine))
    app.create_gallery(store, app.CreateGallery("enrol"))
    photos = [p for p in sorted(require_dir(ROOT.parent / "shared" / "images", "the photos").glob("*.jpg"))]
    start = time.perf_counter()
    for round_ in range(args.enrol_rounds):
        for photo in photos:
            # The enrolment use case, as POST /galleries/NAME/subjects runs it (the largest face); a photo
            # without a face is counted, as before, but adds nothing.
            with contextlib.suppress(app.NothingEnrolledError):
                app.enrol(store, engine, app.Enrol("enrol", f"{photo.stem}-{round_}", images=(photo.read_bytes(),)))
    seconds = time.perf_counter() - start
    enrolled = len(photos) * args.enrol_rounds
    rate = round(enrolled / seconds, 2)
    return {"enrol_photos": enrolled, "enrol_photos_per_s": rate, "models": [args.det, args.rec]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"))
    parser.add_argument("--det", default="scrfd_2.5g")
    parser.add_argument("--rec", default="mobilefacenet")
    parser.add_argument("--enrol-rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    require_models(args.models_dir, (args.det, args.rec))
    with tempfile.TemporaryDirectory() as folder:
        report = {**measure_search(args, Path(folder)), **measure_enrolment(args, Path(folder))}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("gallery", main))
