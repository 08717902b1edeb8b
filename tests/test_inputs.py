"""What InsightFace-REST clients send is taken (issue 19): base64 as encoders write it (MIME line
breaks, a data-URI prefix, the URL-safe alphabet) and GIF and TIFF images, made here with Pillow
from a shared photo (never committed) and posted to a real service under gunicorn with keys on."""

from __future__ import annotations

import base64
import io
import os
import tracemalloc

import cv2
import numpy as np
import pytest
import requests
from PIL import Image

from facefleet.api.sources import from_base64
from facefleet.errors import ImageError

from .server import Service, keyed_cpu_service
from .test_decode import _gif_declaring, _tiff_declaring

PHOTO = "two_people.jpg"  # two faces
KEY = "inputs-test-key-of-issue-19-0001"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mime(data: bytes) -> str:
    """base64 as MIME encoders write it: CRLF after every 76 characters."""
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


# ----------------------------------------------------------------- base64 as encoders write it
RAW = bytes(range(256)) * 3  # every byte: its base64 holds "+" and "/", its URL-safe form "-" and "_"


@pytest.mark.parametrize(
    "text",
    [
        base64.encodebytes(RAW).decode(),  # LF every 76 characters
        mime(RAW),
        " \t" + b64(RAW).replace("A", " A\t") + "\n",
        "data:image/png;base64," + mime(RAW),
        "\r\n  data:image/jpeg;base64,\r\n" + mime(RAW),
        "DATA:image/gif;base64," + b64(RAW),
    ],
    ids=["LF", "CRLF", "spaces and tabs", "data URI", "data URI after whitespace", "DATA:"],
)
def test_base64_as_encoders_write_it_is_decoded(text):
    assert from_base64(text) == RAW


def test_the_url_safe_alphabet_is_decoded():
    """InsightFace-REST drops "-" and "_" (wrong bytes); facefleet reads them as RFC 4648 §5 means them."""
    text = base64.urlsafe_b64encode(RAW).decode()
    assert "-" in text and "_" in text
    assert from_base64(text) == from_base64("\n".join([text[:100], text[100:]])) == RAW


@pytest.mark.parametrize(
    "text",
    [
        "QUJD*RA==",
        "QUJD.RA==",
        "QUJDRA",
        "QUJDR===",
        "QUJD=QUJD",
        "   \r\n ",
        "data:image/png;base64,",
        "data:QUJD",
        "é",
    ],
    ids=["star", "dot", "no padding", "three =", "= inside", "only whitespace", "bare prefix", "no comma", "not ASCII"],
)
def test_other_characters_and_missing_padding_are_refused(text):
    """Stricter than InsightFace-REST on purpose: it drops unknown characters and decodes what is left
    (a different image); a missing `=` is a string cut short there and here."""
    with pytest.raises(ImageError, match=r"^invalid base64 image data$"):
        from_base64(text)


def test_an_empty_string_stays_an_empty_image():
    assert from_base64("") == b""  # decode_image answers "empty input", as before


@pytest.mark.parametrize("wrap", [b64, mime], ids=["plain", "MIME lines"])
def test_a_large_image_is_decoded_without_copies_of_its_text(wrap):
    """About 32 MB of text: the peak is one working copy of it and the decoded bytes, or with line breaks
    the working copy and its cleaned copy (the first is freed before decoding). One more copy of the
    text anywhere would add 32 MB; b64decode alone peaks at the first figure."""
    raw = os.urandom(24_000_000)
    text = wrap(raw)
    tracemalloc.start()
    try:
        decoded = from_base64(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded == raw
    expected = len(text) + max(len(raw), len(text) if wrap is mime else 0)
    assert peak < expected + 4_000_000, (peak, expected)


# ----------------------------------------------------------------- the served API, keys on
@pytest.fixture(scope="module")
def service(default_pack, cache_dir, tmp_path_factory) -> Service:
    folder = tmp_path_factory.mktemp("inputs")
    svc = keyed_cpu_service(default_pack, cache_dir, folder, KEY)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def photo(image_bytes) -> bytes:
    return image_bytes(PHOTO)


def post(service: Service, path: str, **kwargs) -> requests.Response:
    return requests.post(f"{service.url}{path}", headers={"X-API-Key": KEY}, timeout=120, **kwargs)


def extract(service: Service, data: list[str]) -> list[dict]:
    response = post(service, "/extract", json={"images": {"data": data}})
    assert response.status_code == 200, response.text[:300]
    return response.json()["data"]


def saved(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def boxes(result: dict) -> list[list[float]]:
    assert result["status"] == "ok", result
    return sorted([float(v) for v in face["bbox"]] for face in result["faces"])


def test_gif_and_tiff_find_the_faces_of_the_jpeg(service, photo):
    """The same two faces; the boxes where the JPEG has them when the pixels are the same (lossless
    TIFF), within a few pixels of faces about 200 high when they are not (GIF's 256 colours, JPEG in TIFF)."""
    picture = Image.open(io.BytesIO(photo))
    pages = saved(picture, "TIFF", save_all=True, append_images=[Image.new("RGB", picture.size, "grey")])
    versions = {
        "GIF": saved(picture, "GIF"),
        "TIFF LZW": saved(picture, "TIFF", compression="tiff_lzw"),
        "TIFF deflate": saved(picture, "TIFF", compression="tiff_adobe_deflate"),
        "TIFF JPEG": saved(picture, "TIFF", compression="jpeg"),
        "TIFF CMYK PackBits": saved(picture.convert("CMYK"), "TIFF", compression="packbits"),
        "TIFF of two pages": pages,
    }
    data = [b64(photo), *map(b64, versions.values())]
    keyless = requests.post(f"{service.url}/extract", json={"images": {"data": data[1:2]}}, timeout=60)
    assert keyless.status_code == 401  # keys on, as on every appliance
    jpeg, *others = extract(service, data)
    expected = boxes(jpeg)
    assert len(expected) == 2
    for name, result in zip(versions, others, strict=True):
        found = boxes(result)
        assert len(found) == len(expected), name
        tolerance = 8.0 if name in ("GIF", "TIFF JPEG") else 0.5  # 4 % of the face, or none
        assert np.abs(np.array(found) - np.array(expected)).max() <= tolerance, (name, found, expected)


def test_an_animated_gif_is_answered_for_its_first_frame(service, photo):
    picture = Image.open(io.BytesIO(photo)).convert("RGB")
    blank = Image.new("RGB", picture.size, "grey")
    faces_first = saved(picture, "GIF", save_all=True, append_images=[blank], duration=100, loop=0)
    blank_first = saved(blank, "GIF", save_all=True, append_images=[picture], duration=100, loop=0)
    assert Image.open(io.BytesIO(faces_first)).n_frames == Image.open(io.BytesIO(blank_first)).n_frames == 2
    first, second = extract(service, [b64(faces_first), b64(blank_first)])
    assert len(boxes(first)) == 2 and boxes(second) == []


def test_base64_with_mime_lines_and_a_data_uri_is_answered_like_the_plain_one(service, photo):
    variants = [
        b64(photo),
        mime(photo),
        "data:image/jpeg;base64," + mime(photo),
        "\n  data:image/jpeg;base64," + b64(photo),
        base64.urlsafe_b64encode(photo).decode(),
    ]
    results = extract(service, variants)
    answers = [[{k: v for k, v in face.items() if k != "took_ms"} for face in r["faces"]] for r in results]
    assert len(answers[0]) == 2 and all(answer == answers[0] for answer in answers), answers


def test_huge_declared_and_broken_gif_or_tiff_fail_alone(service, photo):
    """Refused from their headers with the too-large error; a broken TIFF is its own error; the photo of
    the same request is answered."""
    tiff = saved(Image.open(io.BytesIO(photo)), "TIFF", compression="tiff_lzw")
    garbled = bytearray(tiff)
    garbled[4000:40000] = b"\xff" * 36000
    bad = [_gif_declaring(60000, 60000), _tiff_declaring(60000, 60000), tiff[: len(tiff) // 2], bytes(garbled)]
    good, *failed = extract(service, [b64(photo), *map(b64, bad)])
    assert len(boxes(good)) == 2
    assert [r["status"] for r in failed] == ["failed"] * 4 and all(r["faces"] == [] for r in failed)
    assert [r["error"]["code"] for r in failed] == ["image_too_large"] * 2 + ["bad_image"] * 2
    too_large = "image of 60000x60000 = 3600.0 megapixels exceeds the limit of 40 megapixels"
    assert [r["error"]["message"] for r in failed[:2]] == [too_large] * 2
    assert all(r["error"]["message"].startswith("truncated or corrupt TIFF data") for r in failed[2:]), failed


def test_gif_and_tiff_headers_count_against_the_request_budget(service):
    """6000 x 6000 each, under the per-image limit: together over the 64-megapixel budget, 413 before decoding."""
    response = post(
        service,
        "/extract",
        json={"images": {"data": [b64(_gif_declaring(6000, 6000)), b64(_tiff_declaring(6000, 6000))]}},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_pixels"


def test_the_draw_routes_take_gif_tiff_and_wrapped_base64(service, photo):
    picture = Image.open(io.BytesIO(photo))
    for name, data in {"GIF": saved(picture, "GIF"), "TIFF": saved(picture, "TIFF", compression="tiff_lzw")}.items():
        upload = post(service, "/multipart/draw_detections", files={"file": (f"photo.{name.lower()}", data)})
        assert upload.status_code == 200 and upload.headers["Content-Type"] == "image/jpeg", (name, upload.text[:300])
        drawn = cv2.imdecode(np.frombuffer(upload.content, np.uint8), cv2.IMREAD_COLOR)
        assert drawn.shape[:2] == (picture.height, picture.width), name
    wrapped = post(service, "/draw_detections", json={"images": {"data": ["data:image/jpeg;base64," + mime(photo)]}})
    assert wrapped.status_code == 200 and wrapped.headers["Content-Type"] == "image/jpeg"
    huge = post(service, "/multipart/draw_detections", files={"file": ("huge.tif", _tiff_declaring(60000, 60000))})
    assert huge.status_code == 400 and huge.json()["error"]["code"] == "image_too_large"
