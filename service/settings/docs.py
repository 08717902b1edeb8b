"""docs/configuration.md's settings tables, written from the sections' declarations.

`python -m facefleet.settings.docs` rewrites the block between the markers; tests/test_docs.py
fails (and names this command) when the file and the declarations differ.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from facefleet.settings.env import Knob
from facefleet.settings.sections import SECTIONS, Section

BEGIN = "<!-- BEGIN settings: generated from the sections' declarations, do not edit -->"
END = "<!-- END settings -->"
COMMAND = f"python -m {__package__}.docs"
DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _shown_default(f: dataclasses.Field[object], spec: Knob) -> str:
    if spec.shown is not None:
        return spec.shown
    value = f.default
    if value in ("", (), None):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`{','.join(map(str, value))}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def section_table(name: str, section: type[Section]) -> list[str]:
    """One section: its heading, what it is for, and a row per field."""
    doc = " ".join((section.__doc__ or "").split())
    lines = [f"### `{name}`", "", doc, "", "| variable | alias | field | default | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        spec: Knob = f.metadata["knob"]
        aliases = ", ".join(f"`{a}`" for a in spec.aliases)
        field_name = f"settings.{name}.{f.name}"
        lines.append(f"| `{spec.env}` | {aliases} | `{field_name}` | {_shown_default(f, spec)} | {spec.doc} |")
    return [*lines, ""]


def block() -> str:
    """Every section's table, between the markers."""
    lines = [BEGIN, ""]
    for name, section in SECTIONS.items():
        lines += section_table(name, section)
    return "\n".join([*lines, END])


def rewritten(text: str) -> str:
    """`text` with its block replaced by the current one."""
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block() + text[stop:]


def main() -> int:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        print(f"{DOC}: no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    new = rewritten(text)
    if new != text:
        DOC.write_text(new)
        print(f"rewrote the settings tables of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
