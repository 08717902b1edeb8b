"""The HTTP API through Flask's test client, on the real default pack and real photos:
InsightFace-REST compatibility, every bad input, msgpack, OpenAPI conformance, URL guard."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import re
import threading
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from PIL import Image
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from facefleet.api import create_app
from facefleet.contract.openapi import document
from facefleet.engine.pipeline import FaceEngine
from facefleet.models.manifest import load_manifest

from .test_decode import _png_header_declaring


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def settings_for(default_pack, cache_dir, tmp_path_factory):
    from facefleet.settings import Settings

    root = tmp_path_factory.mktemp("images-root")

    def make(**overrides):
        values = {
            "models_dir": str(default_pack),
            "cache_dir": str(cache_dir),
            "providers": ("cpu",),
            "images_root": str(root),
            "auth": "off",
        }
        values.update(overrides)
        return Settings.of(**values)

    make.images_root = root
    return make


@pytest.fixture(scope="module")
def client(settings_for):
    return create_app(settings_for()).test_client()


@pytest.fixture(scope="module")
def photos(image_bytes):
    return {name: image_bytes(name) for name in ("two_people.jpg", "biden.jpg", "obama.jpg", "impostor_1.jpg")}


# ----------------------------------------------------------------- OpenAPI conformance
SPEC = document(auth=False)
REGISTRY = Registry().with_resource("urn:facefleet", DRAFT202012.create_resource(SPEC))


def conforms(payload, schema_name: str) -> None:
    schema = {"$ref": f"urn:facefleet#/components/schemas/{schema_name}"}
    Draft202012Validator(schema, registry=REGISTRY).validate(payload)


def test_openapi_document_is_valid_and_served(client):
    """The served document is the one built from the models, valid OpenAPI 3.1, with or without keys."""
    validate_spec(SPEC)
    validate_spec(document(auth=True, open_paths=("/livez", "/health")))
    assert client.get("/openapi.json").get_json() == SPEC


def test_the_document_declares_keys_only_when_authentication_is_on(settings_for):
    """Security schemes, 401s and open paths with keys on; none of them with FACEFLEET_AUTH=off."""
    assert "security" not in SPEC and "securitySchemes" not in SPEC["components"]
    assert not any("401" in op["responses"] for path in SPEC["paths"].values() for op in path.values())
    keyed = document(auth=True, open_paths=("/livez", "/health", "/metrics", "/openapi.json"))
    assert keyed["security"] and set(keyed["components"]["securitySchemes"]) == {"ApiKeyHeader", "Bearer"}
    assert (
        keyed["paths"]["/livez"]["get"]["security"] == [] and "401" not in keyed["paths"]["/livez"]["get"]["responses"]
    )
    assert (
        "security" not in keyed["paths"]["/extract"]["post"]
        and "401" in keyed["paths"]["/extract"]["post"]["responses"]
    )


def test_no_schema_is_written_by_hand():
    """Every schema of the document comes from the models (service/contract): no JSON Schema
    `"type":` is written anywhere in the API's code."""
    root = Path(__file__).resolve().parents[1] / "service" / "api"
    written = [
        f"{path}:{n}"
        for path in root.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if '"type":' in line
    ]
    assert written == []


def test_every_route_of_the_app_is_in_the_document(client):
    """The route table and the Flask routes name the same operations (besides / and the Swagger UI)."""
    app = client.application
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if rule.rule != "/" and not rule.rule.startswith(("/docs", "/static"))
    }
    documented = {(path, method) for path, item in SPEC["paths"].items() for method in item}
    assert served == documented


def test_gallery_search_errors_are_documented_as_sent():
    """A failed image of a search carries {"code", "message"}, as /extract's do: the same schema."""
    schemas = SPEC["components"]["schemas"]
    assert schemas["SearchImage"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert schemas["ImageResult"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}


# ----------------------------------------------------------------- /extract
INSIGHTFACE_REST_REQUEST = {
    "images": {"data": []},
    "threshold": 0.6,
    "embed_only": False,
    "return_face_data": False,
    "return_landmarks": False,
    "extract_embedding": True,
    "extract_ga": False,
    "limit_faces": 0,
    "min_face_size": 0,
    "verbose_timings": False,
    "msgpack": False,
}


# InsightFace-REST's face keys, in its order (facefleet's FaceBase first, then the vector)
IFR_FACE_KEYS = [
    "bbox", "landmarks", "prob", "num_det", "scale", "facedata", "gender", "age", "mask", "mask_probs", "size",
    "norm", "vec",
]  # fmt: skip


def test_extract_answers_an_insightface_rest_request_with_its_field_names(client, photos):
    body = {**INSIGHTFACE_REST_REQUEST, "images": {"data": [b64(photos["two_people.jpg"])]}}
    response = client.post("/extract", json=body)
    assert response.status_code == 200
    payload = response.get_json()
    conforms(payload, "ExtractResponse")
    assert set(payload["took"]) == {"total_ms", "read_imgs_ms", "embed_all_ms"}
    [image] = payload["data"]
    assert image["status"] == "ok" and isinstance(image["took_ms"], float)
    assert len(image["faces"]) == 2
    for face in image["faces"]:
        assert list(face) == IFR_FACE_KEYS  # every key its client requires, null when not asked for
        assert face["landmarks"] is None and face["facedata"] is None and face["gender"] is None
        assert len(face["bbox"]) == 4 and all(isinstance(v, int) for v in face["bbox"])  # truncated, as IFR
        assert isinstance(face["size"], int) and abs(face["size"] - (face["bbox"][2] - face["bbox"][0])) <= 1
        assert isinstance(face["prob"], float) and face["prob"] >= 0.6
        assert isinstance(face["num_det"], int) and len(face["vec"]) == 128
        assert np.linalg.norm(face["vec"]) == pytest.approx(1.0, abs=1e-4)


def test_optional_fields_appear_when_asked(client, photos):
    body = {
        "images": {"data": ["data:image/jpeg;base64," + b64(photos["biden.jpg"])]},
        "return_landmarks": True,
        "return_face_data": True,
        "extract_ga": True,
        "verbose_timings": True,
        "extract_embedding": False,
    }
    payload = client.post("/extract", json=body).get_json()
    conforms(payload, "ExtractResponse")
    face = payload["data"][0]["faces"][0]
    assert len(face["landmarks"]) == 5 and face["vec"] is None and face["norm"] is None
    crop = cv2.imdecode(np.frombuffer(base64.b64decode(face["facedata"]), np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (112, 112, 3)
    assert face["gender"] is None and "not available" in face["ga_error"]
    assert {"queue_ms", "stages_ms"} <= payload["took"].keys()


def test_limit_faces_keeps_the_largest_and_min_face_size_drops_small(client, photos):
    data = [b64(photos["two_people.jpg"])]
    every = client.post("/extract", json={"images": {"data": data}}).get_json()["data"][0]["faces"]
    sizes = sorted(f["size"] for f in every)
    one = client.post("/extract", json={"images": {"data": data}, "limit_faces": 1}).get_json()["data"][0]["faces"]
    area = {f["num_det"]: (f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]) for f in every}
    assert [f["bbox"] for f in one] == [every[max(area, key=area.get)]["bbox"]]  # the largest box
    big = client.post("/extract", json={"images": {"data": data}, "min_face_size": (sizes[0] + sizes[1]) / 2})
    assert [f["size"] for f in big.get_json()["data"][0]["faces"]] == [sizes[1]]


def test_embed_only_embeds_aligned_crops(client, photos):
    with_crop = client.post(
        "/extract", json={"images": {"data": [b64(photos["obama.jpg"])]}, "return_face_data": True}
    ).get_json()
    face = with_crop["data"][0]["faces"][0]
    again = client.post("/extract", json={"images": {"data": [face["facedata"]]}, "embed_only": True}).get_json()
    [embedded] = again["data"][0]["faces"]
    assert float(np.dot(embedded["vec"], face["vec"])) > 0.95  # the same crop, through a JPEG round trip


def bad_images(photos) -> dict[str, str]:
    jpeg = photos["biden.jpg"]
    corrupt = bytearray(jpeg)
    corrupt[400:6000] = b"\x00" * 5600
    png = io.BytesIO()
    Image.fromarray(np.zeros((300, 300, 3), np.uint8) + 90).save(png, format="PNG")
    return {
        "corrupt JPEG": b64(bytes(corrupt)),
        "truncated PNG": b64(png.getvalue()[: len(png.getvalue()) // 2]),
        "text file": b64(b"just some text, not an image\n" * 20),
        "zero bytes": "",
        "60000x60000 header": b64(_png_header_declaring(60000, 60000)),
        "invalid base64": "@@@ not base64 @@@",
    }


def test_each_bad_image_fails_alone_with_a_clear_message(client, photos):
    bad = bad_images(photos)
    data = [b64(photos["two_people.jpg"]), *bad.values(), b64(photos["biden.jpg"])]
    response = client.post("/extract", json={"images": {"data": data}})
    assert response.status_code == 200
    payload = response.get_json()
    conforms(payload, "ExtractResponse")
    results = payload["data"]
    assert [r["status"] for r in results] == ["ok"] + ["failed"] * len(bad) + ["ok"]
    assert [len(r["faces"]) for r in (results[0], results[-1])] == [2, 1]
    messages = dict(zip(bad, (r["error"]["message"] for r in results[1:-1]), strict=True))
    assert "JPEG" in messages["corrupt JPEG"]
    assert messages["truncated PNG"].startswith("truncated or corrupt PNG")
    assert messages["text file"].startswith("not a recognised image")
    assert messages["zero bytes"].startswith("empty input")
    assert "exceeds the limit of 40 megapixels" in messages["60000x60000 header"]
    assert messages["invalid base64"] == "invalid base64 image data"
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"images": {"data": "abc"}}, 400, "images.data must be a list"),
        ({"images": {"data": [12]}}, 400, "images.data[0] must be a base64 string"),
        ({"images": ["abc"]}, 400, '"images" must be an object'),
        ({"threshold": 0.5}, 400, 'missing field "images"'),
        ({"images": {"data": ["x"]}, "threshold": "high"}, 400, "threshold must be a number"),
        ({"images": {"data": ["x"]}, "threshold": 7}, 400, "threshold must be from 0 to 1"),
        ({"images": {"data": ["x"]}, "limit_faces": 1.5}, 400, "limit_faces must be a whole number"),
        ({"images": {"data": ["x"]}, "return_landmarks": "yes"}, 400, "return_landmarks must be true or false"),
        ({"images": {"data": []}}, 400, "both empty"),
        ({"images": {"data": ["x"] * 1000}}, 413, "1000 images in one request; the limit is 64"),
        ([1, 2], 400, "must be an object"),
    ],
)
def test_wrong_requests_get_400_or_413_with_the_reason(client, body, status, fragment):
    response = client.post("/extract", json=body)
    assert response.status_code == status
    conforms(response.get_json(), "Error")
    assert fragment in response.get_json()["error"]["message"]


def test_invalid_and_deeply_nested_json_are_400(client):
    for raw in (b"{not json", b"[" * 5000 + b"]" * 5000, b""):
        response = client.post("/extract", data=raw, content_type="application/json")
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_body"


def test_body_over_the_limit_is_413(settings_for):
    small = create_app(settings_for(max_body_mb=0.5)).test_client()
    response = small.post("/extract", data=b"x" * 600_000, content_type="application/json")
    assert response.status_code == 413 and "0.5 MB" in response.get_json()["error"]["message"]


def test_msgpack_both_ways(client, photos):
    body = msgpack.packb({"images": {"data": [photos["two_people.jpg"]]}, "msgpack": True}, use_bin_type=True)
    response = client.post("/extract", data=body, content_type="application/msgpack")
    assert response.status_code == 200 and response.mimetype == "application/x-msgpack"
    payload = msgpack.unpackb(response.data)
    assert payload["data"][0]["status"] == "ok" and len(payload["data"][0]["faces"]) == 2
    json_body = {"images": {"data": [b64(photos["biden.jpg"])]}}
    by_accept = client.post("/extract", json=json_body, headers={"Accept": "application/x-msgpack"})
    assert len(msgpack.unpackb(by_accept.data)["data"][0]["faces"]) == 1
    garbage = client.post("/extract", data=b"\xc1\xc1\xc1", content_type="application/msgpack")
    assert garbage.status_code == 400 and "msgpack" in garbage.get_json()["error"]["message"]


# ----------------------------------------------------------------- /verify, drawing
def test_verify_images_and_embeddings(client, photos):
    same = client.post("/verify", json={"images": {"data": [b64(photos["obama.jpg"]), b64(photos["impostor_1.jpg"])]}})
    other = client.post("/verify", json={"images": {"data": [b64(photos["obama.jpg"]), b64(photos["biden.jpg"])]}})
    for response in (same, other):
        assert response.status_code == 200
        conforms(response.get_json(), "VerifyResponse")
    assert same.get_json()["same_person"] is True and other.get_json()["same_person"] is False
    assert same.get_json()["threshold"] == load_manifest().get("sface_2021dec_int8bq").verify_threshold
    vec = client.post("/extract", json={"images": {"data": [b64(photos["obama.jpg"])]}}).get_json()
    v = vec["data"][0]["faces"][0]["vec"]
    by_vectors = client.post("/verify", json={"embeddings": [v, v], "threshold": 0.99}).get_json()
    assert by_vectors["similarity"] == pytest.approx(1.0, abs=1e-5) and by_vectors["same_person"]
    wrong = client.post("/verify", json={"embeddings": [v, v[:10]]})
    assert (
        wrong.status_code == 400
        and "embeddings[1] must be a list of 128 numbers" in wrong.get_json()["error"]["message"]
    )
    blank = b64(cv2.imencode(".png", np.full((200, 200, 3), 128, np.uint8))[1].tobytes())
    no_face = client.post("/verify", json={"images": {"data": [blank, b64(photos["obama.jpg"])]}})
    assert no_face.status_code == 422 and no_face.get_json()["error"]["message"] == "image 1: no face found"


def test_verify_says_which_face_it_compared_and_lets_the_client_choose(client, photos):
    """two_people.jpg: num_det 0 is Obama, num_det 1 (the largest) is Biden."""
    images = {"data": [b64(photos["two_people.jpg"]), b64(photos["obama.jpg"])]}
    default = client.post("/verify", json={"images": images}).get_json()
    conforms(default, "VerifyResponse")
    assert default["same_person"] is False
    group, single = default["faces"]
    assert (group["faces_found"], group["chosen"], [c["num_det"] for c in group["compared"]]) == (2, "largest", [1])
    assert group["compared"][0]["bbox"] == pytest.approx([786.5, 48.4, 936.5, 255.5], abs=0.1)
    assert single["faces_found"] == 1 and single["compared"][0]["num_det"] == 0
    assert default["warnings"] == [
        "image 1 has 2 faces; compared the largest (num_det 1): choose one with face_indices, "
        "or compare every pair with all_pairs"
    ]

    chosen = client.post("/verify", json={"images": images, "face_indices": [0.0, None]}).get_json()  # 0.0 is 0
    conforms(chosen, "VerifyResponse")
    assert chosen["same_person"] is True and "warnings" not in chosen
    assert chosen["faces"][0]["chosen"] == "requested" and chosen["faces"][0]["compared"][0]["num_det"] == 0

    every = client.post("/verify", json={"images": images, "all_pairs": True}).get_json()
    conforms(every, "VerifyResponse")
    assert [(p["a"], p["b"], p["same_person"]) for p in every["pairs"]] == [(0, 0, True), (1, 0, False)]
    assert every["same_person"] is True and every["similarity"] == chosen["similarity"]

    past = client.post("/verify", json={"images": images, "face_indices": [2, None]})
    assert past.status_code == 422 and past.get_json()["error"] == {
        "code": "no_such_face",
        "message": "image 1 has 2 face(s): face_indices[0] must be from 0 to 1",
    }
    for bad_indices in ([0], [-1, 0], ["0", None], 1):
        refused = client.post("/verify", json={"images": images, "face_indices": bad_indices})
        assert refused.status_code == 400 and "face_indices" in refused.get_json()["error"]["message"], bad_indices


def test_draw_detections_json_and_multipart(client, photos):
    response = client.post("/draw_detections", json={"images": {"data": [b64(photos["two_people.jpg"])]}})
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(photos["two_people.jpg"], np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == original.shape and (cv2.absdiff(drawn, original) > 60).any()
    form = {"file": (io.BytesIO(photos["biden.jpg"]), "biden.jpg"), "threshold": "0.5", "draw_sizes": "true"}
    upload = client.post("/multipart/draw_detections", data=form, content_type="multipart/form-data")
    assert upload.status_code == 200 and upload.mimetype == "image/jpeg"
    missing = client.post("/multipart/draw_detections", data={"threshold": "0.5"}, content_type="multipart/form-data")
    assert missing.status_code == 400 and '"file" field' in missing.get_json()["error"]["message"]
    broken = client.post("/draw_detections", json={"images": {"data": ["@@"]}})
    assert broken.status_code == 400 and broken.get_json()["error"]["message"] == "invalid base64 image data"


# ----------------------------------------------------------------- status endpoints
def test_info_health_livez_docs(client):
    info = client.get("/info").get_json()
    conforms(info, "Info")
    detector = info["models"]["detection"]
    assert detector["name"] == "yunet_2023mar_int8bq" and detector["active_provider"] == "cpu"
    assert [a["provider"] for a in detector["attempts"]] == ["cpu"]
    assert detector["partial_fallback"] is False and detector["node_placement"]["nodes"]["CPUExecutionProvider"] > 0
    assert len(detector["sha256"]) == 64 and info["defaults"]["max_images"] == 64
    memory = info["memory"]  # this process's own resident size, against 1.5 x the files it runs + 250 MiB
    files = sum(os.path.getsize(info["models"][task]["model_path"]) for task in ("detection", "recognition"))
    assert memory["worker_pid"] == os.getpid() and memory["model_files_bytes"] == files
    assert memory["budget_bytes"] == int(1.5 * files + 250 * 2**20) and memory["resident_bytes"] > 50 * 2**20
    assert memory["within_budget"] == (memory["resident_bytes"] <= memory["budget_bytes"])
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    conforms(health.get_json(), "Health")
    assert client.get("/livez").get_json() == {"status": "alive"}
    assert client.get("/").headers["Location"].endswith("/docs/")
    page = client.get("/docs/").get_data(as_text=True)
    assert "swagger-ui-bundle.js" in page and "https://" not in page  # served locally, no CDN
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"


def test_health_reports_a_broken_model_with_503(settings_for):
    def broken_run(blob):
        return [np.full((len(blob), 128), np.nan, np.float32)]

    # A FAKE broken run (no real model breaks on demand), added as a link of the recognizer's chain.
    engine = FaceEngine.from_settings(settings_for(), extra={"recognition": [lambda inner: broken_run]})
    app = create_app(engine.settings, engine=engine)
    response = app.test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "failing" and "sface_2021dec_int8bq: outputs [0] are not finite" in body["reason"]


# ----------------------------------------------------------------- URLs and paths
@pytest.fixture
def redirecting_server(photos):
    """A real server on 127.0.0.2 (loopback) serving a photo and a redirect to 127.0.0.1."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/photo.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.end_headers()
                self.wfile.write(photos["biden.jpg"])
            else:
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:9/secret")
                self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.2:{server.server_port}"
    server.shutdown()
    server.server_close()


def _url_results(client, urls):
    payload = client.post("/extract", json={"images": {"urls": urls}}).get_json()
    return [(r["status"], r.get("error", {}).get("message", "")) for r in payload["data"]]


def test_urls_are_off_by_default(client):
    [(status, message)] = _url_results(client, ["http://example.invalid/a.jpg"])
    assert status == "failed" and "image URLs are disabled" in message


def test_internal_addresses_and_redirects_to_them_are_refused(settings_for, redirecting_server):
    app = create_app(settings_for(allow_urls=True, url_allow=("127.0.0.2",)))
    client = app.test_client()
    urls = [
        "http://127.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://10.0.0.1/x.jpg",
        f"{redirecting_server}/redirect",
        "ftp://127.0.0.2/x.jpg",
        f"{redirecting_server}/photo.jpg",
    ]
    results = _url_results(client, urls)
    assert [s for s, _ in results] == ["failed"] * 6 + ["ok"]
    expected = [("127.0.0.1", "loopback"), ("169.254.169.254", "link-local"), ("::1", "loopback")]
    expected += [("10.0.0.1", "private"), ("127.0.0.1", "loopback")]  # the last: where the redirect pointed
    for (_, message), (host, rule) in zip(results[:5], expected, strict=True):
        assert message.startswith(f"{host} is an internal address ({rule}); refused"), message
    assert "only http and https" in results[5][1]


def test_local_paths_stay_inside_the_images_root(settings_for, photos):
    (settings_for.images_root / "sub").mkdir(exist_ok=True)
    (settings_for.images_root / "sub" / "biden.jpg").write_bytes(photos["biden.jpg"])
    client = create_app(settings_for()).test_client()
    results = _url_results(client, ["sub/biden.jpg", "../etc/passwd", "/etc/passwd", "sub/../../x.jpg", "~/x"])
    assert results[0][0] == "ok"
    assert all(s == "failed" and "images root" in m for s, m in results[1:])


# ----------------------------------------------------------------- overload
def test_overload_is_503_with_retry_after(settings_for, photos):
    app = create_app(settings_for(max_concurrent=1, queue_size=0))
    admission = app.extensions["facefleet.admission"]
    client = app.test_client()
    with admission.slot("test"):  # the engine is busy
        response = client.post("/extract", json={"images": {"data": [b64(photos["biden.jpg"])]}})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["code"] == "overloaded"
    assert client.post("/extract", json={"images": {"data": [b64(photos["biden.jpg"])]}}).status_code == 200


def test_json_logs_carry_the_request_id(settings_for, photos, capfd):
    client = create_app(settings_for(log_format="json")).test_client()
    response = client.get("/livez", headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Request-ID"] == "abc123"
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert any(entry.get("request_id") == "abc123" and entry.get("status") == 200 for entry in lines)
