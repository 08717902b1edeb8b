"""The appliances to watch: a Prometheus file_sd JSON file (what the Ansible roles write for
Prometheus) or a plain list, read again on every poll so a changed fleet needs no restart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from facefleet.settings import DashboardSettings


@dataclass(frozen=True)
class Appliance:
    name: str
    group: str
    service: str  # https://host:port (label `__scheme__: https`, as Prometheus reads it) or http://host:port
    exporter: str  # http://host:port: the exporter carries no key
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


SCHEMES = ("http", "https")


def _appliance(target: str, labels: dict[str, str], exporter_port: int) -> Appliance:
    host = target.rsplit(":", 1)[0]
    scheme = labels.get("__scheme__", "http")
    if scheme not in SCHEMES:
        raise ValueError(f"target {target}: __scheme__ is {scheme!r}, not http or https")
    exporter = labels.get("exporter") or f"{host}:{exporter_port}"
    return Appliance(
        name=labels.get("appliance") or labels.get("name") or target,
        group=labels.get("group", ""),
        service=f"{scheme}://{target}",
        exporter=f"http://{exporter}",
        labels=dict(labels),
    )


def load(settings: DashboardSettings) -> list[Appliance]:
    """Every appliance, in file order; a broken targets file is an empty fleet plus a log line
    upstream, never a crashed dashboard."""
    found: list[Appliance] = [_appliance(t, {}, settings.exporter_port) for t in settings.targets]
    if settings.targets_file:
        groups = json.loads(Path(settings.targets_file).read_text())
        for group in groups if isinstance(groups, list) else []:
            labels = {str(k): str(v) for k, v in (group.get("labels") or {}).items()}
            found += [_appliance(str(t), labels, settings.exporter_port) for t in group.get("targets", [])]
    return found
