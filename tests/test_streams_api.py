"""/streams on the real service (gunicorn, API keys on, two workers): add a camera, see it run, refuse what is
wrong with a clear 4xx, remove it; the inventory's cameras are listed and not removable through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.media import make_video
from tests.server import Service, camera_service, until

KEY = "streams-api-test-key"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def video(images_dir: Path):
    return make_video([images_dir / "person_a_2.jpg", images_dir / "two_people.jpg"], seconds=2.0, gap_s=1.0)


@pytest.fixture(scope="module")
def served(shared_models: Path, cache_dir: Path, tmp_path_factory, video) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("streams-api")
    service = camera_service(shared_models, cache_dir, folder, KEY, video.path, fps=2, FACEFLEET_WORKERS="2")
    try:
        yield service
    finally:
        service.stop()


def _get(served: Service, path: str) -> requests.Response:
    return requests.get(f"{served.url}{path}", headers=HEADERS, timeout=30)


@pytest.mark.slow
def test_a_camera_is_added_runs_and_is_removed_whichever_worker_answers(served: Service, video):
    assert requests.get(f"{served.url}/streams", timeout=10).status_code == 401, "keys are on"
    body = {"name": "door", "url": f"file://{video.path}", "fps": 4}
    added = requests.post(f"{served.url}/streams", json=body, headers=HEADERS, timeout=30)
    assert added.status_code == 201, added.text
    assert added.json()["origin"] == "api" and added.json()["fps"] == 4
    again = requests.post(f"{served.url}/streams", json=body, headers=HEADERS, timeout=30)
    assert again.status_code == 409 and again.json()["error"]["code"] == "exists"

    def running() -> dict | None:
        door = _get(served, "/streams/door").json()
        return door if door["running"] and door["status"]["pipeline"]["frames"] > 0 else None

    door = until("the runner to start the camera", running, timeout=60)
    assert door["status"]["source"]["state"] in ("running", "ended"), door
    assert door["status"]["source"]["decoder"] and door["status"]["source"]["width"] == 640
    listed = {s["name"]: s for s in _get(served, "/streams").json()["streams"]}
    assert set(listed) == {"door", "lobby"} and listed["lobby"]["origin"] == "inventory"

    # the camera's metrics, from the worker that runs it, in the service's one /metrics
    def scraped() -> str | None:
        text = requests.get(f"{served.url}/metrics", timeout=10).text
        return text if 'facefleet_stream_frames_total{camera="door",stage="processed"}' in text else None

    metrics = until("the camera's frames in /metrics", scraped)
    assert 'facefleet_stream_frames_total{camera="lobby",stage="decoded"}' in metrics

    removed = requests.delete(f"{served.url}/streams/door", headers=HEADERS, timeout=30)
    assert removed.status_code == 200 and removed.json() == {"deleted": "door"}
    assert _get(served, "/streams/door").status_code == 404
    lobby = requests.delete(f"{served.url}/streams/lobby", headers=HEADERS, timeout=30)
    assert lobby.status_code == 409 and lobby.json()["error"]["code"] == "inventory_camera"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"url": "rtsp://cam/1"}, 'missing field "name"'),
        ({"name": "a/b", "url": "rtsp://cam/1"}, "camera"),
        ({"name": "cam", "url": "ftp://cam/1"}, "rtsp://"),
        ({"name": "cam"}, 'missing field "url"'),
        ({"name": "cam", "url": "rtsp://cam/1", "fps": 0}, "fps"),
        ({"name": "cam", "url": "rtsp://cam/1", "fps": "fast"}, "fps"),
    ],
)
def test_a_wrong_camera_is_a_clear_400_and_changes_nothing(served: Service, body, says):
    before = _get(served, "/streams").json()["streams"]
    answer = requests.post(f"{served.url}/streams", json=body, headers=HEADERS, timeout=30)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]["message"], answer.json()
    assert [s["name"] for s in _get(served, "/streams").json()["streams"]] == [s["name"] for s in before]
    assert requests.get(f"{served.url}/livez", timeout=10).status_code == 200
