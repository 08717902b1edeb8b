"""The Jetson's hardware decoder path on JetPack 6's GStreamer: Ubuntu 22.04's (jammy's) 1.20.3, for real.

A jammy amd64 tree made with mmdebstrap from Ubuntu's archive (`--variant=essential`: only the GStreamer packages
the pipeline and the FAKE elements need and their dependencies, no recommends, no docs), cached as a tarball
under .cache/jammy/ by its suites and package list. Each program of it runs through a wrapper (`jammy_program`):
its own mount namespace (`unshare --mount`, so nothing is left mounted on this machine), /proc, this checkout
bind-mounted read-only at its own path (streams/gstlaunch.py, the FAKE elements of tests/fake_jetson_gst/ and the
test videos of .cache/test-media are where the host sees them), then `chroot` and a clean environment. The
network is the host's: rtspsrc inside reaches GStreamer's RTSP server on this machine's loopback.

So the source (streams/source.py, on this machine's Python and PyAV) runs **our** streams/gstlaunch.py under
Ubuntu's python3 3.10 with Ubuntu's PyGObject and GStreamer 1.20.3, the probe of streams/decoders.py asks jammy's
gst-inspect-1.0, and only `nvv4l2decoder` and `nvvidconv` are FAKE (tests/fake_jetson_gst/, loaded by jammy's
gstreamer1.0-python3-plugin-loader, jammy's avdec_* inside). The one seam: `gstreamer.available()` answers the
wrapper instead of /usr/bin/python3.

The archive's key: Debian bookworm has no ubuntu-keyring package, so the key comes from Ubuntu's own
ubuntu-keyring .deb (jammy's version, over http; its file holding the Ubuntu Archive Automatic Signing Key (2018)
alone) and is trusted only because (1) that file's bytes have the SHA-256 pinned here and (2) gpgv says jammy's
InRelease is signed with it by the key's fingerprint, pinned here as Ubuntu publishes it. apt in mmdebstrap then
verifies every index and package against it.

Skipped (one line) only when the archive cannot be reached and no tarball is cached; anything else failing fails.
Timings (the tree's build or cache hit, the unpack) go to test-artifacts/jammy.json."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from facefleet.streams import decoders, gstreamer
from facefleet.streams.location import locate
from tests import test_streams_source as source_tests
from tests.media import RtspServer, Video, make_video
from tests.test_streams_gstreamer import (
    FAKES,
    assert_file_camera_like_ffmpeg,
    assert_rtsp_at_the_rate,
    missing_from,
)
from tests.test_streams_source import PHOTOS

pytestmark = pytest.mark.slow
video = source_tests.video  # the fixtures: the photos' video, and GStreamer's RTSP server serving it
rtsp = source_tests.rtsp

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "jammy"
ARTIFACTS = ROOT / "test-artifacts"
MIRROR = os.environ.get("FACEFLEET_UBUNTU_MIRROR", "http://archive.ubuntu.com/ubuntu")  # http: no TLS proxy issue
SUITES = ("jammy", "jammy-updates")  # 1.20.3 is in jammy-updates (jammy itself has 1.20.1)
COMPONENTS = "main,universe"
PACKAGES = [
    "gstreamer1.0-tools",  # gst-inspect-1.0, the probe's
    "gstreamer1.0-plugins-base",  # parsebin, videorate, videoconvert; decodebin in the FAKE decoder
    "gstreamer1.0-plugins-good",  # rtspsrc, rtph264depay, rtph265depay, qtdemux, y4menc
    "gstreamer1.0-plugins-bad",  # h264parse, h265parse
    "gstreamer1.0-libav",  # avdec_h264, avdec_h265 in the FAKE decoder
    "python3-gi",  # streams/gstlaunch.py's PyGObject
    "gir1.2-gstreamer-1.0",
    "python3-gst-1.0",  # the FAKE elements' Gst overrides
    "gstreamer1.0-python3-plugin-loader",  # loads the FAKE elements
]
# Ubuntu's archive key: jammy's ubuntu-keyring (2021.03.26), its file holding the 2018 archive key alone.
KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb"
KEYRING_MEMBER = "./etc/apt/trusted.gpg.d/ubuntu-keyring-2018-archive.gpg"
KEYRING_SHA256 = "bfdb0512804d0740816d836bb05b1ef8b27609771d7b9962c95bcc57bfaac230"
ARCHIVE_KEY = "F6ECB3762474EDA9D21B7022871920D1991BC93C"  # Ubuntu Archive Automatic Signing Key (2018)
WRAPPER = """#!/bin/sh
# Ubuntu jammy's {program} in {root} (tests/test_streams_gstreamer_jammy.py): its own mount namespace, /proc,
# this checkout read-only at its own path, a clean environment but GST_PLUGIN_PATH.
exec unshare --mount --propagation private /bin/sh -c '
root=$1 tree=$2 program=$3; shift 3
mount -t proc proc "$root/proc" && mount --bind -o ro "$tree" "$root$tree" || exit 126
registry=/var/tmp/gst-registry-plain.bin
[ -n "$GST_PLUGIN_PATH" ] && registry=/var/tmp/gst-registry-fakes.bin
exec chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 HOME=/root PYTHONDONTWRITEBYTECODE=1 \\
  GST_REGISTRY=$registry ${{GST_PLUGIN_PATH:+GST_PLUGIN_PATH=$GST_PLUGIN_PATH}} "$program" "$@"
' sh {root} {tree} {program} "$@"
"""


@dataclass(frozen=True)
class Jammy:
    root: Path
    python: Path  # Ubuntu's /usr/bin/python3 in the tree, through the wrapper
    gst_inspect: Path


def run(*argv: str, timeout: int = 600, data: bytes | None = None) -> bytes:
    done = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    return done.stdout


def fetch(path: str) -> bytes:
    """A file of the archive; a skip when the archive cannot be reached."""
    try:
        with urllib.request.urlopen(f"{MIRROR}/{path}", timeout=20) as answer:
            return bytes(answer.read())
    except (urllib.error.URLError, OSError) as exc:
        pytest.skip(f"Ubuntu's archive cannot be reached ({MIRROR}: {exc})")


def archive_keyring(folder: Path) -> Path:
    """The 2018 archive key from jammy's ubuntu-keyring package, checked as the module's docstring says."""
    keyring = folder / "ubuntu-2018-archive.gpg"
    deb = fetch(KEYRING_DEB)
    folder.mkdir(parents=True, exist_ok=True)
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", "/dev/stdin"], input=deb, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(data.stdout)) as tar:
        member = tar.extractfile(KEYRING_MEMBER)
        assert member is not None, f"{KEYRING_DEB} has no {KEYRING_MEMBER}"
        key = member.read()
    assert hashlib.sha256(key).hexdigest() == KEYRING_SHA256, f"{KEYRING_MEMBER} of {KEYRING_DEB} is not the one pinned"
    keyring.write_bytes(key)
    release = folder / "InRelease"
    release.write_bytes(fetch(f"dists/{SUITES[0]}/InRelease"))
    status = run("gpgv", "--status-fd=1", f"--keyring={keyring}", str(release)).decode()
    signers = [line.split()[-1] for line in status.splitlines() if line.startswith("[GNUPG:] VALIDSIG ")]
    assert signers == [ARCHIVE_KEY], status
    return keyring


def tarball_path() -> Path:
    """Where the jammy tree's tarball is cached: keyed by suites, components and package list."""
    key = hashlib.sha256(f"{' '.join(SUITES)} {COMPONENTS} essential {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    return CACHE / f"jammy-amd64-gstreamer-{key}.tar"


def rootfs_tarball() -> Path:
    """The jammy tree as a tarball, built once (see the module's docstring); one build at a time (.ci/run starts
    one in the background while the suite runs, and this test waits for it)."""
    tarball = tarball_path()
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return tarball if tarball.exists() else _build(tarball)


def _build(tarball: Path) -> Path:
    keyring = archive_keyring(CACHE / "keyring")
    partial = tarball.with_suffix(".partial.tar")
    command = [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--variant=essential",
        f"--keyring={keyring}",
        f"--components={COMPONENTS}",
        f"--include={','.join(PACKAGES)}",
        '--aptopt=APT::Install-Recommends "false"',
        *(f"--dpkgopt=path-exclude=/usr/share/{folder}/*" for folder in ("doc", "man", "locale")),
        SUITES[0],
        str(partial),
        *(f"deb {MIRROR} {suite} {COMPONENTS.replace(',', ' ')}" for suite in SUITES),
    ]
    run(*command, timeout=1800)
    partial.rename(tarball)
    return tarball


def jammy_program(root: Path, program: str, out: Path) -> Path:
    """A wrapper running `program` of the tree (see WRAPPER)."""
    out.write_text(WRAPPER.format(program=program, root=root, tree=ROOT))
    out.chmod(0o755)
    return out


@pytest.fixture(scope="module")
def jammy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jammy]:
    assert gstreamer.RUNNER.is_relative_to(ROOT), gstreamer.RUNNER  # visible inside at its own path
    assert " " not in str(ROOT) and " " not in str(FAKES)
    timings: dict[str, float] = {}
    start = time.monotonic()
    cached = tarball_path().exists()
    tarball = rootfs_tarball()
    timings["rootfs_s" if not cached else "rootfs_cached_s"] = time.monotonic() - start
    mark = time.monotonic()
    folder = tmp_path_factory.mktemp("jammy")
    root = folder / "root"
    root.mkdir()
    run("tar", "--numeric-owner", "-xf", str(tarball), "-C", str(root))
    (root / ROOT.relative_to("/")).mkdir(parents=True, exist_ok=True)
    timings["unpack_s"] = time.monotonic() - mark
    try:
        yield Jammy(
            root,
            jammy_program(root, "/usr/bin/python3", folder / "python3"),
            jammy_program(root, "/usr/bin/gst-inspect-1.0", folder / "gst-inspect-1.0"),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)  # nothing is mounted there: the mounts were the children's own
    timings["total_s"] = time.monotonic() - start
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "jammy.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2))


@pytest.fixture
def fake_jetson_on_jammy(jammy: Jammy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> decoders.HardwareProbe:
    """FAKE Jetson on jammy: the FAKE elements on GST_PLUGIN_PATH, a FAKE /dev with an NVDEC node; the real probe
    of decoders.py run against jammy's gst-inspect-1.0 and python3, and the pipeline run by jammy's python3."""
    monkeypatch.setenv("GST_PLUGIN_PATH", str(FAKES))
    monkeypatch.setattr(gstreamer, "available", lambda python=None: str(jammy.python))
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvhost-nvdec").touch()
    probe = decoders.probe_hardware(str(jammy.gst_inspect), dev=dev, python=str(jammy.python))
    assert probe.present, probe.reason
    assert probe.gstreamer.startswith("1.20."), probe
    return probe


def gst_version(gst_inspect: Path | str) -> str:
    return next(line for line in run(str(gst_inspect), "--version").decode().splitlines() if line.startswith("GStr"))


def test_jammy_has_gstreamer_1_20_with_every_element_and_property_of_the_pipeline(
    jammy: Jammy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GST_PLUGIN_PATH", raising=False)
    assert gst_version(jammy.gst_inspect).startswith("GStreamer 1.20."), gst_version(jammy.gst_inspect)
    assert missing_from(str(jammy.gst_inspect)) == []
    python = run(str(jammy.python), "-c", "import sys; print(sys.version_info[:2])").decode()
    assert python.strip() == "(3, 10)", python  # JetPack 6's Python
    monkeypatch.setenv("GST_PLUGIN_PATH", str(FAKES))
    for element in ("nvv4l2decoder", "nvvidconv"):  # the FAKEs load on 1.20's Python plugin loader
        assert "Long-name                FAKE " in run(str(jammy.gst_inspect), element).decode()


def test_a_file_camera_decodes_through_nvv4l2decoder_on_1_20_like_ffmpeg(
    fake_jetson_on_jammy: decoders.HardwareProbe, video: Video
) -> None:
    assert_file_camera_like_ffmpeg(video, fake_jetson_on_jammy)


def test_an_rtsp_camera_decodes_through_nvv4l2decoder_on_1_20_at_the_rate(
    fake_jetson_on_jammy: decoders.HardwareProbe, rtsp: RtspServer
) -> None:
    assert_rtsp_at_the_rate(rtsp, fake_jetson_on_jammy)


def y4m_frame_sizes(stream: bytes) -> tuple[str, list[int]]:
    """A YUV4MPEG2 stream's header and the bytes each of its frames holds (all frames of one size here)."""
    header, _, rest = stream.partition(b"\n")
    first = rest.find(b"FRAME\n", 6)
    size = (len(rest) if first < 0 else first) - 6
    count, left = divmod(len(rest), size + 6)
    assert left == 0 and all(rest.startswith(b"FRAME\n", i * (size + 6)) for i in range(count)), "not uniform"
    return header.decode(), [size] * count


def decoded(python: str, video: Path, *, convert: bool) -> tuple[str, list[int]]:
    """The video's YUV4MPEG2 from streams/gstlaunch.py under `python`: the pipeline's own (the FAKE decoder's NV12
    converted to I420 by videoconvert), or a decoder's I420 passed through (avdec_h264 straight into y4menc)."""
    if convert:
        tokens = gstreamer.render(locate(str(video)), "h264", fps=0, realtime=False).tokens
    else:
        tokens = ["filesrc", f"location={video}", "!", "parsebin", "!", "h264parse", "!", "avdec_h264", "!", "y4menc"]
        tokens += ["!", "fdsink", "fd=1"]
    return y4m_frame_sizes(run(python, str(gstreamer.RUNNER), data=(json.dumps(tokens) + "\n").encode()))


def test_y4menc_writes_the_same_rows_on_1_20_as_on_1_22(
    jammy: Jammy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, images_dir: Path, video: Video
) -> None:
    """What `refusal` rests on, on both versions: converted I420 is packed when the width is a multiple of 8 and the
    height even, and padded to 4-byte rows otherwise (642x482: rows of 644 and 324 bytes); a decoder's own buffers
    passed through are padded (y4menc writes a buffer as it is)."""
    monkeypatch.setenv("GST_PLUGIN_PATH", str(FAKES))
    monkeypatch.setenv("GST_REGISTRY", str(tmp_path / "registry.bin"))  # Debian's, with the FAKEs: not the user's
    odd = make_video([images_dir / PHOTOS[0]], seconds=1.0, gap_s=0.5, fps=10, size=(642, 482))
    packed = {(640, 480): 640 * 480 * 3 // 2, (642, 482): 642 * 482 + 2 * 321 * 241}  # what PyAV expects
    converted = {(640, 480): packed[(640, 480)], (642, 482): 644 * 482 + 2 * 324 * 241}  # rows padded to 4 bytes
    for movie, (width, height) in ((video, (640, 480)), (odd, (642, 482))):
        header = f"YUV4MPEG2 C420 W{width} H{height} Ip F10:1 A1:1"
        frames = round(movie.duration_s * movie.fps)
        on_jammy = decoded(str(jammy.python), movie.path, convert=True)
        assert on_jammy == (header, [converted[width, height]] * frames), on_jammy[1][:3]
        assert decoded(gstreamer.SYSTEM_PYTHON, movie.path, convert=True) == on_jammy  # Debian's 1.22: the same
        through = decoded(str(jammy.python), movie.path, convert=False)
        assert through[1][0] > packed[width, height], through[1][0]  # padded
        assert decoded(gstreamer.SYSTEM_PYTHON, movie.path, convert=False) == through
