"""Render the monitoring role's templates as Ansible would (Jinja2 with the role's defaults)."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "monitoring"


def defaults(**overrides: object) -> dict:
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(overrides)
    return values


def render(template: str, target: Path, **overrides: object) -> Path:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.from_string((ROLE / "templates" / template).read_text()).render(**defaults(**overrides))
    target.write_text(text)
    return target
