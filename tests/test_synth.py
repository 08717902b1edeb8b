"""Architecture-faithful synthetic models: parameter counts and layouts of the real ones."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facefleet.engine.detector import Detector
from facefleet.engine.loader import load_model
from facefleet.engine.recognizer import Recognizer
from facefleet.models.manifest import load_manifest
from facefleet.models.synth import SCRFD_2_5G, SCRFD_10G, iresnet, scrfd, synthesize
from facefleet.models.verify import verify_model
from facefleet.settings import Settings


@pytest.mark.slow  # builds the 65M-parameter graph, about 5 s; the scrfd tests keep the generator fast
def test_iresnet100_has_glintr100s_parameter_count():
    _, parameters = iresnet()
    assert abs(parameters - 65.1e6) / 65.1e6 < 0.03


@pytest.mark.slow  # about 10 s
def test_synthetic_glintr100_runs_as_the_manifest_describes_it(tmp_path):
    spec = load_manifest().get("glintr100")
    synthesize("glintr100", tmp_path / spec.file)
    assert verify_model(spec, str(tmp_path)) == []
    settings = Settings.of(
        models_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), providers=("cpu",), rec_batch_size=4
    )
    opened, _ = load_model(spec, settings)
    recognizer = Recognizer(spec, opened, settings)
    crops = [np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8) for i in range(3)]
    batched, _ = recognizer.embed(crops)
    single = np.concatenate([recognizer.embed([c])[0] for c in crops])
    assert batched.shape == (3, 512)
    assert np.all(np.sum(batched * single, axis=1) > 0.9999)


def _conv_shapes(model: onnx.ModelProto) -> list[tuple[int, ...]]:
    inits = {i.name: i.dims for i in model.graph.initializer}
    return sorted(tuple(inits[n.input[1]]) for n in model.graph.node if n.op_type == "Conv")


def test_scrfd_10g_matches_the_published_size_and_compute():
    for cfg in (SCRFD_10G, replace(SCRFD_10G, group_norm=True)):
        _, parameters, macs = scrfd(cfg, batched=True, input_hw=(480, 640))
        assert abs(parameters - 4.23e6) / 4.23e6 < 0.03
        assert abs(macs - 10e9) / 10e9 < 0.05  # "10G" is mmcv's count at VGA: multiply-accumulates


def test_scrfd_generator_rebuilds_the_real_2_5g_layer_for_layer(shared_models):
    """The same generator, given the 2.5G config, yields the real file's convolutions and outputs."""
    model, parameters, _ = scrfd(SCRFD_2_5G, batched=False)
    assert abs(parameters - 0.82e6) / 0.82e6 < 0.03
    real = onnx.load(str(shared_models / "scrfd_2.5g.onnx"))
    assert _conv_shapes(model) == _conv_shapes(real)
    blob = np.random.default_rng(0).standard_normal((1, 3, 640, 480)).astype(np.float32)
    ours = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(str(shared_models / "scrfd_2.5g.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in ours.get_inputs()] == [i.name for i in theirs.get_inputs()]
    assert [o.shape for o in ours.run(None, {"input.1": blob})] == [
        o.shape for o in theirs.run(None, {"input.1": blob})
    ]


# one variant in the fast tier (about 5 s each)
@pytest.mark.parametrize("name", ["scrfd_10g_gnkps", pytest.param("scrfd_10g_bnkps", marks=pytest.mark.slow)])
def test_synthetic_scrfd_10g_runs_batched_through_the_detector(tmp_path, name, astronaut):
    """The manifest's prepare steps make the re-export layout batch, GroupNorm's Reshape included."""
    spec = load_manifest().get(name)
    synthesize(name, tmp_path / spec.file)
    assert verify_model(spec, str(tmp_path)) == []
    settings = Settings.of(
        models_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), providers=("cpu",), det_batch_size=2
    )
    opened, _ = load_model(spec, settings)
    detector = Detector(spec, opened, settings)
    assert detector.batchable
    rng = np.random.default_rng(1)
    blobs = rng.standard_normal((2, 3, 640, 640)).astype(np.float32)
    batched = detector.session_run(blobs)
    for i in range(2):
        for b, s in zip(batched, detector.session_run(blobs[i : i + 1]), strict=True):
            assert np.allclose(b[i : i + 1], s, atol=1e-4)
    found = detector.detect([astronaut, astronaut[::-1].copy()], threshold=0.6)
    assert len(found) == 2
    assert all(np.all(d.scores >= 0.6) and d.landmarks.shape == (len(d), 5, 2) for d in found)
