"""Model files as use cases: pull them from the manifest's sources, verify them against it.

`facefleet models pull|verify` (and through them the models role) print these results; the
logic of which models a call covers lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facefleet.errors import FacefleetError
from facefleet.models.manifest import Manifest, ModelSpec, load_manifest
from facefleet.settings import Settings


@dataclass(frozen=True)
class PullModels:
    names: tuple[str, ...] = ()  # default: the default detector and recognizer


@dataclass(frozen=True)
class Pulled:
    """One model: where its file is and whether it was fetched now, or why it could not be."""

    name: str
    path: Path | None = None
    fetched: bool = False
    error: FacefleetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class PullReport:
    models: tuple[Pulled, ...]

    @property
    def failed(self) -> int:
        return sum(not p.ok for p in self.models)


@dataclass(frozen=True)
class VerifyModels:
    names: tuple[str, ...] = ()  # default: every model present, plus the defaults (which must be)


@dataclass(frozen=True)
class VerifyReport:
    checked: tuple[str, ...]
    problems: tuple[str, ...]  # one line each, prefixed with the model's name

    @property
    def ok(self) -> bool:
        return not self.problems


def _selected(manifest: Manifest, names: Sequence[str], default: Sequence[str]) -> list[ModelSpec]:
    """The named models (an unknown name is a ManifestError listing the known ones), else the default."""
    return [manifest.get(n) for n in (names or default)]


def pull_models(
    settings: Settings, request: PullModels, progress: Callable[[Pulled], None] | None = None
) -> PullReport:
    """Fetch each model's file unless it is present with its pinned digest; one model failing
    does not stop the others. `progress` hears of each model as it is done."""
    from facefleet.models.pull import pull  # urllib and tqdm load only for a pull

    manifest = load_manifest()
    done: list[Pulled] = []
    for spec in _selected(manifest, request.names, [manifest.default_detection, manifest.default_recognition]):
        try:
            path, fetched = pull(spec, settings.models.models_dir, settings.models.cache_dir)
            outcome = Pulled(spec.name, path, fetched)
        except FacefleetError as exc:
            outcome = Pulled(spec.name, error=exc)
        done.append(outcome)
        if progress is not None:
            progress(outcome)
    return PullReport(tuple(done))


def verify_models(settings: Settings, request: VerifyModels) -> VerifyReport:
    """Digest, loadability and input/output layout of each model file."""
    from facefleet.models.verify import verify_model  # onnx loads only for a verification

    manifest = load_manifest()
    specs = _selected(manifest, request.names, [])
    if not specs:  # everything that is present, plus the defaults, which must be
        defaults = {manifest.default_detection, manifest.default_recognition}
        specs = [
            s
            for s in manifest.models.values()
            if s.name in defaults or (Path(settings.models.models_dir) / s.file).is_file()
        ]
    problems = [p for spec in specs for p in verify_model(spec, settings.models.models_dir) + _layout(spec, settings)]
    return VerifyReport(tuple(s.name for s in specs), tuple(problems))


def _layout(spec: ModelSpec, settings: Settings) -> list[str]:
    """The outputs of a family whose layout check lives with its decoder (RetinaFace, CenterFace, YOLOv5-face:
    facefleet.engine.families, a layer above facefleet.models.verify): the start-up check on the file's declared
    inputs and outputs, so `models verify` refuses what the service would."""
    from facefleet.engine.families import SHAPED
    from facefleet.engine.roles import check_file_role
    from facefleet.errors import ModelRoleError

    path = Path(settings.models.models_dir) / spec.file
    if spec.family not in SHAPED or not path.is_file():
        return []
    width, height = settings.engine.det_size
    try:
        check_file_role(spec, path, (height, width))
    except ModelRoleError as exc:
        return [f"{spec.name}: {exc}"]
    return []
