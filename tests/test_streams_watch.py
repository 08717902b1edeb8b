"""Camera streams end to end in one process: a video of the shared photos, read as a file camera and over
RTSP (GStreamer's RTSP server), the default pack's real detector and recognizer, a gallery with two people
enrolled from other photos of them, and the events on a real mosquitto (app/streams.py, app/streamsetup.py).

Each appearance of a person is one track, identified once with the right subject; the impostor is `unknown`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from facefleet.app import galleries as app
from facefleet.app.streams import OpenGate
from facefleet.app.streamsetup import open_streams
from facefleet.engine.pipeline import FaceEngine
from facefleet.galleries.store import GalleryStore
from facefleet.settings import Settings
from tests.media import RtspServer, make_video, rtsp_available
from tests.mosquitto import Broker, Subscriber

SHOWN = ("person_a_2.jpg", "person_b_2.jpg", "impostor_2.jpg")  # Macron 2025, Ardern 2022, Sunak
EXPECTED = {"person_a_2.jpg": "macron", "person_b_2.jpg": "ardern", "impostor_2.jpg": "unknown"}
ENROL = {"macron": "person_a_1.jpg", "ardern": "person_b_1.jpg"}  # other photos of them (2014, 2018)


@pytest.fixture(scope="module")
def engine(engine_factory, default_pack: Path) -> FaceEngine:
    manifest_default = ("yunet_2023mar_int8bq", "sface_2021dec_int8bq")
    return engine_factory(*manifest_default, models_dir=str(default_pack))


@pytest.fixture(scope="module")
def video(images_dir: Path):
    # each photo 3 s on screen, 3 s of black between: longer than a track's 2 s of absence, so one track each
    return make_video([images_dir / name for name in SHOWN], seconds=3.0, gap_s=3.0)


@pytest.fixture
def broker(tmp_path: Path):
    made = Broker(tmp_path / "mosquitto")
    made.start()
    try:
        yield made
    finally:
        made.stop()


def _store(settings: Settings, engine: FaceEngine, image_bytes) -> GalleryStore:
    store = app.open_store(settings, engine)
    app.create_gallery(store, app.CreateGallery("staff"))
    for subject, photo in ENROL.items():
        app.enrol(store, engine, app.Enrol("staff", subject, images=(image_bytes(photo),)))
    return store


def _settings(make_settings, default_pack: Path, tmp_path: Path, broker: Broker, url: str) -> Settings:
    cameras = tmp_path / "cameras.yml"
    cameras.write_text(f"- name: door\n  url: {url}\n  fps: 5\n")
    return make_settings(
        models_dir=str(default_pack),
        gallery_db=str(tmp_path / "galleries.sqlite3"),
        streams_dir=str(tmp_path / "streams"),
        streams_file=str(cameras),
        stream_gallery="staff",
        appliance_name="test-appliance",
        mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
    )


def _events(subscriber: Subscriber, ended: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [m for m in subscriber.messages if m.topic.endswith("/track_ended")]
        if len(got) >= ended:
            break
        time.sleep(0.25)
    return list(subscriber.messages)


def _check_one_track_per_appearance(messages: list) -> None:
    topics = {m.topic for m in messages}
    assert topics <= {f"facefleet/test-appliance/door/{k}" for k in ("track_started", "identified", "track_ended")}
    by_track: dict[int, list] = {}
    for m in messages:
        by_track.setdefault(m.payload["track_id"], []).append(m.payload)
    finals = sorted(
        next(p["subject"] for p in reversed(events) if p["kind"] == "identified")
        for events in by_track.values()
        if any(p["kind"] == "identified" for p in events)
    )
    assert finals == sorted(EXPECTED.values()), by_track
    identified = [m.payload for m in messages if m.payload["kind"] == "identified"]
    for subject in ("macron", "ardern"):  # one identified event per person per appearance
        named = [p for p in identified if p["subject"] == subject]
        assert len(named) == 1, identified
        assert named[0]["gallery"] == "staff" and named[0]["score"] > 0.3
    unknown = [p for p in identified if p["subject"] == "unknown"]
    assert unknown and all(p["score"] is not None for p in unknown)
    ended = [m.payload for m in messages if m.payload["kind"] == "track_ended"]
    assert sorted(p["subject"] for p in ended) == sorted(EXPECTED.values()), ended


@pytest.mark.slow
def test_a_file_camera_identifies_each_person_once_per_appearance_and_publishes_to_mqtt(
    make_settings, default_pack, engine, image_bytes, video, broker, tmp_path
):
    settings = _settings(make_settings, default_pack, tmp_path, broker, str(video.path))
    store = _store(settings, engine, image_bytes)
    subscriber = Subscriber(broker, "facefleet/#")
    streams = open_streams(settings, engine, store, OpenGate())
    try:
        messages = _events(subscriber, ended=3, timeout=video.duration_s + 30)
        status = streams.registry.status()["door"][1]
    finally:
        streams.stop()
        subscriber.client.disconnect()
    _check_one_track_per_appearance(messages)
    assert status["source"]["state"] in ("running", "ended") and status["pipeline"]["frames"] > 10, status
    assert status["camera"]["gallery"] == "staff"


@pytest.mark.slow
@pytest.mark.skipif(rtsp_available() is not None, reason=str(rtsp_available()))
def test_an_rtsp_camera_is_tracked_and_reconnects_after_its_server_restarts(
    make_settings, default_pack, engine, image_bytes, video, broker, tmp_path
):
    (tmp_path / "rtsp").mkdir()
    server = RtspServer(video.path, tmp_path / "rtsp").start()
    try:
        settings = _settings(make_settings, default_pack, tmp_path, broker, server.url)
        store = _store(settings, engine, image_bytes)
        subscriber = Subscriber(broker, "facefleet/#")
        streams = open_streams(settings, engine, store, OpenGate())
        try:
            messages = _events(subscriber, ended=3, timeout=video.duration_s + 40)
            _check_one_track_per_appearance(messages[: _first_pass(messages)])
            server.stop()  # the camera reboots: the watch backs off, then reads again
            time.sleep(4)
            server.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = streams.registry.status()["door"][1]["source"]
                if status["reconnects"] >= 1 and status["state"] == "running" and status["gap_seconds_total"] > 0:
                    break
                time.sleep(0.5)
        finally:
            streams.stop()
            subscriber.client.disconnect()
    finally:
        server.stop()
    assert status["reconnects"] >= 1 and status["gap_seconds_total"] >= 3, status
    assert status["state"] == "running", status


def _first_pass(messages: list) -> int:
    """The messages up to the third track_ended (the looped video's first pass)."""
    ended = 0
    for i, m in enumerate(messages):
        ended += m.topic.endswith("/track_ended")
        if ended == 3:
            return i + 1
    return len(messages)
