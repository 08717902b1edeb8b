"""Gender/age and mask classifiers (InsightFace-REST's GA_NAME, MASK_DETECTOR) on every face's aligned crop:
the answers decoded as InsightFace reads them, the synthetic models (facefleet.models.synth_zoo: the families'
exact inputs and outputs, random weights) run through the engine and the served /extract with keys on, and a
model of the wrong kind refused at start-up with one line."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from facefleet.api import create_app
from facefleet.engine.attributes import gender_age
from facefleet.engine.pipeline import FaceEngine
from facefleet.errors import ConfigError, ModelRoleError
from facefleet.models.manifest import load_manifest
from facefleet.models.synth import synthesize
from facefleet.models.verify import verify_model
from facefleet.settings import Settings

KEY = "attributes-test-key-0001"
ATTRIBUTE_MODELS = ("genderage_v1", "mask_detector", "mask_detector112")


@pytest.fixture(scope="module")
def models(default_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default pack beside the synthetic attribute models, in one models folder."""
    folder = tmp_path_factory.mktemp("attribute-models")
    for file in default_pack.glob("*.onnx"):
        (folder / file.name).symlink_to(file)
    for name in ATTRIBUTE_MODELS:
        synthesize(name, folder / load_manifest().get(name).file)
    return folder


def settings(models: Path, cache_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"models_dir": str(models), "cache_dir": str(cache_dir), "providers": ("cpu",)}
    return Settings.of(**{**values, "auth": "off", **overrides})


def test_gender_and_age_are_read_as_insightface_reads_them() -> None:
    answer = np.zeros((2, 202), np.float32)
    answer[0, :2] = (0.2, 0.8)  # male
    answer[1, :2] = (0.9, 0.1)  # female
    pairs = answer[:, 2:].reshape(2, 100, 2)
    pairs[0, :37] = (0.0, 1.0)  # 37 "yes" answers: 37 years
    pairs[0, 37:] = (1.0, 0.0)
    pairs[1, :] = (1.0, 0.0)  # none: 0
    gender, age = gender_age(answer)
    assert gender.tolist() == [1, 0] and age.tolist() == [37, 0]


def test_the_synthetic_models_have_their_families_io_and_verify(models: Path) -> None:
    for name in ATTRIBUTE_MODELS:
        assert verify_model(load_manifest().get(name), str(models)) == [], name


@pytest.mark.parametrize("mask_name", ["mask_detector", "mask_detector112"])
def test_the_engine_fills_gender_age_and_mask_on_every_face(
    models: Path, cache_dir: Path, image_bytes, mask_name: str
) -> None:
    engine = FaceEngine.from_settings(settings(models, cache_dir, ga_name="genderage_v1", mask_name=mask_name))
    [result] = engine.process([image_bytes("two_people.jpg")], attributes=("genderage", "mask"))
    assert len(result.faces) == 2
    for face in result.faces:
        assert face.gender in (0, 1) and face.age is not None and 0 <= face.age <= 100
        assert face.mask_probs is not None and sum(face.mask_probs) == pytest.approx(1.0, abs=1e-4)
        assert face.crop is None  # crops are not kept unless asked for
    [plain] = engine.process([image_bytes("two_people.jpg")])
    assert all(f.gender is None and f.mask_probs is None for f in plain.faces)  # only when asked


def test_served_extract_answers_them_with_keys_on(models: Path, cache_dir: Path, image_bytes, tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"{KEY}\n")
    wanted = settings(models, cache_dir, auth="on", api_keys_file=str(keys), ga_name="genderage_v1")
    client = create_app(wanted.replace(mask_name="mask_detector")).test_client()
    body = {"images": {"data": [base64.b64encode(image_bytes("obama.jpg")).decode()]}, "extract_ga": True}
    answer = client.post("/extract", json={**body, "detect_masks": True}, headers={"X-API-Key": KEY}).get_json()
    face = answer["data"][0]["faces"][0]
    assert face["gender"] in (0, 1) and 0 <= face["age"] <= 100 and "ga_error" not in face
    assert isinstance(face["mask"], bool) and set(face["mask_probs"]) == {"mask", "no_mask"}
    assert "mask_error" not in face
    unasked = client.post("/extract", json=body, headers={"X-API-Key": KEY}).get_json()["data"][0]["faces"][0]
    assert unasked["mask"] is None and unasked["gender"] in (0, 1)
    checks = client.get("/health", headers={"X-API-Key": KEY}).get_json()["checks"]
    assert checks["genderage_v1"]["ok"] and checks["mask_detector"]["ok"]  # warmed and checked like the others
    info = client.get("/info", headers={"X-API-Key": KEY}).get_json()["models"]
    assert info["ga_name"] == "genderage_v1" and info["mask_detector"] == "mask_detector"
    assert info["genderage"]["task"] == "genderage" and info["mask"]["active_provider"] == "cpu"


def test_a_model_of_another_kind_is_refused_with_one_line(models: Path, cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model mask_detector is a mask model, not a genderage model"):
        FaceEngine.from_settings(settings(models, cache_dir, ga_name="mask_detector"))
    wrong = tmp_path / "models"
    wrong.mkdir()
    for file in models.iterdir():
        (wrong / file.name).symlink_to(file.resolve())
    (wrong / "genderage_v1.onnx").unlink()
    synthesize("mask_detector", wrong / "genderage_v1.onnx")  # a mask classifier's file in its place
    with pytest.raises(ModelRoleError, match=r"does not fit the gender/age model's place"):
        FaceEngine.from_settings(settings(wrong, cache_dir, ga_name="genderage_v1", verify_models=False))


ZOO = [name for name, spec in load_manifest().models.items() if not spec.sources and not spec.sha256]


@pytest.mark.parametrize("name", ZOO)
def test_a_real_zoo_file_matches_its_manifest_layout_when_present(shared_models: Path, name: str) -> None:
    """InsightFace-REST's own files are not here; when one is put in ../shared/models, its inputs and outputs
    must be what the manifest (and the synthetic stand-in tested above) say."""
    spec = load_manifest().get(name)
    if not (shared_models / spec.file).is_file():
        pytest.skip(f"{spec.file} is not in {shared_models} (InsightFace-REST's zoo, not redistributable here)")
    assert verify_model(spec, str(shared_models)) == []
