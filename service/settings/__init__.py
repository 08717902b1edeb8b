"""facefleet's settings: typed sections, each field declared once with its FACEFLEET_* variable
(and InsightFace-REST alias), default and meaning; read once at start and passed as objects.

InsightFace-REST's variable names are accepted as aliases so an existing deployment's
environment keeps working; the FACEFLEET_ name wins where both are set. An invalid value
stops start-up with one line naming the variable, rather than failing on the first request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from facefleet.settings.env import (
    ARENA_STRATEGIES,
    CONV_ALGO_SEARCHES,
    HEADERS_SCHEMA,
    PROVIDER_NAMES,
    SHAPE_POLICIES,
    Knob,
    check_headers,
    key_lines,
    parse_providers,
    parse_size,
)
from facefleet.settings.root import FLAT, Settings, flat_knobs, value_of
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
)

__all__ = [
    "ARENA_STRATEGIES",
    "CONV_ALGO_SEARCHES",
    "FLAT",
    "HEADERS_SCHEMA",
    "PROVIDER_NAMES",
    "SECTIONS",
    "SHAPE_POLICIES",
    "AnswerSettings",
    "AuthSettings",
    "DashboardSettings",
    "EngineSettings",
    "GalleriesSettings",
    "JetsonSettings",
    "Knob",
    "MetricsSettings",
    "ModelsSettings",
    "ServerSettings",
    "Settings",
    "check_headers",
    "flat_knobs",
    "key_lines",
    "load",
    "parse_providers",
    "parse_size",
    "value_of",
]


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The settings, read once: defaults < FACEFLEET_CONFIG file < environment < `overrides`."""
    return Settings.from_env(environ, **overrides)
