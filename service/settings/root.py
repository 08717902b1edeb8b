"""`Settings`: one of each section, read once (defaults < FACEFLEET_CONFIG file < environment <
explicit overrides) and passed as an object from the command line to gunicorn's workers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facefleet.settings.env import Knob, knobs, read_config_file, read_variables
from facefleet.settings.sections import (
    SECTIONS,
    AnswerSettings,
    AuthSettings,
    DashboardSettings,
    EngineSettings,
    GalleriesSettings,
    JetsonSettings,
    MetricsSettings,
    ModelsSettings,
    ServerSettings,
    StreamsSettings,
)

# The flat names of before the sections (also FACEFLEET_CONFIG's keys and the CLI's overrides) whose field is
# named otherwise in its section; every other flat name is its field's name.
RENAMED = {"auth": "mode", "auth_open_paths": "open_paths"}
# The dashboard has its own FACEFLEET_DASHBOARD_* variables and no flat names (its host and port are not the service's).
FLAT_SECTIONS = ("models", "engine", "answers", "server", "auth", "galleries", "metrics", "jetson", "streams")


def _flat_table() -> dict[str, tuple[str, str]]:
    """Flat name -> (section, field), for every section but the dashboard."""
    back = {v: k for k, v in RENAMED.items()}
    table: dict[str, tuple[str, str]] = {}
    for section in FLAT_SECTIONS:
        for name in knobs(SECTIONS[section]):
            flat = back.get(name, name)
            assert flat not in table, f"two settings named {flat}"
            table[flat] = (section, name)
    return table


FLAT: dict[str, tuple[str, str]] = _flat_table()


def flat_knobs() -> dict[str, Knob]:
    """Every flat name with its Knob (variables, parser, doc): what the config file and the
    installed appliance's settings file are read with."""
    return {flat: knobs(SECTIONS[section])[name] for flat, (section, name) in FLAT.items()}


@dataclass(frozen=True)
class Settings:
    """Every knob of facefleet, by section; docs/configuration.md lists them with their variables.

    Code reads sections (`settings.server.port`); `Settings.of(**flat)` and `replace(**flat)` take the
    flat names of FACEFLEET_CONFIG (`port=1`), which is what tests and scripts write.
    """

    engine: EngineSettings = field(default_factory=EngineSettings)
    answers: AnswerSettings = field(default_factory=AnswerSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    models: ModelsSettings = field(default_factory=ModelsSettings)
    galleries: GalleriesSettings = field(default_factory=GalleriesSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    jetson: JetsonSettings = field(default_factory=JetsonSettings)
    streams: StreamsSettings = field(default_factory=StreamsSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)

    @classmethod
    def of(cls, **flat: Any) -> Settings:
        """Settings from flat names (`Settings.of(port=1, providers=("cpu",))`): what tests write."""
        return cls(**_with_flat({n: c() for n, c in SECTIONS.items()}, flat))

    def replace(self, **flat: Any) -> Settings:
        """A copy with some settings changed, by flat name (`settings.replace(providers=("cpu",))`)."""
        return Settings(**_with_flat({n: getattr(self, n) for n in SECTIONS}, flat))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults < the FACEFLEET_CONFIG file < environment < `overrides` (CLI flags, by flat
        name; a None flag is one not given)."""
        environ = os.environ if environ is None else environ
        by_key = {flat: (flat, spec) for flat, spec in flat_knobs().items()}
        by_key.update({var: (flat, spec) for flat, spec in flat_knobs().items() for var in spec.variables})
        values = read_config_file(environ.get("FACEFLEET_CONFIG", ""), by_key)
        back = {(section, name): flat for flat, (section, name) in FLAT.items()}
        for section in FLAT_SECTIONS:
            found = read_variables(SECTIONS[section], environ)
            values.update({back[section, name]: value for name, value in found.items()})
        values.update({k: v for k, v in overrides.items() if v is not None})
        # The dashboard's secrets' files are read by the dashboard only (DashboardSettings.from_env): another
        # command must not fail on a dashboard's root-only password file.
        dashboard = DashboardSettings(**read_variables(DashboardSettings, environ))
        sections = _with_flat({n: c() for n, c in SECTIONS.items()}, values)
        return cls(**{**sections, "dashboard": dashboard})

    @property
    def gallery_path(self) -> str:
        return self.galleries.gallery_db or str(Path(self.models.cache_dir) / "galleries.sqlite3")

    @property
    def streams_path(self) -> str:
        return self.streams.streams_dir or str(Path(self.models.cache_dir) / "streams")

    @property
    def metrics_path(self) -> str:
        return self.metrics.metrics_dir or str(Path(self.models.cache_dir) / "metrics")


def value_of(settings: Settings, flat: str) -> Any:
    """A setting by its flat name (a FACEFLEET_CONFIG key; /info's `defaults` are keyed so)."""
    section, name = FLAT[flat]
    return getattr(getattr(settings, section), name)


def _with_flat(sections: dict[str, Any], flat: Mapping[str, Any]) -> dict[str, Any]:
    """`sections` with the flat-named values put into their sections; an unknown name is a TypeError,
    as it is for any constructor."""
    changes: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        if key not in FLAT:
            raise TypeError(f"Settings got an unexpected setting {key!r}")
        section, name = FLAT[key]
        changes.setdefault(section, {})[name] = value
    return {n: dataclasses.replace(s, **changes[n]) if n in changes else s for n, s in sections.items()}
