"""The jetson_host role's power-mode and release tasks, run by ansible-playbook on this machine
against a FAKE `nvpmodel` that keeps its mode in a file and answers in the real tool's words
(live switches, and modes that need a reboot and ask "DO YOU WANT TO REBOOT NOW?"), and a FAKE
/etc/nv_tegra_release. Nothing of this machine's own is read or changed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facefleet.ops import jetson

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.ansible

MODES = {"0": "MAXN", "1": "MODE_15W", "2": "MODE_30W", "3": "MODE_7W"}
NEEDS_REBOOT = {"3"}  # as on an Orin: a mode that takes CPU cores offline switches only at boot

FAKE_NVPMODEL = """#!/bin/sh
# FAKE nvpmodel: the real tool's -q output and its reboot prompt; the mode lives in {state}
state={state}
name() {{ case "$1" in {cases} *) echo "";; esac; }}
case "$1" in
  -q) mode=$(cat "$state")
      printf 'NVPM WARN: fan mode is not set!\\nNV Power Mode: %s\\n%s\\n' "$(name "$mode")" "$mode";;
  -m)
    [ -n "$(name "$2")" ] || {{ echo "NVPM ERROR: Invalid mode: $2" >&2; exit 1; }}
    case " {reboot} " in
      *" $2 "*)
        echo "NVPM WARN: Golden image context is already created"
        echo "NVPM WARN: Reboot required for changing to this power mode: $2"
        echo "NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:"
        read answer
        if [ "$answer" = YES ] || [ "$answer" = yes ]; then
          echo "$2" > "$state"; echo rebooted >> "$state.log"; exit 0
        fi
        echo "NVPM ERROR: optMask is 1, no request for power mode"; exit 1;;
    esac
    echo "$2" > "$state";;
  *) exit 2;;
esac
"""


def fake_nvpmodel(folder: Path, mode: str) -> Path:
    state = folder / "nvpmodel-state"
    state.write_text(f"{mode}\n")
    cases = " ".join(f"{k}) echo {v};;" for k, v in MODES.items())
    script = folder / "nvpmodel"
    script.write_text(FAKE_NVPMODEL.format(state=state, cases=cases, reboot=" ".join(sorted(NEEDS_REBOOT))))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def play(folder: Path, tasks_from: str, **variables: str) -> subprocess.CompletedProcess:
    """One task file of jetson_host on localhost, facts gathered (service_mgr), nothing else."""
    playbook = folder / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "jetson_host tasks under test",
                    "hosts": "localhost",
                    "gather_facts": True,
                    "tasks": [
                        {
                            "name": f"jetson_host {tasks_from}",
                            "ansible.builtin.include_role": {"name": "jetson_host", "tasks_from": tasks_from},
                        }
                    ],
                }
            ]
        )
    )
    extra = " ".join(f"{k}={v}" for k, v in variables.items())
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_ROLES_PATH": str(ROOT / "roles")}
    python = ["-e", f"ansible_python_interpreter={sys.executable}"]
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook), "-e", extra, *python],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def changed(result: subprocess.CompletedProcess) -> int:
    line = next(x for x in result.stdout.splitlines() if x.startswith("localhost"))
    return int(line.split("changed=")[1].split()[0])


@pytest.mark.slow
def test_a_live_mode_change_is_applied_reported_once_and_then_left_alone(tmp_path):
    nvpmodel = fake_nvpmodel(tmp_path, "1")
    first = play(tmp_path, "power", jetson_host_nvpmodel_command=str(nvpmodel), jetson_host_nvpmodel_mode="0")
    assert first.returncode == 0, first.stdout[-3000:]
    assert (tmp_path / "nvpmodel-state").read_text().strip() == "0"
    assert changed(first) == 1  # the re-query saw the move: one change, not one per command
    second = play(tmp_path, "power", jetson_host_nvpmodel_command=str(nvpmodel), jetson_host_nvpmodel_mode="0")
    assert second.returncode == 0 and changed(second) == 0, second.stdout[-3000:]


@pytest.mark.slow
def test_a_mode_that_needs_a_reboot_fails_clearly_and_changes_nothing_unless_allowed(tmp_path):
    nvpmodel = fake_nvpmodel(tmp_path, "1")
    result = play(tmp_path, "power", jetson_host_nvpmodel_command=str(nvpmodel), jetson_host_nvpmodel_mode="3")
    assert result.returncode != 0
    text = " ".join(result.stdout.split())
    assert "nvpmodel mode 3 needs a reboot (the host stays in mode 1)" in text
    assert "jetson_host_nvpmodel_reboot=true" in text
    assert (tmp_path / "nvpmodel-state").read_text().strip() == "1"  # nvpmodel was told "no"
    assert not (tmp_path / "nvpmodel-state.log").exists()  # and never rebooted by itself


@pytest.mark.slow
def test_a_mode_nvpmodel_refuses_fails_with_its_words(tmp_path):
    nvpmodel = fake_nvpmodel(tmp_path, "1")
    result = play(tmp_path, "power", jetson_host_nvpmodel_command=str(nvpmodel), jetson_host_nvpmodel_mode="9")
    assert result.returncode != 0 and "NVPM ERROR: Invalid mode: 9" in result.stdout
    assert (tmp_path / "nvpmodel-state").read_text().strip() == "1"


@pytest.mark.slow
def test_an_unknown_r36_release_is_a_warning_naming_it_not_a_failure(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 9.1, GCID: 1, BOARD: generic, EABI: aarch64, DATE: Mon Jan 1 2029\n")
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    result = play(tmp_path, "preflight", jetson_host_tegra_release_path=str(release), jetson_host_model_path=str(model))
    assert result.returncode == 0, result.stdout[-3000:]
    text = " ".join(result.stdout.split())  # ansible.cfg's YAML callback folds long messages
    assert "WARNING: localhost runs L4T R36.9.1, which jetson_host_jetpack_by_l4t does not know" in text


def test_the_role_and_the_exporter_know_the_same_releases():
    defaults = yaml.safe_load((ROOT / "roles" / "jetson_host" / "defaults" / "main.yml").read_text())
    assert defaults["jetson_host_jetpack_by_l4t"] == jetson.JETPACK_BY_L4T


@pytest.mark.slow
def test_gstreamer_for_the_hardware_decoder_is_left_alone_where_installed(tmp_path):
    """This machine has the four packages (scripts/test.sh installs them): nothing to install, nothing changed."""
    result = play(tmp_path, "gstreamer")
    assert result.returncode == 0 and changed(result) == 0, result.stdout[-3000:]
    assert (
        "Install GStreamer's tools and plugins where missing" in result.stdout
        and "skipping: [localhost]" in result.stdout
    )
