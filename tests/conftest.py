"""Shared fixtures: the real models and photos of ../shared, and the default pack from PyPI."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from facefleet.engine.decode import decode_image
from facefleet.engine.pipeline import FaceEngine
from facefleet.models.manifest import load_manifest
from facefleet.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SHARED_MODELS = SHARED / "models"
SHARED_IMAGES = SHARED / "images"
DEFAULT_PACK_DIR = Path(os.environ.get("FACEFLEET_TEST_DEFAULT_PACK", ROOT / ".cache" / "default-pack"))
# The command line reads an installed appliance's /etc/facefleet/service.env: never in the suite
# (its processes, in-process CLI calls and Ansible runs inherit this); tests that exercise the
# lookup point it at their own file.
os.environ["FACEFLEET_APPLIANCE_ENV"] = "none"

# Who is in each one-face photo of ../shared/images (its README): same-person pairs share a name.
IDENTITIES = {
    "person_a_1.jpg": "macron",
    "person_a_2.jpg": "macron",
    "person_b_1.jpg": "ardern",
    "person_b_2.jpg": "ardern",
    "impostor_1.jpg": "obama",
    "obama.jpg": "obama",
    "obama2.jpg": "obama",
    "obama3.jpg": "obama",
    "biden.jpg": "biden",
    "impostor_2.jpg": "sunak",
}
# Faces in each photo of ../shared/images (its README); skimage.data.astronaut() has one more.
FACE_COUNTS = {**dict.fromkeys(IDENTITIES, 1), "two_people.jpg": 2, "solvay_conference_1927.png": 29}


@pytest.hookimpl(tryfirst=True)  # before -m selects: the mark must be there when it does
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Ansible tests provision this machine or test hosts as root and take minutes: they belong to the full
    suite only, so each is also `slow` and `pytest -m "not slow"` (the everyday loop) leaves them out."""
    for item in items:
        if item.get_closest_marker("ansible") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


def _require_shared() -> None:
    if not SHARED_MODELS.is_dir() or not SHARED_IMAGES.is_dir():
        pytest.skip(f"../shared (real models and photos) not found at {SHARED}")


@pytest.fixture(scope="session")
def shared_models() -> Path:
    _require_shared()
    return SHARED_MODELS


@pytest.fixture(scope="session")
def images_dir() -> Path:
    _require_shared()
    return SHARED_IMAGES


@pytest.fixture(scope="session")
def image_bytes(images_dir: Path):
    def read(name: str) -> bytes:
        return (images_dir / name).read_bytes()

    return read


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def labelled_tree(images: Path, target: Path) -> Path:
    """`images` as the INT8 accuracy gate reads labels: the photos of a known person in `target/<person>/`
    (symlinks), the others at the top. Benchmarks use it too."""
    for photo in sorted(images.iterdir()):
        if photo.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        place = target / IDENTITIES[photo.name] if photo.name in IDENTITIES else target
        place.mkdir(parents=True, exist_ok=True)
        if not (place / photo.name).exists():
            (place / photo.name).symlink_to(photo.resolve())
    return target


@pytest.fixture(scope="session")
def labelled_images(images_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_tree(images_dir, tmp_path_factory.mktemp("labelled"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("facefleet-cache")


@pytest.fixture(scope="session")
def make_settings(shared_models: Path, cache_dir: Path):
    def make(**overrides) -> Settings:
        values = {"models_dir": str(shared_models), "cache_dir": str(cache_dir), "providers": ("cpu",), "auth": "off"}
        values.update(overrides)
        return Settings.of(**values)

    return make


@pytest.fixture(scope="module", autouse=True)
def root_logging_restored():
    """create_app configures the root logger (api/logs.py) with a handler on the stderr of that moment; a
    module's apps must not leave it to the next module, whose capture may see its lines or whose background
    threads (the heap trimmer) would log into a stream pytest has closed since."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def installed_appliance_untouched():
    """The suite must leave an appliance `bash scripts/run.sh` installed exactly as it was (issue 17):
    same processes, listeners, galleries, keys and files before and after the whole run. Checked only where
    one is installed; FACEFLEET_TEST_INSTALLED_APPLIANCE=1 (CI, after run.sh) requires a running one."""
    from . import appliance

    if os.environ.get("FACEFLEET_TEST_INSTALLED_APPLIANCE") == "1" and not appliance.running():
        pytest.fail("FACEFLEET_TEST_INSTALLED_APPLIANCE=1 but no running appliance: run `bash scripts/run.sh` first")
    if not appliance.installed():
        yield
        return
    before = appliance.snapshot()
    yield
    changed = appliance.differences(before, appliance.snapshot())
    assert not changed, "the tests changed the installed appliance:\n" + "\n".join(changed[:40])


@pytest.fixture(scope="session")
def default_pack(cache_dir: Path) -> Path:
    """The licence-clean default pack, pulled for real from PyPI once and kept in .cache/."""
    from facefleet.models.pull import pull

    manifest = load_manifest()
    for name in (manifest.default_detection, manifest.default_recognition):
        pull(manifest.get(name), str(DEFAULT_PACK_DIR), str(cache_dir))
    return DEFAULT_PACK_DIR


@pytest.fixture(scope="session")
def engine_factory(make_settings):
    engines: dict[tuple, FaceEngine] = {}

    def make(det: str, rec: str, **overrides) -> FaceEngine:
        key = (det, rec, *sorted(overrides.items()))
        if key not in engines:
            engines[key] = FaceEngine.from_settings(make_settings(det_name=det, rec_name=rec, **overrides))
        return engines[key]

    return make


def decode_file(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes())
