"""Thresholds belong to each model: the manifest's value is what runs unless a setting or request
overrides it, and on the labelled photos it yields exactly the known faces and the right verdicts."""

from __future__ import annotations

import base64
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facefleet.api import create_app
from facefleet.errors import ManifestError
from facefleet.models.manifest import load_manifest
from facefleet.models.thresholds import DEFAULT_DET_THRESHOLD, DEFAULT_VERIFY_THRESHOLD, det_threshold, verify_threshold
from facefleet.settings import Settings

from .conftest import FACE_COUNTS, IDENTITIES, SHARED_MODELS, decode_file

KEY = "thresholds-test-key"
DEFAULT_DET = "yunet_2023mar_int8bq"
DEFAULT_REC = "sface_2021dec_int8bq"
# Every detector of the manifest whose file is here: the default pack's, and those of ../shared/models.
DETECTORS = [DEFAULT_DET, "scrfd_500m", "scrfd_2.5g", "scrfd_500m_bnkps", "yunet_2026may"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def keyed_app(default_pack: Path, cache_dir: Path):
    """The service as an appliance runs it: default pack, keys on, no threshold configured."""
    settings = Settings.of(models_dir=str(default_pack), cache_dir=str(cache_dir), providers=("cpu",), api_keys=(KEY,))
    return create_app(settings).test_client()


def test_the_rule_is_request_then_setting_then_manifest_then_default():
    spec = load_manifest().get(DEFAULT_DET)
    assert det_threshold(spec, None) == spec.det_threshold == 0.71
    assert det_threshold(spec, 0.6) == 0.6
    assert det_threshold(spec, 0.6, requested=0.0) == 0.0  # 0 is a value, not "unset"
    assert det_threshold(replace(spec, det_threshold=None), None) == DEFAULT_DET_THRESHOLD
    rec = load_manifest().get(DEFAULT_REC)
    assert verify_threshold(rec, None) == rec.verify_threshold == 0.46
    assert verify_threshold(rec, 0.5, requested=0.3) == 0.3
    assert verify_threshold(replace(rec, verify_threshold=None), None) == DEFAULT_VERIFY_THRESHOLD


def test_settings_leave_thresholds_to_the_model_unless_set():
    assert Settings.from_env({}).engine.det_threshold is None and Settings.from_env({}).engine.verify_threshold is None
    settings = Settings.from_env({"FACEFLEET_DET_THRESH": "0.8", "FACEFLEET_VERIFY_THRESH": "0.5"})
    assert (settings.engine.det_threshold, settings.engine.verify_threshold) == (0.8, 0.5)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"det_threshold": 1.5}, "expected a number from 0 to 1"),
        ({"det_threshold": "high"}, "expected a number from 0 to 1"),
        ({"verify_threshold": 0.4}, "verify_threshold belongs to recognition models"),
    ],
)
def test_manifest_rejects_a_bad_threshold(tmp_path: Path, entry: dict, message: str):
    import yaml

    raw = yaml.safe_load(Path(load_manifest().path).read_text())
    raw["models"][DEFAULT_DET].update(entry)
    path = tmp_path / "manifest.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ManifestError, match=message):
        load_manifest(str(path))


def test_service_uses_the_manifest_thresholds_when_nothing_overrides(keyed_app, image_bytes):
    """At the old fixed 0.5 YuNet int8 kept a 30th, false face on the Solvay photo (score 0.63)."""
    headers = {"X-API-Key": KEY}
    spec = load_manifest()
    defaults = keyed_app.get("/info", headers=headers).get_json()["defaults"]
    assert defaults["det_threshold"] == spec.get(DEFAULT_DET).det_threshold
    assert defaults["verify_threshold"] == spec.get(DEFAULT_REC).verify_threshold
    solvay = {"images": {"data": [_b64(image_bytes("solvay_conference_1927.png"))]}, "extract_embedding": False}
    answer = keyed_app.post("/extract", json=solvay, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    assert len(answer.get_json()["data"][0]["faces"]) == 29
    lower = keyed_app.post("/extract", json={**solvay, "threshold": 0.5}, headers=headers).get_json()
    assert len(lower["data"][0]["faces"]) == 30  # a request's own threshold still wins
    pair = {"images": {"data": [_b64(image_bytes("obama2.jpg")), _b64(image_bytes("biden.jpg"))]}}
    verdict = keyed_app.post("/verify", json=pair, headers=headers).get_json()
    assert verdict["threshold"] == spec.get(DEFAULT_REC).verify_threshold and verdict["same_person"] is False


def test_the_operators_settings_win_over_the_manifest_everywhere(default_pack, cache_dir, image_bytes):
    """FACEFLEET_DET_THRESH / FACEFLEET_VERIFY_THRESH reach every endpoint: a call site with its
    own fallback to the model's value would ignore them."""
    environ = {"FACEFLEET_DET_THRESH": "0.5", "FACEFLEET_VERIFY_THRESH": "0.3"}
    settings = Settings.from_env(
        environ, models_dir=str(default_pack), cache_dir=str(cache_dir), providers=("cpu",), api_keys=(KEY,)
    )
    client, headers = create_app(settings).test_client(), {"X-API-Key": KEY}
    defaults = client.get("/info", headers=headers).get_json()["defaults"]
    assert (defaults["det_threshold"], defaults["verify_threshold"]) == (0.5, 0.3)
    solvay = {"images": {"data": [_b64(image_bytes("solvay_conference_1927.png"))]}, "extract_embedding": False}
    assert len(client.post("/extract", json=solvay, headers=headers).get_json()["data"][0]["faces"]) == 30
    pair = {"images": {"data": [_b64(image_bytes("obama2.jpg")), _b64(image_bytes("biden.jpg"))]}}
    verdict = client.post("/verify", json=pair, headers=headers).get_json()
    assert verdict["threshold"] == 0.3 and verdict["same_person"] is True  # 0.3245: an impostor let through


@pytest.fixture(scope="module")
def labelled(images_dir: Path, astronaut: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    photos = {name: (decode_file(images_dir / name), count) for name, count in FACE_COUNTS.items()}
    photos["astronaut"] = (astronaut, 1)
    return photos


def _engine(request, engine_factory, det: str, rec: str):
    spec = load_manifest().get(det)
    in_pack = not (SHARED_MODELS / spec.file).is_file()
    overrides = {"models_dir": str(request.getfixturevalue("default_pack"))} if in_pack else {}
    return engine_factory(det, rec, **overrides)


@pytest.mark.parametrize("det", DETECTORS)
def test_each_detector_finds_exactly_the_known_faces_at_its_manifest_threshold(request, engine_factory, labelled, det):
    rec = DEFAULT_REC if det == DEFAULT_DET else "mobilefacenet"
    engine = _engine(request, engine_factory, det, rec)
    assert engine.detector.threshold == load_manifest().get(det).det_threshold is not None
    results = engine.process([image for image, _ in labelled.values()], embed=False)
    found = {name: len(r.faces) for name, r in zip(labelled, results, strict=True)}
    assert found == {name: count for name, (_, count) in labelled.items()}


@pytest.mark.parametrize(("det", "rec"), [(DEFAULT_DET, DEFAULT_REC), ("scrfd_2.5g", "mobilefacenet")])
def test_recognizer_at_its_manifest_threshold_accepts_every_genuine_pair_only(
    request, engine_factory, labelled, det, rec
):
    engine = _engine(request, engine_factory, det, rec)
    identity = {**IDENTITIES, "astronaut": "collins"}
    results = engine.process([labelled[name][0] for name in identity])
    vectors = {name: max(r.faces, key=lambda f: f.size).embedding for name, r in zip(identity, results, strict=True)}
    threshold = engine.recognizer.threshold
    assert threshold == load_manifest().get(rec).verify_threshold
    genuine, impostor = [], []
    for a, b in itertools.combinations(sorted(vectors), 2):
        (genuine if identity[a] == identity[b] else impostor).append(float(vectors[a] @ vectors[b]))
    assert (len(genuine), len(impostor)) == (8, 47)
    assert all(s >= threshold for s in genuine), sorted(genuine)[:3]
    assert all(s < threshold for s in impostor), sorted(impostor)[-3:]


@pytest.mark.slow
def test_the_manifest_holds_the_thresholds_the_documented_rule_chooses(default_pack: Path):
    """bench/thresholds.py --check: each manifest value is what docs/models.md's rule picks on the labelled set."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, str(root / "bench" / "thresholds.py"), "--check", "--default-pack", str(default_pack)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=root,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
