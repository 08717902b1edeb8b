#!/usr/bin/env bash
# The whole test suite, set-up included: installs facefleet with its test extras into .venv,
# lints, and runs pytest on the real models and photos of ../shared.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k detection).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FACEFLEET_EXTRAS=test bash "$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
