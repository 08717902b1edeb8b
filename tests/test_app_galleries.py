"""The gallery and model use cases (facefleet.app) on their own: the real engine (scrfd_2.5g +
mobilefacenet), a real SQLite store in tmp_path and the real photos and models of ../shared, with no
HTTP server or Flask client. The HTTP answers built on these are tests/test_galleries.py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefleet.app import galleries as app
from facefleet.app.enrol import BuildGallery, BuiltBundle, build_gallery
from facefleet.app.models import VerifyModels, VerifyReport, verify_models
from facefleet.errors import FacefleetError, ManifestError
from facefleet.galleries import bundle
from facefleet.galleries.store import GalleryError, GalleryStore, Recognizer
from facefleet.models.manifest import load_manifest

from .conftest import IDENTITIES

DET, REC = "scrfd_2.5g", "mobilefacenet"
ENROL = {"macron": "person_a_1.jpg", "ardern": "person_b_1.jpg", "obama": "obama.jpg"}
PROBES = [name for name, who in IDENTITIES.items() if who in ENROL and name not in ENROL.values()]


@pytest.fixture(scope="module")
def engine(engine_factory):
    return engine_factory(DET, REC)


@pytest.fixture
def settings(make_settings, tmp_path):
    return make_settings(det_name=DET, rec_name=REC, gallery_db=str(tmp_path / "galleries.sqlite3"))


@pytest.fixture
def store(settings, engine) -> GalleryStore:
    return app.open_store(settings, engine)


def _staff(store: GalleryStore, engine, image_bytes) -> list[app.Enrolled]:
    app.create_gallery(store, app.CreateGallery("staff", {"site": "lab"}))
    return [
        app.enrol(store, engine, app.Enrol("staff", subject, images=(image_bytes(photo),), metadata={"photo": photo}))
        for subject, photo in ENROL.items()
    ]


def test_enrol_then_search_finds_each_subject(store, engine, image_bytes):
    enrolled = _staff(store, engine, image_bytes)
    assert [(e.subject, e.added, e.faces, [s.ok for s in e.images]) for e in enrolled] == [
        (subject, 1, 1, [True]) for subject in ENROL
    ]
    probes = tuple(image_bytes(p) for p in PROBES)
    found = app.search(store, engine, app.Search("staff", images=probes, top_k=3, threshold=-1))
    assert isinstance(found, app.SearchResult) and found.version == 4  # created, then three enrolments
    for photo, image in zip(PROBES, found.images, strict=True):
        assert image.result.ok and len(image.result.faces) == 1, photo
        best, second, _ = image.matches[0]
        assert best.subject == IDENTITIES[photo] and best.score > second.score, (photo, image.matches)


def test_search_uses_the_recognizers_threshold_by_default(store, engine, image_bytes):
    _staff(store, engine, image_bytes)
    found = app.search(store, engine, app.Search("staff", images=(image_bytes("biden.jpg"),)))
    assert found.threshold == load_manifest().get(REC).verify_threshold
    assert found.images[0].matches == ((),)  # a stranger: a face, and nobody above the threshold


def test_enrolment_from_embeddings_and_its_refusals(store, engine):
    app.create_gallery(store, app.CreateGallery("vectors"))
    row = np.eye(1, 128, dtype=np.float32)
    done = app.enrol(store, engine, app.Enrol("vectors", "unit", embeddings=row))
    assert (done.added, done.faces, done.images) == (1, 1, ())
    with pytest.raises(app.NothingEnrolledError) as no_face:
        blank = np.zeros((96, 96, 3), np.uint8)
        app.enrol(store, engine, app.Enrol("vectors", "nobody", images=(b"not an image", blank)))
    assert (no_face.value.status, no_face.value.code) == (422, "no_face")
    assert no_face.value.message.startswith("no face could be enrolled: ") and "no face found" in no_face.value.message
    assert app.list_subjects(store, "vectors") == (app.Subject("unit", {}, 1),)
    with pytest.raises(GalleryError) as wide:
        app.enrol(store, engine, app.Enrol("vectors", "wide", embeddings=np.ones((1, 3), np.float32)))
    assert (wide.value.status, wide.value.code) == (400, "bad_embedding")
    with pytest.raises(GalleryError) as unknown:
        app.enrol(store, engine, app.Enrol("nowhere", "x", embeddings=row))
    assert (unknown.value.status, unknown.value.code, unknown.value.message) == (
        404,
        "not_found",
        "no gallery named 'nowhere'",
    )
    with pytest.raises(app.MissingInputError):
        app.search(store, engine, app.Search("vectors"))
    assert [s.subject for s in app.list_subjects(store, "vectors")] == ["unit"]  # nothing half-enrolled


def test_delete_a_subject_then_the_gallery(store, engine, image_bytes):
    _staff(store, engine, image_bytes)
    removed = app.remove_subject(store, app.RemoveSubject("staff", "obama"))
    assert removed == app.RemoveSubject("staff", "obama")
    assert [(s.subject, dict(s.metadata)) for s in app.list_subjects(store, "staff")] == [
        ("ardern", {"photo": "person_b_1.jpg"}),
        ("macron", {"photo": "person_a_1.jpg"}),
    ]
    assert app.describe_gallery(store, "staff").subjects == 2
    assert app.delete_gallery(store, "staff") == "staff"
    assert app.list_galleries(store) == ()
    with pytest.raises(GalleryError) as gone:
        app.describe_gallery(store, "staff")
    assert gone.value.status == 404


def test_build_then_import_round_trip(settings, engine, store, tmp_path, images_dir):
    folder = tmp_path / "staff"
    for subject, photo in ENROL.items():
        (folder / subject).mkdir(parents=True)
        (folder / subject / photo).write_bytes((images_dir / photo).read_bytes())
    (folder / "nobody").mkdir()
    (folder / "nobody" / "empty.jpg").write_bytes(b"")
    built = build_gallery(settings, BuildGallery(folder, version=7), engine)
    assert isinstance(built, BuiltBundle) and (built.name, built.subjects, built.faces) == ("staff", 3, 3)
    assert len(built.skipped) == 1 and "empty.jpg" in built.skipped[0]
    first = app.import_bundle(store, app.ImportBundle(built.data))
    assert first.changed and (first.gallery.name, first.gallery.version, first.gallery.faces) == ("staff", 7, 3)
    assert not app.import_bundle(store, app.ImportBundle(built.data)).changed  # the same bundle twice: a no-op
    exported = app.export_bundle(store, "staff")
    assert exported.name == "staff"
    other = GalleryStore(tmp_path / "other.sqlite3", store.recognizer)
    again = app.import_bundle(other, app.ImportBundle(exported.data, expected_name="staff"))
    assert again.gallery.checksum == first.gallery.checksum and again.gallery.subjects == 3
    probe = (images_dir / PROBES[0]).read_bytes()
    found = app.search(other, engine, app.Search("staff", images=(probe,), threshold=-1))
    assert found.images[0].matches[0][0].subject == IDENTITIES[PROBES[0]]


def test_a_bundle_of_another_recognizer_or_gallery_is_refused(store, engine):
    foreign = Recognizer("w600k_r50", "f" * 64, 128)
    header = {"name": "staff", "version": 9, "recognizer": foreign.name, "recognizer_sha256": foreign.sha256}
    data = bundle.pack(header, [("x", {}, 1)], np.eye(1, 128, dtype=np.float32))
    with pytest.raises(GalleryError) as wrong:
        app.import_bundle(store, app.ImportBundle(data))
    assert (wrong.value.status, wrong.value.code) == (409, "wrong_recognizer")
    assert "made with w600k_r50" in wrong.value.message and f"runs {REC}" in wrong.value.message
    with pytest.raises(GalleryError) as elsewhere:
        app.import_bundle(store, app.ImportBundle(data, expected_name="visitors"))
    assert elsewhere.value.code == "bad_bundle" and "not 'visitors'" in elsewhere.value.message
    assert app.list_galleries(store) == ()


def test_the_store_without_an_engine_is_tied_to_the_model_file(settings, engine):
    """The CLI's import/export/list open the store from the model file alone: the same identity."""
    assert app.recognizer_identity(settings) == app.engine_identity(engine)


def test_verify_the_shared_models(make_settings, tmp_path):
    report = verify_models(make_settings(), VerifyModels((DET, REC)))
    assert isinstance(report, VerifyReport) and report.ok
    assert report == VerifyReport((DET, REC), ())
    with pytest.raises(ManifestError, match="unknown model 'nope'"):
        verify_models(make_settings(), VerifyModels(("nope",)))
    broken = tmp_path / "models"
    broken.mkdir()
    (broken / Path(load_manifest().get(REC).file).name).write_bytes(b"not onnx")
    bad = verify_models(make_settings(models_dir=str(broken)), VerifyModels((DET, REC)))
    assert not bad.ok and bad.checked == (DET, REC)
    assert any(p.startswith(f"{DET}: ") and "is missing" in p for p in bad.problems)
    assert any(p.startswith(f"{REC}: ") and "does not load as ONNX" in p for p in bad.problems)
    assert issubclass(ManifestError, FacefleetError)
