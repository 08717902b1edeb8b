"""The request path as a whole: bad images fail alone, timings cover every stage."""

from __future__ import annotations

from service.errors import ImageTooLargeError
from service.pipeline import timed_process


def test_bad_images_fail_alone_and_the_rest_are_answered(engine_factory, image_bytes):
    engine = engine_factory("scrfd_2.5g", "mobilefacenet")
    jpeg = image_bytes("two_people.jpg")
    inputs = [jpeg, b"", b"GIF89a not really", jpeg[: len(jpeg) // 3], image_bytes("biden.jpg")]
    results = engine.process(inputs)
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert [len(r.faces) for r in results] == [2, 0, 0, 0, 1]
    assert [r.error.code for r in results if r.error] == ["bad_image"] * 3
    assert all(f.embedding is not None for r in results for f in r.faces)


def test_pixel_limit_applies_per_image(make_settings, image_bytes):
    from service.pipeline import FaceEngine

    settings = make_settings(det_name="scrfd_500m", rec_name="mobilefacenet", max_pixels=500_000)
    engine = FaceEngine.from_settings(settings)
    big, small = engine.process([image_bytes("two_people.jpg"), image_bytes("person_a_1.jpg")])
    assert isinstance(big.error, ImageTooLargeError) and small.ok


def test_timings_cover_every_stage(engine_factory, image_bytes):
    engine = engine_factory("scrfd_2.5g", "mobilefacenet")
    results, timings, total_ms = timed_process(engine, [image_bytes("two_people.jpg")])
    assert len(results[0].faces) == 2
    ms = timings.ms()
    assert all(ms[stage] > 0 for stage in ("decode", "det_prep", "det_run", "det_post", "align", "rec_prep", "rec_run"))
    assert sum(ms.values()) <= total_ms + 1
