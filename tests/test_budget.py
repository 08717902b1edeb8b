"""The per-request pixel budget (FACEFLEET_MAX_REQUEST_PIXELS): what the images of one request declare
in their headers is summed before any is decoded, on every route that decodes images, with the real
default pack through the real app."""

from __future__ import annotations

import base64
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefleet.api import create_app
from facefleet.app.enrol import BuildGallery, build_gallery
from facefleet.engine.pipeline import FaceEngine
from facefleet.galleries import bundle
from facefleet.settings import Settings

BOMB_SIDE, BOMB_COUNT = 6000, 64
DECODED_BOMB_MB = BOMB_SIDE * BOMB_SIDE * 3 / 1e6  # ONE of its images as the engine holds it: 108 MB


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int, mode: str = "L") -> bytes:
    """A blank PNG: a few kilobytes whatever its size, as a bomb's images are."""
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


def reset_peak_rss() -> None:
    """Start a new peak: writing 5 to clear_refs resets this process's VmHWM (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


@pytest.fixture(scope="module")
def settings_for(default_pack, cache_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("budget")
    apps = itertools.count()

    def make(**overrides) -> Settings:
        values = {
            "models_dir": str(default_pack),
            "cache_dir": str(cache_dir),
            "gallery_db": str(folder / f"galleries-{next(apps)}.sqlite3"),  # each app its own
            "providers": ("cpu",),
            "auth": "off",
        }
        return Settings.of(**{**values, **overrides})

    return make


@pytest.fixture(scope="module")
def client(settings_for):
    """The service as shipped: the default budget."""
    return create_app(settings_for()).test_client()


def test_the_png_bomb_is_refused_with_413_and_nothing_is_decoded(client):
    """64 blank 6000 x 6000 PNGs: 9 MB of JSON that decoded would hold 7 GB. The headers alone refuse
    them, so the process's peak memory grows by less than ONE of those images would take decoded."""
    bomb = b64(png(BOMB_SIDE, BOMB_SIDE))
    body = {"images": {"data": [bomb] * BOMB_COUNT}}
    client.post("/extract", json={"images": {"data": [b64(png(64, 64))]}})  # first-request costs paid before
    reset_peak_rss()
    before = peak_rss_mb()
    response = client.post("/extract", json=body)
    grown = peak_rss_mb() - before
    assert response.status_code == 413, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "too_many_pixels"
    total = BOMB_COUNT * BOMB_SIDE * BOMB_SIDE
    assert error["message"].startswith("images: the 64 images of this request declare")
    assert f"{total:,} pixels" in error["message"] and "64,000,000" in error["message"]
    assert grown < DECODED_BOMB_MB, f"peak RSS grew by {grown:.0f} MB: an image was decoded"


def test_the_limit_is_the_sum_and_a_request_at_it_is_answered(settings_for):
    small = create_app(settings_for(max_request_pixels=2 * 500 * 400)).test_client()
    two = [b64(png(500, 400, "RGB"))] * 2
    at_limit = small.post("/extract", json={"images": {"data": two}})
    assert at_limit.status_code == 200 and [r["status"] for r in at_limit.get_json()["data"]] == ["ok", "ok"]
    over = small.post("/extract", json={"images": {"data": [*two, b64(png(1, 1))]}})
    assert over.status_code == 413 and over.get_json()["error"]["code"] == "too_many_pixels"


def test_an_image_over_max_pixels_still_fails_alone_and_counts_nothing(settings_for):
    """It is refused from its header by the per-image limit; the budget does not refuse its request."""
    small = create_app(settings_for(max_pixels=1_000_000, max_request_pixels=1_000_000)).test_client()
    data = [b64(png(2000, 1000)), b64(png(800, 800))]
    answer = small.post("/extract", json={"images": {"data": data}})
    assert answer.status_code == 200
    assert [r["status"] for r in answer.get_json()["data"]] == ["failed", "ok"]
    assert answer.get_json()["data"][0]["error"]["code"] == "image_too_large"


def test_every_route_that_decodes_images_keeps_the_budget(settings_for):
    """/extract (also embed_only), /verify, both draw routes, enrolment and search: 413 too_many_pixels."""
    budget = 1_000_000
    app = create_app(settings_for(max_request_pixels=budget, max_pixels=4_000_000))
    client = app.test_client()
    big = png(1200, 1000)  # 1.2 MP: over the budget alone, under max_pixels
    images = {"data": [b64(big)]}
    assert client.post("/galleries", json={"name": "staff"}).status_code == 201
    calls = {
        "/extract": client.post("/extract", json={"images": images}),
        "/extract embed_only": client.post("/extract", json={"images": images, "embed_only": True}),
        "/verify": client.post("/verify", json={"images": {"data": [b64(png(10, 10)), b64(big)]}}),
        "/draw_detections": client.post("/draw_detections", json={"images": images}),
        "/multipart/draw_detections": client.post(
            "/multipart/draw_detections", data={"file": (io.BytesIO(big), "big.png")}
        ),
        "enrol": client.post("/galleries/staff/subjects", json={"subject": "ann", "images": images}),
        "search": client.post("/galleries/staff/search", json={"images": images}),
    }
    answers = {route: (r.status_code, (r.get_json() or {}).get("error", {}).get("code")) for route, r in calls.items()}
    assert answers == dict.fromkeys(calls, (413, "too_many_pixels"))


def test_a_gallery_build_runs_a_subjects_photos_in_groups_within_the_budget(settings_for, image_bytes, tmp_path):
    """The command line's build is one engine call per group of photos that fits the budget, so a
    subject with more photos than one request may hold is still enrolled whole."""
    photos = ("obama.jpg", "obama2.jpg", "obama3.jpg")
    largest = max(
        Image.open(io.BytesIO(image_bytes(name))).size[0] * Image.open(io.BytesIO(image_bytes(name))).size[1]
        for name in photos
    )
    for name in photos:
        (tmp_path / "people" / "obama").mkdir(parents=True, exist_ok=True)
        (tmp_path / "people" / "obama" / name).write_bytes(image_bytes(name))
    settings = settings_for(max_request_pixels=largest)  # one photo per call
    built = build_gallery(settings, BuildGallery(tmp_path / "people"), FaceEngine.from_settings(settings))
    assert (built.subjects, built.faces, built.skipped) == (1, 3, ())
    header, _, vectors = bundle.unpack(built.data)
    assert header["name"] == "people" and len(vectors) == 3 and np.isfinite(vectors).all()


def test_facefleet_detect_over_more_photos_than_one_budget_answers_them_all(
    default_pack, cache_dir, images_dir, monkeypatch, capsys
):
    """The command line runs its photos through the engine in groups that fit the budget, so a folder
    of photos larger in all than one request may be is still answered photo by photo."""
    from facefleet.cli import main

    photos = [images_dir / name for name in ("obama.jpg", "obama2.jpg", "biden.jpg")]
    largest = max(Image.open(p).size[0] * Image.open(p).size[1] for p in photos)
    env = {"MODELS_DIR": str(default_pack), "CACHE_DIR": str(cache_dir), "PROVIDERS": "cpu"}
    for name, value in {**env, "MAX_REQUEST_PIXELS": str(largest)}.items():
        monkeypatch.setenv(f"FACEFLEET_{name}", value)
    assert main(["detect", *map(str, photos), "--no-embed"]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if "face(s)" in line] == [str(p) for p in photos]
