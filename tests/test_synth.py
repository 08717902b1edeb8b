"""Architecture-faithful synthetic models: parameter counts and layouts of the real ones."""

from __future__ import annotations

import numpy as np

from service.config import Settings
from service.loader import load_model
from service.manifest import load_manifest
from service.recognizer import Recognizer
from service.synth import iresnet, synthesize
from service.verify import verify_model


def test_iresnet100_has_glintr100s_parameter_count():
    _, parameters = iresnet()
    assert abs(parameters - 65.1e6) / 65.1e6 < 0.03


def test_synthetic_glintr100_runs_as_the_manifest_describes_it(tmp_path):
    spec = load_manifest().get("glintr100")
    synthesize("glintr100", tmp_path / spec.file)
    assert verify_model(spec, str(tmp_path)) == []
    settings = Settings(
        models_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), providers=("cpu",), rec_batch_size=4
    )
    opened, _ = load_model(spec, settings)
    recognizer = Recognizer(spec, opened, settings)
    crops = [np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8) for i in range(3)]
    batched, _ = recognizer.embed(crops)
    single = np.concatenate([recognizer.embed([c])[0] for c in crops])
    assert batched.shape == (3, 512)
    assert np.all(np.sum(batched * single, axis=1) > 0.9999)
