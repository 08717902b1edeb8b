#!/usr/bin/env bash
# The whole test suite, set-up included: the Debian packages the tests use (prometheus for a
# real Prometheus server and promtool, chromium for the browser tests, which Playwright drives
# without ever downloading a browser, openssh-server and iproute2 for the Ansible fleet test),
# facefleet with its test extras in .venv, then ruff and pytest on the real models and photos
# of ../shared. Extra arguments go to pytest. Runs as root: the Ansible tests provision this
# machine (the default inventory) and make network namespaces.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)       # the fleet test's hosts run their own sshd
command -v ssh >/dev/null || missing+=(openssh-client)
command -v ip >/dev/null || missing+=(iproute2)           # network namespaces for the fleet test
command -v start-stop-daemon >/dev/null || missing+=(dpkg)
if [ "${#missing[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]}, as root)" >&2
    exit 1
  fi
fi
FACEFLEET_EXTRAS=test bash "$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
