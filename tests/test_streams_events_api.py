"""/events on the real service (gunicorn, API keys on, two workers): a file camera of the shared photos produces
events; any worker pages through them (the one running the cameras holds the outbox, the other reads the file
read-only), serves their crops as JPEG, and refuses a wrong query with a clear 400, an unknown event with a 404
and a request without a key with a 401."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from facefleet.streams.events import EVENT_SCHEMA
from tests.media import make_video
from tests.server import Service, camera_service, until

KEY = "events-api-test-key"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def served(shared_models: Path, cache_dir: Path, tmp_path_factory, images_dir: Path) -> Iterator[Service]:
    video = make_video([images_dir / "person_a_2.jpg", images_dir / "two_people.jpg"], seconds=2.0, gap_s=2.5)
    folder = tmp_path_factory.mktemp("events-api")
    service = camera_service(shared_models, cache_dir, folder, KEY, video.path, FACEFLEET_WORKERS="2")
    try:
        yield service
    finally:
        service.stop()


def _get(served: Service, path: str, **params: str | int) -> requests.Response:
    return requests.get(f"{served.url}{path}", params=params, headers=HEADERS, timeout=30)


def _all_events(served: Service) -> list[dict]:
    """Every event once the camera's video has ended and its tracks are closed (3 faces: 3 track_ended)."""

    def ended() -> list[dict] | None:
        answer = _get(served, "/events", limit=500)
        assert answer.status_code == 200, answer.text
        events = answer.json()["events"]
        return events if sum(e["kind"] == "track_ended" for e in events) >= 3 else None

    return until("three tracks of the camera to end", ended, timeout=120)


@pytest.mark.slow
def test_events_are_paged_newest_first_and_their_crops_served(served: Service):
    everything = _all_events(served)
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs), "newest first, each once"
    assert {e["camera"] for e in everything} == {"lobby"}
    assert {e["kind"] for e in everything} >= {"track_started", "track_ended"}
    first = everything[0]
    payload = set(EVENT_SCHEMA["properties"]) - {"schema_version", "crop"}
    assert set(first) == payload | {"seq", "has_crop"}, "the payload without its crop, with seq and has_crop"

    # page by 2 through `before` until a short page: the same events, in the same order, whichever worker answers
    paged, before = [], None
    for _ in range(len(everything)):
        params: dict[str, str | int] = {"limit": 2, **({"before": before} if before else {})}
        body = _get(served, "/events", **params).json()
        paged += body["events"]
        before = body["next_before"]
        if before is None:
            break
        assert before == body["events"][-1]["seq"]
    assert [e["event_id"] for e in paged] == [e["event_id"] for e in everything]
    assert _get(served, "/events", camera="lobby", limit=500).json()["events"] == everything
    assert _get(served, "/events", camera="yard").json() == {"events": [], "next_before": None}
    assert _get(served, "/events", before=min(seqs)).json()["events"] == []

    with_crop = [e for e in everything if e["has_crop"]]
    assert with_crop, "events of a face carry its crop"
    for event in with_crop[:3]:  # a few, on whichever worker answers
        answer = _get(served, f"/events/{event['event_id']}/crop")
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/jpeg"
        assert answer.headers["Cache-Control"] == "no-store", "a crop must not outlive its retention in a cache"
        with Image.open(io.BytesIO(answer.content)) as image:
            assert image.format == "JPEG" and min(image.size) > 8


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"limit": 0}, "limit must be a whole number from 1 to 500"),
        ({"limit": "abc"}, "limit must be a whole number from 1 to 500"),
        ({"limit": 501}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"before": 0}, "before must be a whole number"),
        ({"before": "-3"}, "before"),
        ({"before": "9" * 40}, "before"),
        ({"limit": ""}, "limit"),
        ({"camera": "a/b"}, "camera name"),
        ({"camera": ""}, "camera name"),
    ],
)
def test_a_wrong_query_is_a_clear_400(served: Service, params, says):
    answer = _get(served, "/events", **params)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and says in error["message"], error
    assert "Traceback" not in answer.text


@pytest.mark.slow
def test_an_unknown_event_is_404_a_malformed_id_400_and_no_key_401(served: Service):
    unknown = _get(served, f"/events/{uuid.uuid4()}/crop")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert "retention" in unknown.json()["error"]["message"]
    malformed = _get(served, "/events/not-an-id/crop")
    assert malformed.status_code == 400 and "UUID" in malformed.json()["error"]["message"]
    for path in ("/events", f"/events/{uuid.uuid4()}/crop"):
        assert requests.get(f"{served.url}{path}", timeout=10).status_code == 401, "keys are on"
        wrong = requests.get(f"{served.url}{path}", headers={"X-API-Key": "not-the-key-0000"}, timeout=10)
        assert wrong.status_code == 401
