#!/usr/bin/env bash
# The whole test suite, set-up included: Debian packages the tests use (promtool from
# prometheus), facefleet with its test extras in .venv, then ruff and pytest on the real
# models and photos of ../shared. Extra arguments go to pytest (e.g. -k detection).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v promtool >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool is missing: apt-get install prometheus (as root)" >&2
    exit 1
  fi
fi
FACEFLEET_EXTRAS=test bash "$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
