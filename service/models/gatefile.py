"""The accuracy gate's report beside an INT8 copy, and the rule that a copy runs only with a passing one.

An INT8 copy is made on the appliance (`facefleet models quantize`), so no digest is published for
it: what vouches for it is its gate report, `<stem>.int8.gate.json`, which says whether the copy
still finds the faces its FP32 original finds and still tells the same people apart
(facefleet.app.int8gate), and names the exact files it judged by their sha256. A copy with no
report, a failed one, or a report about other bytes is refused at load, so a copy that lost its
answers is never offered, and one changed after its gate is not trusted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from facefleet.errors import ModelError
from facefleet.models.manifest import ModelSpec

INT8 = "int8"


@dataclass(frozen=True)
class GateCheck:
    """One photo or pair judged: what was compared, whether it held, and the figure behind it."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateReport:
    """What the gate found for one INT8 copy; `figures` are the summaries the docs and benchmarks quote."""

    model: str
    task: str
    fp32_sha256: str
    int8_sha256: str
    passed: bool
    reason: str
    checks: list[GateCheck] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> GateReport:
        data = json.loads(text)
        checks = [GateCheck(**c) for c in data.pop("checks", [])]
        return cls(**data, checks=checks)


def is_int8_copy(spec: ModelSpec) -> bool:
    return spec.name.partition("@")[2] == INT8


def gate_path(model_file: Path) -> Path:
    """`scrfd_2.5g.int8.onnx` -> `scrfd_2.5g.int8.gate.json`, beside it."""
    return model_file.with_name(model_file.name.removesuffix(".onnx") + ".gate.json")


def read_report(model_file: Path) -> GateReport | None:
    """The copy's report, or None when there is none or it cannot be read."""
    try:
        return GateReport.from_json(gate_path(model_file).read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None


def require_passed_gate(spec: ModelSpec, model_file: Path, digest: str, models_flag: str = "") -> None:
    """Refuse an INT8 copy its gate has not vouched for, with the reason and the command that makes one."""
    base = spec.name.partition("@")[0]
    fix = f"run `facefleet models quantize {base} --images DIR{models_flag}`"
    report = read_report(model_file)
    if report is None:
        missing = f"{gate_path(model_file).name} (its accuracy gate report) is missing"
        raise ModelError(f"model {spec.name}: {missing}; {fix}")
    if report.int8_sha256 != digest:
        raise ModelError(
            f"model {spec.name}: {model_file.name} changed after its accuracy gate (sha256 {digest[:12]}…, "
            f"the gate judged {report.int8_sha256[:12]}…); {fix}"
        )
    if not report.passed:
        raise ModelError(f"model {spec.name} failed its accuracy gate ({report.reason}); it is not offered")
