"""Schemathesis against the real service (gunicorn, default pack): every operation of the
OpenAPI description, positive and negative inputs, a fixed seed so CI sees the same cases."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi import checks

from facefleet.api.auth import ALWAYS_OPEN
from facefleet.contract.openapi import document

from .conftest import SHARED_IMAGES
from .server import Service, cpu_service

# Refusals of a schema-valid request that depend on what the image or vector holds, or on the
# deployment's limits: no schema can state "a decodable photo with a face" or "128 numbers".
CONTENT_REFUSALS = {
    "bad_bundle",
    "bad_image",
    "image_too_large",
    "url_refused",
    "no_face",
    "no_such_face",
    "bad_embedding",
    "too_many_images",
    "too_large",
}


def _photos() -> list[str]:
    """Real one-face photos, small enough to cost little: the path where faces are found."""
    names = ("person_a_1.jpg", "person_b_1.jpg")
    return [base64.b64encode((SHARED_IMAGES / n).read_bytes()).decode() for n in names if (SHARED_IMAGES / n).is_file()]


# `format: byte` (base64 images): real photos half of the time, so positive cases reach detection,
# drawing and verification, and arbitrary base64 bytes the other half.
schemathesis.openapi.format(
    "byte",
    st.one_of(
        st.sampled_from(_photos() or ["AA=="]), st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
    ),
)

KEY = "a" * 20
# Fixed so CI sees the same cases; another value explores others (FACEFLEET_FUZZ_SEED=9 pytest ...).
SEED = int(os.environ.get("FACEFLEET_FUZZ_SEED", "8"))
# Every check schemathesis has, response-schema conformance and positive_data_acceptance included.
# A schema-valid request may still be refused for what its images or vectors hold (no schema can
# say "a decodable photo with a face"): 400, 413 and 422 are expected statuses of valid data, and
# valid_requests_are_refused_only_for_content below checks that each such refusal is one of those.
CHECKS = {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "404", "409", "413", "422"]}}
# The document of each service, as it serves it: no keys declared when authentication is off.
OPEN_PATHS = (*ALWAYS_OPEN, "/", "/livez", "/health", "/metrics", "/docs", "/openapi.json")
OPEN_DOCUMENT = document(auth=False)
KEYED_DOCUMENT = document(auth=True, open_paths=OPEN_PATHS)


def _schema(document: dict[str, Any], max_examples: int, **extra: Any) -> Any:
    """The document as the models produce it (test_the_served_documents_are_the_fuzzed_ones ties it to
    /openapi.json)."""
    generation = {"max-examples": max_examples, "deterministic": True, "database": "none"}
    config = {"seed": SEED, "generation": generation, "checks": CHECKS, **extra}
    return schemathesis.openapi.from_dict(document, config=schemathesis.Config.from_dict(config))


SCHEMA = _schema(OPEN_DOCUMENT, 50)
# Keys on: every case carries a valid key, and ignored_auth replays each protected operation
# without a key and with a wrong one, expecting 401.
KEYED_SCHEMA = _schema(
    KEYED_DOCUMENT, 4, auth={"openapi": {"ApiKeyHeader": {"api_key": KEY}, "Bearer": {"bearer": KEY}}}
)


INT64 = (-(2**63), 2**64 - 1)


def _fit_msgpack(value: Any) -> Any:
    """msgpack carries integers of 64 bits at most: larger ones are clamped, which keeps a
    generated value valid or invalid for the schema as it was (beyond 64 bits either way)."""
    if isinstance(value, dict):
        return {k: _fit_msgpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fit_msgpack(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, INT64[0]), INT64[1])
    return value


# Gallery bundles: an empty body, a zip that is not a bundle, and any bytes at all.
schemathesis.openapi.media_type(
    "application/zip",
    st.sampled_from([b"", b"PK\x03\x04 not a bundle", b"PK\x05\x06" + b"\0" * 18]) | st.binary(max_size=512),
)


@schemathesis.serializer("application/msgpack")
def _msgpack(ctx: Any, value: Any) -> bytes:
    """Bodies for the msgpack media type of the spec, as InsightFace-REST clients send them."""
    return msgpack.packb(_fit_msgpack(value), use_bin_type=True)


@schemathesis.deserializer("application/x-msgpack")
def _unpack(ctx: Any, response: Any) -> Any:
    """msgpack answers (`"msgpack": true`) are checked against the response schema like JSON ones."""
    return msgpack.unpackb(response.content, raw=False)


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    """Drop multipart cases with an empty list: it has no form encoding, the field is simply not
    sent (which the spec allows), so a "negative" case built on it is a valid request on the wire."""
    if case.media_type != "multipart/form-data" or not isinstance(case.body, dict):
        return True
    return all(value != [] for value in case.body.values())


# What schemathesis' own positive_data_acceptance accepts: success, or a refusal that is about
# credentials, state (no such resource, conflict) or rate, not about the request's shape.
ACCEPTED = {401, 403, 404, 409, 429}


@schemathesis.check
def valid_requests_are_refused_only_for_content(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance, plus one allowance: a schema-valid request may be refused for
    what its images hold (an error code of CONTENT_REFUSALS); a 4xx for its shape means the spec lies."""
    meta = case.meta
    status = response.status_code
    if meta is None or not meta.generation.mode.is_positive or status < 400 or status in ACCEPTED:
        return None
    code = response.json().get("error", {}).get("code") if status in (400, 413, 422) else None
    if code not in CONTENT_REFUSALS:
        raise AssertionError(f"a schema-valid request was refused: {status} {response.text[:300]}")
    return None


def own_state(folder: Path) -> dict[str, str]:
    """Whatever the fuzzer writes (galleries) stays in this test's folder, out of the shared cache."""
    return {"FACEFLEET_GALLERY_DB": str(folder / "galleries.sqlite3")}


@pytest.fixture(scope="module")
def service(default_pack, cache_dir, tmp_path_factory, image_bytes) -> Service:
    """The service as deployed, open (auth off), with an images root holding one photo; at most
    4 faces per image so that a threshold of 0 costs 4 embeddings, not 100."""
    folder = tmp_path_factory.mktemp("fuzz")
    root = folder / "images"
    root.mkdir()
    (root / "biden.jpg").write_bytes(image_bytes("biden.jpg"))
    env = {"FACEFLEET_IMAGES_ROOT": str(root), "FACEFLEET_MAX_FACES": "4", **own_state(folder)}
    svc = cpu_service(default_pack, cache_dir, folder, **env)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def keyed_service(default_pack, cache_dir, tmp_path_factory) -> Service:
    """The default deployment: authentication on, one key."""
    folder = tmp_path_factory.mktemp("fuzz-keyed")
    env = {"FACEFLEET_AUTH": "on", "FACEFLEET_API_KEYS": KEY, "FACEFLEET_MAX_FACES": "4", **own_state(folder)}
    svc = cpu_service(default_pack, cache_dir, folder, **env)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def session() -> requests.Session:
    with requests.Session() as s:
        yield s


@pytest.mark.slow  # the fuzzer: about 20 s; the full suite runs it
@SCHEMA.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_holds_its_spec(case, service, session):
    """No 5xx, every answer as documented, schema-invalid requests refused, valid ones accepted
    unless their images are unusable."""
    case.call_and_validate(base_url=service.url, session=session, timeout=60)


@pytest.mark.slow  # the fuzzer: about 20 s; the full suite runs it
@KEYED_SCHEMA.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_with_keys_every_operation_holds_its_spec_and_enforces_them(case, keyed_service, session):
    """The same with keys on; ignored_auth also replays protected operations without a key and
    with a wrong one and expects 401."""
    case.call_and_validate(base_url=keyed_service.url, session=session, timeout=60)


# What the spec promises of any response: a documented status, content type, body and headers.
CONFORMANCE = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.mark.slow
@pytest.mark.parametrize("operation", [r.ok() for r in KEYED_SCHEMA.get_all_operations()], ids=lambda o: o.label)
def test_without_a_key_protected_operations_answer_401_as_documented(operation, keyed_service, session):
    """No key: 401 with WWW-Authenticate and the documented error body on every protected
    operation; the open ones (security: []) answer without one."""
    path_parameters = {name: "staff" for name in re.findall(r"{(\w+)}", operation.path)}
    case = operation.Case(path_parameters=path_parameters or None)
    response = case.call(base_url=keyed_service.url, session=session, timeout=60)
    protected = KEYED_DOCUMENT["paths"][operation.path][operation.method.lower()].get("security") != []
    assert response.status_code == (401 if protected else 200), response.text[:200]
    case.validate_response(response, checks=CONFORMANCE)
    if protected:
        assert response.json()["error"]["code"] == "unauthorized"
        [challenge] = response.headers["www-authenticate"]  # schemathesis keeps headers lower-cased, as lists
        assert challenge.startswith("Bearer")


@pytest.mark.slow
def test_the_served_documents_are_the_fuzzed_ones(service, keyed_service, session):
    """The fuzzed documents are the ones each service serves: keys declared only where they are on."""
    assert session.get(f"{service.url}/openapi.json", timeout=10).json() == OPEN_DOCUMENT
    assert session.get(f"{keyed_service.url}/openapi.json", timeout=10).json() == KEYED_DOCUMENT
