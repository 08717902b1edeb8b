"""What a bench script checks before it starts anything: the models it will load and the photos
it will send. A missing folder, photo or model, or a model name the manifest does not know, is
one line naming it and the fix (exit 2), never a traceback from deep inside a service start.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from facefleet.errors import FacefleetError
from facefleet.models.manifest import load_manifest
from facefleet.models.modelfiles import require_model_file


class BenchInputError(Exception):
    """A bench script's input (a flag's folder or file) is not there."""


def require_dir(path: str | Path, flag: str) -> Path:
    """`path` as a folder, or the one-line error naming the flag that gave it."""
    folder = Path(path)
    if not folder.is_dir():
        raise BenchInputError(f"{flag} {folder}: no such folder")
    return folder


def require_file(path: str | Path, flag: str) -> Path:
    """`path` as a file, or the one-line error naming the flag that gave it."""
    file = Path(path)
    if not file.is_file():
        raise BenchInputError(f"{flag} {file}: no such file")
    return file


def require_models(
    models_dir: str | Path, names: tuple[str | None, str | None] = (None, None), verify: bool = True
) -> None:
    """Every named model (None or "": the manifest's default detector, then recognizer) is in
    `models_dir`, with the manifest's digest when `verify`: what `facefleet serve` checks first."""
    manifest = load_manifest()
    defaults = (manifest.default_detection, manifest.default_recognition)
    folder = str(require_dir(models_dir, "--models-dir"))
    for name, default in zip(names, defaults, strict=True):
        require_model_file(manifest.get(name or default), folder, verify)


def one_line(script: str, main: Callable[[], int | None]) -> int:
    """Run a bench script's `main`; a bad input ends in `script: reason` on stderr and exit 2."""
    try:
        return main() or 0
    except (BenchInputError, FacefleetError) as exc:
        print(f"{script}: {exc}", file=sys.stderr)
        return 2
