"""InsightFace-REST's own client (tests/ifr_client.py: its wire behaviour) against a real gunicorn service with
keys on, our default, and a trusted-network rule in place (127.0.0.2/32): the key added in its one documented line,
or no key at all from the trusted address; every call of the client parsed by the client's own models, the draw
endpoints, msgpack, and InsightFace-REST's semantics of size, limit_faces, min_face_size and num_det on a crowd."""

from __future__ import annotations

import base64
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import requests
from PIL import Image
from requests.adapters import HTTPAdapter

from .ifr_client import IFRClient, RecognitionResponse
from .server import Service, keyed_cpu_service

KEY = "ifr-client-test-key-0001"


@pytest.fixture(scope="module")
def served(default_pack: Path, cache_dir: Path, images_dir: Path, tmp_path_factory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("ifr-client")
    env = {
        "ROOT_IMAGES_DIR": str(images_dir),  # InsightFace-REST's name for the root of `urls` paths
        "FACEFLEET_ALLOW_URLS": "true",
        "FACEFLEET_URL_ALLOW": "127.0.0.2",
        "FACEFLEET_TRUSTED_NETWORKS": "127.0.0.2/32",  # a client that cannot send a header, on its own address
    }
    svc = keyed_cpu_service(default_pack, cache_dir, folder, KEY, **env)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture()
def client(served: Service) -> IFRClient:
    ifr = IFRClient(served.url)
    ifr.sess.headers["X-API-Key"] = KEY  # the one line docs/insightface-rest.md shows
    return ifr


class FromAddress(HTTPAdapter):
    """Connections from one local address (the trusted network's), as a client on that host would make them."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def test_without_the_key_line_it_is_refused(served: Service) -> None:
    assert requests.get(f"{served.url}/info", timeout=30).status_code == 401


def test_the_unchanged_client_is_served_from_a_trusted_network(served: Service, image_bytes) -> None:
    ifr = IFRClient(served.url)  # no key line
    ifr.sess.mount("http://", FromAddress("127.0.0.2"))
    assert ifr.server_info()["models"]["det_name"] == "yunet_2023mar_int8bq"
    parsed = ifr.extract([image_bytes("two_people.jpg")], mode="data", raw_response=False)
    assert len(parsed.data[0].faces or []) == 2
    assert "served from the trusted networks 127.0.0.2/32" in served.log.read_text()  # said at start-up


def test_server_info_reads_every_key_it_needs(client: IFRClient) -> None:
    info = client.server_info()
    models = info["models"]
    assert models["det_name"] == "yunet_2023mar_int8bq" and models["rec_name"] == "sface_2021dec_int8bq"
    assert models["inference_backend"] == "onnx" and models["max_size"] == [640, 640]
    assert isinstance(models["det_batch_size"], int) and isinstance(models["rec_batch_size"], int)
    assert models["detection"]["active_provider"] == "cpu"  # facefleet's own report stays beside them
    defaults = info["defaults"]
    assert defaults["return_face_data"] is False and defaults["extract_embedding"] is True
    assert isinstance(defaults["det_thresh"], float) and defaults["img_req_headers"] == {}
    assert {"log_level", "tensorrt_version"} <= set(info)


@pytest.mark.parametrize("use_msgpack", [True, False], ids=["msgpack", "json"])
def test_extract_parses_in_the_clients_own_models(client: IFRClient, image_bytes, use_msgpack: bool) -> None:
    photo = image_bytes("two_people.jpg")
    parsed = client.extract([photo], mode="data", use_msgpack=use_msgpack, raw_response=False, return_landmarks=True)
    assert isinstance(parsed, RecognitionResponse)
    [image] = parsed.data
    assert image.status == "ok" and image.faces is not None and len(image.faces) == 2
    for face in image.faces:
        assert face.bbox is not None and face.size is not None and face.vec is not None
        assert face.size <= face.bbox[2] - face.bbox[0] + 1  # the width, as InsightFace-REST defines size
        assert face.landmarks is not None and len(face.landmarks) == 5


def test_draw_endpoints_answer_the_first_image_as_jpeg(client: IFRClient, image_bytes) -> None:
    photo = image_bytes("two_people.jpg")
    for answer in (client.draw_detections(photo, draw_sizes=True), client.draw_multipart(photo, use_rotation="false")):
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        drawn = Image.open(io.BytesIO(answer.content))
        assert drawn.format == "JPEG" and drawn.size == Image.open(io.BytesIO(photo)).size


def test_msgpack_answers_are_float32_as_insightface_rest_packs_them(client: IFRClient, image_bytes) -> None:
    raw = client.extract([image_bytes("obama.jpg")], mode="data", use_msgpack=True)
    vec = raw["data"][0]["faces"][0]["vec"]
    assert all(np.float32(v) == v for v in vec)  # each value exactly a float32
    repacked = msgpack.packb(raw["data"][0]["faces"][0]["vec"], use_single_float=True)
    assert len(repacked) < 5 * len(vec) + 8  # 5 bytes a float32, not 9 a double


def test_paths_mode_reads_from_root_images_dir(client: IFRClient) -> None:
    parsed = client.extract(["obama.jpg"], mode="paths", use_msgpack=False, raw_response=False)
    assert parsed.data[0].status == "ok" and parsed.data[0].faces


def test_face_data_is_the_aligned_crop_as_base64_jpeg(client: IFRClient, image_bytes) -> None:
    raw = client.extract([image_bytes("obama.jpg")], mode="data", use_msgpack=False, return_face_data=True)
    face = raw["data"][0]["faces"][0]
    assert Image.open(io.BytesIO(base64.b64decode(face["facedata"]))).size == (112, 112)


def _ifr_filter(faces: list[dict], limit: int, min_size: float) -> list[tuple[int, list[float]]]:
    """InsightFace-REST's rule applied to the unfiltered faces (float boxes): with more than `limit`, the `limit`
    largest by area, largest first, numbered; then those narrower than `min_size` dropped."""
    boxes = [f["bbox"] for f in faces]
    order = list(range(len(boxes)))
    if limit and len(boxes) > limit:
        order = sorted(order, key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))[:limit]
    return [(n, boxes[i]) for n, i in enumerate(order) if boxes[i][2] - boxes[i][0] >= min_size]


@pytest.mark.parametrize(("limit", "min_size"), [(5, 0), (0, 60), (5, 60), (40, 45)])
def test_limit_faces_and_min_face_size_select_as_insightface_rest(
    served: Service, image_bytes, limit: int, min_size: int
) -> None:
    """On the Solvay photo (29 faces): the same faces, numbers and order as InsightFace-REST's rule picks."""
    photo = base64.b64encode(image_bytes("solvay_conference_1927.png")).decode()
    headers = {"X-API-Key": KEY}

    def ask(**options: object) -> list[dict]:
        body = {"images": {"data": [photo]}, "extract_embedding": False, "float_coords": True, **options}
        answer = requests.post(f"{served.url}/extract", json=body, headers=headers, timeout=120).json()
        return answer["data"][0]["faces"]

    every = ask()
    assert len(every) > 20
    chosen = ask(limit_faces=limit, min_face_size=min_size)
    expected = _ifr_filter(every, limit, min_size)
    assert [(f["num_det"], f["bbox"]) for f in chosen] == expected
    assert all(f["size"] == pytest.approx(f["bbox"][2] - f["bbox"][0], abs=0.06) for f in chosen)


@pytest.fixture(scope="module")
def photo_server(image_bytes) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A web server on 127.0.0.2 that serves a photo and records the headers of each request."""
    seen: list[dict[str, str]] = []
    photo = image_bytes("obama.jpg")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers.items()))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(photo)))
            self.end_headers()
            self.wfile.write(photo)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.2:{server.server_port}/obama.jpg", seen
    server.shutdown()
    server.server_close()


def test_img_req_headers_go_with_the_download(client: IFRClient, photo_server) -> None:
    url, seen = photo_server
    headers = {"User-Agent": "Mozilla/5.0 test", "Referer": "https://example.org/"}
    parsed = client.extract([url], mode="paths", use_msgpack=False, raw_response=False, img_req_headers=headers)
    assert parsed.data[0].status == "ok"
    assert seen[-1]["User-Agent"] == "Mozilla/5.0 test" and seen[-1]["Referer"] == "https://example.org/"


def test_bad_img_req_headers_are_a_clear_400(served: Service) -> None:
    for headers, said in (({"Host": "internal"}, "set by the downloader"), ({"X-A": "a\r\nB: c"}, "no line break")):
        body = {"images": {"urls": ["http://127.0.0.2/x.jpg"]}, "img_req_headers": headers}
        answer = requests.post(f"{served.url}/extract", json=body, headers={"X-API-Key": KEY}, timeout=30)
        assert answer.status_code == 400 and said in answer.json()["error"]["message"]


def test_masks_and_gender_age_without_models_are_null_with_the_reason(served: Service, image_bytes) -> None:
    body = {
        "images": {"data": [base64.b64encode(image_bytes("obama.jpg")).decode()]},
        "detect_masks": True,
        "extract_ga": True,
    }
    answer = requests.post(f"{served.url}/extract", json=body, headers={"X-API-Key": KEY}, timeout=60).json()
    face = answer["data"][0]["faces"][0]
    assert face["mask"] is None and face["mask_probs"] is None and "no mask model" in face["mask_error"]
    assert face["gender"] is None and face["age"] is None and "no gender/age model" in face["ga_error"]


def test_embed_only_also_answers_insightface_rest_top_level_keys(client: IFRClient, image_bytes) -> None:
    crop = Image.open(io.BytesIO(image_bytes("obama.jpg"))).convert("RGB").resize((112, 112))
    buffer = io.BytesIO()
    crop.save(buffer, "JPEG")
    raw = client.extract([buffer.getvalue()], mode="data", use_msgpack=False, embed_only=True)
    assert raw["status"] == "ok" and raw["took_ms"] == raw["took"]["total_ms"]
    assert len(raw["data"][0]["faces"]) == 1 and raw["data"][0]["faces"][0]["bbox"] == [0, 0, 112, 112]


def test_a_detectors_own_mask_score_fills_mask_and_mask_probs() -> None:
    """RetinaFace mnet_cov2 scores masks itself: with detect_masks its score answers (InsightFace-REST drops it)."""
    from facefleet.contract.faces import FaceOptions, face_fields
    from facefleet.engine.pipeline import Face

    box, marks = np.array([10, 10, 60, 70], np.float32), np.zeros((5, 2), np.float32)
    masked = face_fields(Face(box, 0.9, marks, mask_score=0.7), FaceOptions(masks=True))
    assert masked["mask"] is True and masked["mask_probs"] == {"mask": 0.7, "no_mask": 0.3}
    assert "mask_error" not in masked
    bare = face_fields(Face(box, 0.9, marks, mask_score=0.1), FaceOptions(masks=True))
    assert bare["mask"] is False
    unasked = face_fields(Face(box, 0.9, marks, mask_score=0.7), FaceOptions())
    assert unasked["mask"] is None and unasked["mask_probs"] is None
