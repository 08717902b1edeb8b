"""Galleries on the real models (scrfd_2.5g + mobilefacenet) and the real photos of ../shared:
enrol one photo per person, find everyone else's photos, refuse strangers, and move galleries
between appliances as bundles, atomically and only between identical recognizers."""

from __future__ import annotations

import base64
import io
import os
import sqlite3
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

from facefleet.api import create_app
from facefleet.galleries import bundle
from facefleet.galleries.store import GalleryStore, Recognizer
from facefleet.models.manifest import load_manifest

from .conftest import IDENTITIES

ENROL = {"macron": "person_a_1.jpg", "ardern": "person_b_1.jpg", "obama": "obama.jpg"}
PROBES = [name for name, who in IDENTITIES.items() if who in ENROL and name not in ENROL.values()]
STRANGERS = [name for name, who in IDENTITIES.items() if who not in ENROL]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def app_for(make_settings, tmp_path_factory):
    def make(db_name: str = "galleries.sqlite3", **overrides):
        folder = tmp_path_factory.mktemp("galleries")
        settings = make_settings(
            det_name="scrfd_2.5g", rec_name="mobilefacenet", gallery_db=str(folder / db_name), **overrides
        )
        return create_app(settings)

    return make


@pytest.fixture(scope="module")
def staff(app_for, image_bytes):
    """An appliance with gallery 'staff': one photo of each of three people."""
    client = app_for().test_client()
    assert client.post("/galleries", json={"name": "staff", "metadata": {"site": "lab"}}).status_code == 201
    for subject, photo in ENROL.items():
        answer = client.post(
            "/galleries/staff/subjects",
            json={"subject": subject, "metadata": {"photo": photo}, "images": {"data": [b64(image_bytes(photo))]}},
        )
        assert answer.status_code == 201, answer.get_json()
        assert answer.get_json()["faces"] == 1
    return client


def test_every_other_photo_finds_its_own_subject_first(staff, image_bytes):
    body = {"images": {"data": [b64(image_bytes(p)) for p in PROBES]}, "top_k": 3, "gallery_threshold": -1}
    answer = staff.post("/galleries/staff/search", json=body).get_json()
    assert answer["gallery"] == "staff" and answer["version"] == 4  # created, then three enrolments
    for photo, image in zip(PROBES, answer["data"], strict=True):
        assert image["status"] == "ok" and len(image["faces"]) == 1, photo
        matches = image["faces"][0]["matches"]
        assert matches[0]["subject"] == IDENTITIES[photo], (photo, matches)
        assert len(matches) == 3 and matches[0]["score"] > matches[1]["score"]


def test_strangers_match_nobody_above_the_threshold(staff, image_bytes):
    body = {"images": {"data": [b64(image_bytes(p)) for p in STRANGERS]}, "top_k": 3}
    answer = staff.post("/galleries/staff/search", json=body).get_json()
    assert answer["threshold"] == load_manifest().get("mobilefacenet").verify_threshold
    assert [face["matches"] for image in answer["data"] for face in image["faces"]] == [[], []]


def test_extract_with_a_gallery_names_each_face(staff, image_bytes):
    body = {"images": {"data": [b64(image_bytes("obama2.jpg")), b64(image_bytes("biden.jpg"))]}, "gallery": "staff"}
    answer = staff.post("/extract", json=body).get_json()
    assert answer["gallery"]["name"] == "staff"
    obama, biden = (image["faces"][0]["match"] for image in answer["data"])
    assert obama["subject"] == "obama" and obama["score"] > 0.4
    assert biden is None
    plain = staff.post("/extract", json={"images": body["images"]}).get_json()
    assert "gallery" not in plain and "match" not in plain["data"][0]["faces"][0]


def test_extract_with_a_gallery_matches_even_without_embeddings_in_the_answer(staff, image_bytes):
    """extract_embedding false: the faces are still embedded for the search, and the answer
    carries the matches but no vectors (it used to answer no match at all)."""
    images = {"data": [b64(image_bytes("obama2.jpg")), b64(image_bytes("biden.jpg"))]}
    answer = staff.post("/extract", json={"images": images, "gallery": "staff", "extract_embedding": False})
    assert answer.status_code == 200
    faces = [image["faces"][0] for image in answer.get_json()["data"]]
    assert faces[0]["match"]["subject"] == "obama" and faces[0]["match"]["score"] > 0.4
    assert faces[1]["match"] is None
    assert all(face["vec"] is None and face["norm"] is None for face in faces)  # null, as InsightFace-REST
    with_vectors = staff.post("/extract", json={"images": images, "gallery": "staff"}).get_json()
    assert with_vectors["data"][0]["faces"][0]["match"] == faces[0]["match"]
    assert len(with_vectors["data"][0]["faces"][0]["vec"]) == 128


def test_info_lists_the_galleries(staff):
    galleries = staff.get("/info").get_json()["galleries"]
    assert galleries == [
        {"name": "staff", "version": 4, "checksum": "", "subjects": 3, "faces": 3, "recognizer": "mobilefacenet"}
    ]


def test_mistakes_get_clear_errors_and_change_nothing(staff, image_bytes):
    before = staff.get("/galleries/staff").get_json()
    cases = [
        (staff.post("/galleries", json={"name": "staff"}), 409, "exists"),
        (staff.post("/galleries", json={"name": "../etc"}), 400, "invalid_request"),
        (staff.post("/galleries/nope/search", json={"images": {"data": ["x"]}}), 404, "not_found"),
        (staff.delete("/galleries/staff/subjects/nobody"), 404, "not_found"),
        (staff.post("/galleries/staff/subjects", json={"subject": "x", "embeddings": [[1.0, 2.0]]}), 400, None),
        (staff.post("/galleries/staff/subjects", json={"subject": "", "embeddings": [[1.0] * 128]}), 400, None),
        (staff.post("/galleries/staff/subjects", json={"subject": "y", "embeddings": [[0.0] * 128]}), 400, None),
        (staff.post("/galleries/staff/search", json={"images": {"data": ["x"]}, "top_k": 0}), 400, None),
    ]
    blank = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (320, 240), (120, 120, 120)).save(blank, "JPEG")
    no_face = {"subject": "ghost", "images": {"data": [b64(blank.getvalue()), "not base64!"]}}
    cases.append((staff.post("/galleries/staff/subjects", json=no_face), 422, "no_face"))
    for response, status, code in cases:
        assert response.status_code == status, response.get_json()
        error = response.get_json()["error"]
        assert error["message"] and (code is None or error["code"] == code)
    assert staff.get("/galleries/staff").get_json() == before


def test_enrol_from_embeddings_then_remove(staff):
    vector = np.random.default_rng(1).normal(size=128).tolist()
    added = staff.post("/galleries/staff/subjects", json={"subject": "synthetic", "embeddings": [vector, vector]})
    assert added.status_code == 201 and added.get_json()["faces"] == 2
    found = staff.post("/galleries/staff/search", json={"images": {"data": []}})
    assert found.status_code == 400  # a search needs images
    assert staff.delete("/galleries/staff/subjects/synthetic").status_code == 200
    assert "synthetic" not in [s["subject"] for s in staff.get("/galleries/staff/subjects").get_json()["subjects"]]


def test_a_bundle_moves_the_gallery_to_another_appliance(staff, app_for, image_bytes):
    data = staff.get("/galleries/staff/bundle").data
    other = app_for().test_client()
    answer = other.put("/galleries/staff/bundle", data=data, content_type="application/zip")
    assert answer.status_code == 200 and answer.get_json()["installed"] is True
    again = other.put("/galleries/staff/bundle", data=data, content_type="application/zip").get_json()
    assert again["installed"] is False  # same version and checksum: nothing to do
    body = {"images": {"data": [b64(image_bytes("person_b_2.jpg"))]}}
    match = other.post("/galleries/staff/search", json=body).get_json()["data"][0]["faces"][0]["matches"][0]
    assert match["subject"] == "ardern"
    assert other.put("/galleries/other/bundle", data=data).status_code == 400


def test_a_damaged_bundle_is_refused(staff):
    data = bytearray(staff.get("/galleries/staff/bundle").data)
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    header = archive.read("gallery.json")
    edited = io.BytesIO()
    with zipfile.ZipFile(edited, "w") as out:
        out.writestr("gallery.json", header.replace(b'"staff"', b'"staff"', 1).replace(b"obama", b"obamb", 1))
        out.writestr("embeddings.npy", archive.read("embeddings.npy"))
    answer = staff.put("/galleries/staff/bundle", data=edited.getvalue())
    assert answer.status_code == 400 and "checksum" in answer.get_json()["error"]["message"]
    garbage = staff.put("/galleries/staff/bundle", data=b"PK\x03\x04 not really a zip")
    assert garbage.status_code == 400 and "not a valid gallery bundle" in garbage.get_json()["error"]["message"]


def test_names_and_subjects_no_store_can_hold_are_refused(staff):
    """A name with a final newline (re's `$` matches before it) and a subject holding a lone surrogate
    were accepted, then every later request on them failed."""
    answer = staff.post("/galleries", json={"name": "abc\n"})
    assert answer.status_code == 400 and "abc" not in [
        g["name"] for g in staff.get("/galleries").get_json()["galleries"]
    ]
    body = b'{"subject": "a\\ud800b", "embeddings": [[' + b",".join([b"0.1"] * 128) + b"]]}"
    added = staff.post("/galleries/staff/subjects", data=body, content_type="application/json")
    assert added.status_code == 400 and "lone surrogate" in added.get_json()["error"]["message"]


def test_a_bundle_nested_too_deeply_is_refused(staff):
    deep = io.BytesIO()
    with zipfile.ZipFile(deep, "w") as out:
        out.writestr("gallery.json", "[" * 100_000 + "]" * 100_000)
        out.writestr("embeddings.npy", b"")
    answer = staff.put("/galleries/staff/bundle", data=deep.getvalue(), content_type="application/zip")
    assert answer.status_code == 400 and "nested too deeply" in answer.get_json()["error"]["message"]


def test_a_bundle_made_with_another_recognizer_is_refused(staff):
    foreign = Recognizer("w600k_r50", "f" * 64, 128)
    rows = np.eye(2, 128, dtype=np.float32)
    header = {"name": "staff", "version": 99, "recognizer": foreign.name, "recognizer_sha256": foreign.sha256}
    data = bundle.pack(header, [("x", {}, 1), ("y", {}, 1)], rows)
    before = staff.get("/galleries/staff").get_json()
    answer = staff.put("/galleries/staff/bundle", data=data)
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "wrong_recognizer"
    message = answer.get_json()["error"]["message"]
    assert "made with w600k_r50" in message and "this appliance runs mobilefacenet" in message
    assert staff.get("/galleries/staff").get_json() == before


def _gallery(store: GalleryStore, subjects: list[str], version: int) -> bytes:
    rng = np.random.default_rng(version)
    matrix = rng.normal(size=(len(subjects), store.recognizer.dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    rec = store.recognizer
    header = {"name": "atomic", "version": version, "recognizer": rec.name, "recognizer_sha256": rec.sha256}
    return bundle.pack(header, [(s, {}, 1) for s in subjects], matrix)


def test_an_import_is_atomic_for_searches_in_another_process_view(tmp_path):
    """Two stores on one file stand for two gunicorn workers: one imports bundles A and B in
    turn while the other searches; every search must see all of A or all of B."""
    identity = Recognizer("mobilefacenet", "a" * 64, 128)
    writer = GalleryStore(tmp_path / "g.sqlite3", identity)
    reader = GalleryStore(tmp_path / "g.sqlite3", identity)
    first = [f"a{i:05d}" for i in range(3000)]
    second = [f"b{i:05d}" for i in range(2000)]
    bundles = [_gallery(writer, first, 1), _gallery(writer, second, 2)]
    bundle.install(writer, bundles[0])
    seen, done = [], threading.Event()

    def search() -> None:
        query = np.ones((1, 128), np.float32)
        while not done.is_set():
            index = reader.index("atomic")  # the snapshot a search of this worker uses
            found = index.search(query / np.linalg.norm(query), 10, -1)
            seen.append((index.version, frozenset(index.subjects), found[0][0][0]))

    thread = threading.Thread(target=search)
    thread.start()
    for n in range(6):
        bundle.install(writer, bundles[(n + 1) % 2])
    done.set()
    thread.join()
    assert len({version for version, _, _ in seen}) == 2, "the reader never saw an import"
    for version, subjects, best in seen:
        expected = first if version == 1 else second
        assert subjects == frozenset(expected) and best in expected


def test_gallery_build_and_import_on_the_command_line(tmp_path, images_dir, shared_models):
    folder = tmp_path / "staff"
    for subject, photo in ENROL.items():
        (folder / subject).mkdir(parents=True)
        (folder / subject / photo).write_bytes((images_dir / photo).read_bytes())
    (folder / "nobody").mkdir()
    (folder / "nobody" / "empty.jpg").write_bytes(b"")
    env_args = ["--models-dir", str(shared_models), "--det", "scrfd_2.5g", "--rec", "mobilefacenet"]
    out = tmp_path / "staff.gallery.zip"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "facefleet",
            "gallery",
            "build",
            str(folder),
            "--out",
            str(out),
            "--version=7",
            *env_args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "skipped" in built.stderr and "empty.jpg" in built.stderr
    db = ["--cache-dir", str(tmp_path / "cache"), "--providers", "cpu", "--rec", "mobilefacenet"]
    for expected in ("imported: staff version 7, 3 subjects, 3 faces", "unchanged: staff version 7"):
        result = subprocess.run(
            [sys.executable, "-m", "facefleet", "gallery", "import", str(out), *env_args, *db],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0 and expected in result.stdout, result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "facefleet", "gallery", "import", str(tmp_path / "none.zip"), *env_args, *db],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "cannot read" in missing.stderr
    other = tmp_path / "other-models"  # an appliance whose mobilefacenet file differs (retrained, say)
    other.mkdir()
    (other / "mobilefacenet.onnx").write_bytes((shared_models / "mobilefacenet.onnx").read_bytes() + b"\0")
    wrong = subprocess.run(
        [sys.executable, "-m", "facefleet", "gallery", "import", str(out), *db, "--models-dir", str(other)],
        env={**os.environ, "FACEFLEET_VERIFY_MODELS": "false"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert "was made with mobilefacenet (sha256 b7120c095d60" in wrong.stderr


def test_the_dashboard_flags_an_appliance_whose_gallery_lags(staff):
    from facefleet.dashboard.poller import _galleries, flag_lagging_galleries

    current = staff.get("/info").get_json()  # the real /info of an appliance
    newest = current["galleries"][0]["version"]
    behind = {**current, "galleries": [{**current["galleries"][0], "version": newest - 1}]}
    garbage = {"galleries": [{"name": "<script>", "version": "x"}, 7, None]}
    views = {name: {"galleries": _galleries(info)} for name, info in (("a", current), ("b", behind), ("c", garbage))}
    flag_lagging_galleries(views)
    assert views["a"]["galleries"]["staff"]["lagging_behind"] is None
    lagging = {"version": newest - 1, "checksum": "", "lagging_behind": newest, "subjects": 3}
    assert views["b"]["galleries"]["staff"] == lagging
    assert views["c"]["galleries"] == {}


def test_large_galleries_preselect_in_int8_and_answer_as_the_exact_search():
    """Past MIN_ROWS a gallery is searched through its int8 copy (onnxruntime MatMulInteger),
    then re-scored in float32: the same subjects and the same exact scores as a full product."""
    from facefleet.galleries.coarse import MIN_ROWS, CoarseIndex
    from facefleet.galleries.store import Index

    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((MIN_ROWS + 100, 128)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    subjects = [f"s{i // 2}" for i in range(len(matrix))]  # two faces per subject
    starts = np.arange(0, len(matrix), 2)
    exact = Index(1, subjects[::2], starts, matrix)
    fast = Index(1, subjects[::2], starts, matrix, CoarseIndex(matrix))
    planted = matrix[rng.choice(len(matrix), 20, replace=False)] + rng.normal(0, 0.05, (20, 128)).astype(np.float32)
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    assert fast.search(planted, 3, 0.3) == exact.search(planted, 3, 0.3)
    assert all(len(found) == 1 for found in fast.search(planted, 3, 0.6))  # the planted subject only


def test_gallery_check_reports_and_repairs_a_name_stored_before_the_rule_was_anchored(tmp_path, shared_models):
    """A pre-fix appliance may hold "abc\\n" (the old pattern's `$` matched before a final newline): the
    API cannot reach it, `facefleet gallery check` names it (exit 1) and `--repair` renames it, with its
    subjects and faces, in one transaction."""
    db_path = tmp_path / "galleries.sqlite3"
    store = GalleryStore(db_path, Recognizer("mobilefacenet", "a" * 64, 2))
    store.create("taken")
    with sqlite3.connect(db_path) as db:  # the rows a pre-fix appliance wrote
        for name in ("abc\n", "taken\n"):
            db.execute(
                "INSERT INTO galleries (name, version, recognizer, recognizer_sha256, dim, updated) "
                "VALUES (?, 1, 'mobilefacenet', ?, 2, 0)",
                (name, "a" * 64),
            )
            db.execute("INSERT INTO subjects (gallery, subject) VALUES (?, 'ada')", (name,))
            db.execute("INSERT INTO faces (gallery, subject, embedding) VALUES (?, 'ada', ?)", (name, b"\0" * 8))

    def check(*extra: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "facefleet", "gallery", "check", *extra, "--models-dir", str(shared_models)]
        argv += ["--rec", "mobilefacenet", "--cache-dir", str(tmp_path / "cache")]
        env = {**os.environ, "FACEFLEET_GALLERY_DB": str(db_path), "FACEFLEET_APPLIANCE_ENV": "none"}
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)

    found = check()
    assert found.returncode == 1, found.stderr
    assert "bad name: 'abc\\n'" in found.stdout and "bad name: 'taken\\n'" in found.stdout
    repaired = check("--repair")
    assert repaired.returncode == 1, repaired.stderr  # one could not be repaired: its name is taken
    assert "repaired: 'abc\\n' -> 'abc'" in repaired.stdout
    assert "not repaired: 'taken\\n': a gallery named 'taken' already exists" in repaired.stdout
    fresh = GalleryStore(db_path, Recognizer("mobilefacenet", "a" * 64, 2))
    assert fresh.bad_names() == ("taken\n",)
    assert fresh.describe("abc")["subjects"] == 1 and fresh.describe("abc")["faces"] == 1
