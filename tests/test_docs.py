"""The docs stay true to the code: every knob, command and model is documented."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from facefleet.cli import build_parser
from facefleet.models.manifest import load_manifest
from facefleet.settings import SECTIONS, docs

ROOT = Path(__file__).resolve().parent.parent


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    names = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub, f"{prefix}{name} ")
                names += nested or [f"{prefix}{name}"]
    return names


def test_the_settings_tables_are_the_declarations():
    """docs/configuration.md's tables are generated from the sections: an edit on either side alone fails."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert docs.rewritten(text) == text, f"docs/configuration.md is stale: run `{docs.COMMAND}`"


def test_every_setting_and_alias_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text()
    for section in SECTIONS.values():
        for field in dataclasses.fields(section):
            spec = field.metadata["knob"]
            assert spec.doc, field.name
            for variable in spec.variables:
                assert f"`{variable}`" in text, variable


def test_every_command_is_in_the_readme():
    text = (ROOT / "README.md").read_text()
    commands = _subcommands(build_parser())
    assert "models pull" in commands and "detect" in commands
    for command in commands:
        assert f"facefleet {command}" in text, command


def test_every_model_is_in_the_models_doc():
    text = (ROOT / "docs" / "models.md").read_text()
    for name in load_manifest().models:
        assert f"`{name}`" in text, name


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    assert [line.split("#")[0].strip() for line in block] == ["bash scripts/run.sh", "bash scripts/test.sh"]
    assert all((ROOT / line.split()[1]).is_file() for line in block)


def test_every_dashboard_setting_is_documented():
    from facefleet.settings import DashboardSettings

    text = (ROOT / "docs" / "dashboard.md").read_text()
    for field in dataclasses.fields(DashboardSettings):
        assert f"`{field.metadata['knob'].env}`" in text, field.name


def test_every_test_named_in_the_reliability_table_exists():
    """docs/reliability.md promises behaviour by naming the tests that prove it: each must exist."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"(?:test_\w+\.py)?::(test_\w+)", text)) | set(re.findall(r"`(test_\w+)`", text))
    sources = [path.read_text() for path in (ROOT / "tests").glob("test_*.py")]
    defined = {name for source in sources for name in re.findall(r"^def (test_\w+)", source, re.M)}
    assert len(named) > 40
    assert named <= defined, sorted(named - defined)
