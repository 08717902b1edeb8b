"""Where a model's file lives and whether it is the file the manifest pins."""

from __future__ import annotations

import hashlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from facefleet.errors import ModelError
from facefleet.models.gatefile import is_int8_copy, require_passed_gate
from facefleet.models.manifest import ModelSpec
from facefleet.settings import ModelsSettings


@contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`, moved onto it (mode 0644) when the block succeeds and
    removed when it fails: concurrent readers (other workers) never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def model_path(spec: ModelSpec, models_dir: str) -> Path:
    return Path(models_dir) / spec.file


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Hashing a 250 MB recognizer takes a second; keyed by size and mtime, it is done once."""
    return sha256_file(path)


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def _models_dir_flag(models_dir: str) -> str:
    """` --models-dir DIR` unless DIR is the default one: the fix offered must act on the folder
    that was looked in, not on ./models."""
    if Path(models_dir) == Path(ModelsSettings.models_dir):
        return ""
    return f" --models-dir {shlex.quote(models_dir)}"


def require_model_file(spec: ModelSpec, models_dir: str, check_sha256: bool = True) -> tuple[Path, str]:
    """The model's path and sha256, or one clear error naming the file and the fix."""
    path = model_path(spec, models_dir)
    if not path.is_file():
        base, _, variant = spec.name.partition("@")
        fix = f"facefleet models quantize {base}" if variant else f"facefleet models pull {spec.name}"
        fix += _models_dir_flag(models_dir)
        raise ModelError(f"model {spec.name}: file {path} is missing; run `{fix}` or put {spec.file} into {models_dir}")
    digest = file_sha256(path)
    if check_sha256 and spec.sha256 and digest != spec.sha256:
        raise ModelError(
            f"model {spec.name}: {path} has sha256 {digest[:12]}…, the manifest pins {spec.sha256[:12]}…; "
            "the file is corrupt or a different model"
        )
    if is_int8_copy(spec):  # made here: vouched for by its accuracy gate, not by a published digest
        require_passed_gate(spec, path, digest, _models_dir_flag(models_dir))
    return path, digest
