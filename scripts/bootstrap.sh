#!/usr/bin/env bash
# Creates .venv with facefleet installed (editable) and the extras named in $FACEFLEET_EXTRAS (default cpu; on an
# x86_64 CPU appliance `openvino` brings onnxruntime with the OpenVINO execution provider instead).
# Sourced by run.sh and test.sh; safe to run again (pip skips what is already there).
# Every version comes from a committed constraint set, never from open ranges: constraints/jetpack6.txt
# on a Jetson (aarch64 with /etc/nv_tegra_release; the gpu extra then comes from the Jetson AI Lab index),
# constraints/cpu.txt elsewhere; $FACEFLEET_CONSTRAINTS names another file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${FACEFLEET_PYTHON:-python3}"
venv="${FACEFLEET_VENV:-$root/.venv}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "facefleet needs Python 3.10 or newer as '$python' (set FACEFLEET_PYTHON)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian and Ubuntu ship venv separately.
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
      "$python" -m venv "$venv"
    else
      echo "cannot create a virtual environment: install python3-venv (apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
extras="${FACEFLEET_EXTRAS:-cpu}"
index=()
if [ -f /etc/nv_tegra_release ] && [ "$(uname -m)" = aarch64 ]; then
  constraints="${FACEFLEET_CONSTRAINTS:-$root/constraints/jetpack6.txt}"
  case ",$extras," in
    *,gpu,*) index=(--extra-index-url "${FACEFLEET_JETSON_INDEX:-https://pypi.jetson-ai-lab.io/jp6/cu126}") ;;
  esac
else
  constraints="${FACEFLEET_CONSTRAINTS:-$root/constraints/cpu.txt}"
fi
# onnxruntime, onnxruntime-openvino (extra `openvino`, x86_64) and onnxruntime-gpu install the one `onnxruntime`
# module: switching a venv from one CPU build to the other removes the one not asked for first.
if [ "$(uname -m)" = x86_64 ]; then
  case ",$extras," in
    *,openvino,*) other=onnxruntime ;;
    *,cpu,*) other=onnxruntime-openvino ;;
    *) other="" ;;
  esac
  if [ -n "$other" ] && "$venv/bin/python" -m pip show -q "$other" >/dev/null 2>&1; then
    "$venv/bin/python" -m pip uninstall -q -y "$other"
  fi
fi
"$venv/bin/python" -m pip install -q -c "$constraints" ${index[@]+"${index[@]}"} -e "$root[$extras]"
