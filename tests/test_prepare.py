"""Prepared copies: the fixes each published file needs, cached, originals never touched."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from facefleet.models.manifest import load_manifest
from facefleet.models.modelfiles import sha256_file
from facefleet.models.prepare import prepare_model, prepared_path

# What onnxruntime raises for a model it refuses: its own error types, or ValueError for unfed inputs.
ORT_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.RuntimeException,
    ValueError,
)


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _prepare(name: str, models_dir, cache_dir, fixed_hw=None):
    spec = load_manifest().get(name)
    source = models_dir / spec.file
    return spec, source, prepare_model(spec, source, sha256_file(source), str(cache_dir), fixed_hw)


def test_mobilefacenet_batch_of_8_gives_8_rows_equal_to_single_runs(shared_models, tmp_path):
    _, source, prepared = _prepare("mobilefacenet", shared_models, tmp_path)
    batch = np.random.default_rng(0).uniform(-1, 1, (8, 3, 112, 112)).astype(np.float32)
    session = _session(prepared)
    out = session.run(None, {"input0": batch})[0]
    assert out.shape == (8, 128)
    singles = np.concatenate([session.run(None, {"input0": batch[i : i + 1]})[0] for i in range(8)])
    np.testing.assert_allclose(out, singles, atol=1e-4)
    with pytest.raises(ORT_ERRORS):  # the original refuses a batch: axis 0 is fixed at 1
        _session(source).run(None, {"input0": batch})


def test_scrfd_bnkps_batch_does_not_leak_the_first_image_into_the_others(shared_models, tmp_path):
    """The re-export's Resize has constant sizes [1, C, H, W]; unfixed, image 2 gets image 1's features."""
    _, _, prepared = _prepare("scrfd_500m_bnkps", shared_models, tmp_path)
    batch = np.random.default_rng(1).uniform(-1, 1, (3, 3, 640, 640)).astype(np.float32)
    session = _session(prepared)
    together = session.run(None, {"input.1": batch})
    for i in range(3):
        alone = session.run(None, {"input.1": batch[i : i + 1]})
        for a, b in zip(together, alone, strict=True):
            np.testing.assert_allclose(a[i], b[0], atol=1e-3)


def test_default_pack_files_need_their_fixes_and_run_after_them(default_pack, tmp_path):
    for name, feed in (("sface_2021dec_int8bq", (1, 3, 112, 112)), ("yunet_2023mar_int8bq", (1, 3, 640, 640))):
        spec, source, prepared = _prepare(name, default_pack, tmp_path)
        with pytest.raises(ORT_ERRORS):  # as published, onnxruntime refuses it (load or first run)
            session = _session(source)
            session.run(None, {spec.input_name: np.zeros(feed, np.float32)})
        outputs = _session(prepared).run(None, {spec.input_name: np.zeros(feed, np.float32)})
        assert all(np.isfinite(o).all() for o in outputs)


def test_originals_untouched_and_cache_keyed_by_source_digest(shared_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(shared_models / "mobilefacenet.onnx", models)
    original = models / "mobilefacenet.onnx"
    before = sha256_file(original)
    original.chmod(0o444)
    models.chmod(0o555)  # read-only models folder, as on a mounted volume
    try:
        spec, _, prepared = _prepare("mobilefacenet", models, tmp_path / "cache")
        assert sha256_file(original) == before
        assert prepared == prepared_path(spec, before, str(tmp_path / "cache"), None)
        assert before[:16] in str(prepared)
        mtime = prepared.stat().st_mtime_ns
        _, _, again = _prepare("mobilefacenet", models, tmp_path / "cache")
        assert again == prepared and prepared.stat().st_mtime_ns == mtime  # reused, not rewritten
    finally:
        models.chmod(0o755)


def test_fixed_size_variant_for_tensorrt(shared_models, tmp_path):
    _, _, prepared = _prepare("scrfd_2.5g", shared_models, tmp_path, fixed_hw=(384, 640))
    session = _session(prepared)
    assert session.get_inputs()[0].shape[2:] == [384, 640]
    assert "640x384" in prepared.name


def test_default_pack_batches_exactly(default_pack, tmp_path):
    """Both default models take a batch once prepared, so cross-request batching serves them too."""
    rng = np.random.default_rng(2)
    for name in ("sface_2021dec_int8bq", "yunet_2023mar_int8bq"):
        spec, _, prepared = _prepare(name, default_pack, tmp_path)
        assert spec.batch
        batch = rng.uniform(0, 255, (3, 3, *spec.input_shape[2:])).astype(np.float32)
        session = _session(prepared)
        together = session.run(None, {spec.input_name: batch})
        for i in range(3):
            alone = session.run(None, {spec.input_name: batch[i : i + 1]})
            for a, b in zip(together, alone, strict=True):
                np.testing.assert_allclose(a[i], b[0], atol=1e-3)
