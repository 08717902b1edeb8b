"""What the benchmarks that serve a pack share: its models folder, a keyed service on it, and request bodies.

A bench script keeps its own working folder (`work`) under .cache; everything here is made inside it.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from facefleet.models.manifest import load_manifest
from facefleet.models.modelfiles import model_path
from facefleet.models.synth import synthesize
from tests.server import Service


def models_folder(work: Path, models_dir: str, names: tuple[str, ...]) -> Path:
    """`work`/models with each named FP32 model copied from `models_dir`, or its architecture synthesized
    (random weights: a run's time does not depend on them) where no file is there; `@int8` names are left
    to the caller (they are made through their accuracy gate)."""
    folder = work / "models"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest()
    for name in (n for n in names if "@" not in n):
        spec = manifest.get(name)
        target, source = model_path(spec, str(folder)), Path(models_dir) / spec.file
        if target.exists():
            continue
        if source.is_file():
            shutil.copy(source, target)
        else:
            print(f"{name}: no file in {models_dir}; synthesizing its architecture (random weights)")
            synthesize(name, target)
    return folder


@contextmanager
def keyed_service(work: Path, label: str, key: str, env: dict[str, str]) -> Iterator[Service]:
    """A ready `facefleet serve` with API keys on (`key` the one key), its metrics and log in `work`."""
    keys = work / "api-keys"
    keys.write_text(f"{key}\n")
    defaults = {
        "FACEFLEET_AUTH": "on",
        "FACEFLEET_API_KEYS_FILE": str(keys),
        "FACEFLEET_METRICS_DIR": str(work / f"metrics-{label}"),
        "FACEFLEET_CACHE_DIR": str(work / "cache"),
        "FACEFLEET_LOG_LEVEL": "WARNING",
    }
    service = Service({**defaults, **env}, work / f"service-{label}.log")
    try:
        service.wait_ready(timeout=300, key=key)
        yield service
    finally:
        service.stop()


def body_of(images: Path, name: str) -> bytes:
    """One photo as an /extract JSON body."""
    return json.dumps({"images": {"data": [base64.b64encode((images / name).read_bytes()).decode()]}}).encode()
