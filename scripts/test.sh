#!/usr/bin/env bash
# The whole test suite, set-up included: the Debian packages the tests use (prometheus for a
# real Prometheus server and promtool, chromium for the browser tests, which Playwright drives
# without ever downloading a browser, openssh-server and iproute2 for the Ansible fleet test),
# facefleet with its test extras in .venv, then ruff, mypy and pytest on the real models and photos
# of ../shared. Extra arguments go to pytest (`-m "not slow"`: the everyday loop, CONTRIBUTING.md).
# Runs as root: the Ansible tests provision this machine (the default inventory) and make network
# namespaces.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)       # the fleet test's hosts run their own sshd
command -v ssh >/dev/null || missing+=(openssh-client)
command -v ip >/dev/null || missing+=(iproute2)           # network namespaces for the fleet test
command -v start-stop-daemon >/dev/null || missing+=(dpkg)
command -v dockerd >/dev/null || missing+=(docker.io)         # the container test starts its own daemon
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)     # ... from a Debian base image it makes
command -v unshare >/dev/null || missing+=(util-linux)        # the metrics folder on a bind mount
command -v gpgv >/dev/null || missing+=(gpgv)                 # Ubuntu's archive key, checked (the jammy GStreamer test)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static binfmt-support)  # the arm64 import check
command -v arch-test >/dev/null || missing+=(arch-test)       # mmdebstrap's check of a foreign architecture
command -v nginx >/dev/null || missing+=(nginx)               # tests/front.py runs its own nginx master (the front)
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)            # tests/mosquitto.py: a real MQTT broker for stream events
command -v ffmpeg >/dev/null || missing+=(ffmpeg)             # tests/media.py makes the stream tests' videos
[ -e /usr/lib/x86_64-linux-gnu/girepository-1.0/GstRtspServer-1.0.typelib ] || [ -e /usr/lib/aarch64-linux-gnu/girepository-1.0/GstRtspServer-1.0.typelib ] || missing+=(gir1.2-gst-rtsp-server-1.0)  # tests/rtsp_server.py: GStreamer's RTSP server
/usr/bin/python3 -c "import gi" 2>/dev/null || missing+=(python3-gi)  # ... run by Debian's python3 with PyGObject
command -v gst-inspect-1.0 >/dev/null || missing+=(gstreamer1.0-tools)  # the nvv4l2decoder probe's real run
gst-inspect-1.0 qtdemux >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-good)  # qtdemux, rtph264pay for the RTSP server
gst-inspect-1.0 h264parse >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-bad)  # h264parse for the RTSP server
gst-inspect-1.0 avdec_h264 >/dev/null 2>&1 || missing+=(gstreamer1.0-libav)  # the FAKE nvv4l2decoder's decoders
[ -e /usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstpython.so ] || [ -e /usr/lib/aarch64-linux-gnu/gstreamer-1.0/libgstpython.so ] || missing+=(gstreamer1.0-python3-plugin-loader)  # loads tests/fake_jetson_gst
[ -e /usr/lib/python3/dist-packages/gi/overrides/Gst.py ] || missing+=(python3-gst-1.0)  # ... the FAKE elements' Gst overrides
if [ "${#missing[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]}, as root)" >&2
    exit 1
  fi
fi
FACEFLEET_EXTRAS=test,cpu bash "$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python scripts/typecheck.py  # mypy with pyproject's [tool.mypy], on the package as installed
.venv/bin/python -m pytest "$@"
