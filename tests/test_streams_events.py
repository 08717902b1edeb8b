"""Stream events: their JSON, the SQLite outbox (bound, retention, restart) and delivery to a real mosquitto
and to a real local HTTP endpoint (issue 21)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from facefleet.streams.counters import Counts
from facefleet.streams.delivery import Dispatcher
from facefleet.streams.events import EVENT_SCHEMA, StreamEvent, check_name
from facefleet.streams.mqtt import MqttOptions, MqttPublisher
from facefleet.streams.outbox import Outbox
from facefleet.streams.webhooks import SIGNATURE_HEADER, WebhookOptions, WebhookPublisher, redact_url

from .conftest import ROOT, SHARED_IMAGES
from .front import make_pki
from .mosquitto import Broker, Subscriber
from .server import until

VALIDATOR = jsonschema.Draft202012Validator(EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def crop() -> bytes:
    """A real face crop: the face region of a shared photo, as JPEG."""
    with Image.open(SHARED_IMAGES / "obama.jpg") as image:
        width, height = image.size
        face = image.convert("RGB").crop((width // 4, height // 8, 3 * width // 4, 5 * height // 8))
        face.thumbnail((160, 160))
        out = io.BytesIO()
        face.save(out, "JPEG", quality=85)
    return out.getvalue()


def event(n: int, camera: str = "door", kind: str = "identified", crop: bytes | None = None) -> StreamEvent:
    return StreamEvent(
        kind=kind,  # type: ignore[arg-type]
        appliance="edge-1",
        camera=camera,
        track_id=n,
        subject="obama" if kind == "identified" else "unknown",
        score=0.61234567 if kind == "identified" else None,
        gallery="staff",
        bbox=(10.4, 20.6, 110, 140),
        crop=crop,
    )


class Clock:
    """The outbox's retention clock, moved by the test instead of waiting hours."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- the event ---------------------------------------------------------------------------------------------


def test_event_json_matches_its_schema_and_round_trips(crop: bytes) -> None:
    one = event(7, crop=crop)
    data = one.to_dict()
    VALIDATOR.validate(data)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["time"])
    assert data["bbox"] == [10, 21, 110, 140] and data["score"] == 0.6123 and data["schema_version"] == 1
    assert StreamEvent.from_json(one.to_json()) == StreamEvent.from_dict(data)
    assert StreamEvent.from_json(one.to_json()).crop == crop
    bare = json.loads(one.to_json(include_crop=False))
    VALIDATOR.validate(bare)
    assert bare["crop"] is None and bare["event_id"] == one.event_id
    assert one.topic() == "facefleet/edge-1/door/identified"
    started = event(8, kind="track_started")
    VALIDATOR.validate(started.to_dict())
    assert started.subject == "unknown" and started.to_dict()["score"] is None


@pytest.mark.parametrize("name", ["front/door", "cam+1", "#", "", "a b", "-x", "x" * 65])
def test_names_that_would_change_the_topic_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not usable: 1-64 letters"):
        check_name("camera", name)
    with pytest.raises(ValueError, match="camera name"):
        StreamEvent(kind="track_started", appliance="edge-1", camera=name, track_id=1)


def test_bad_events_are_refused_with_one_line() -> None:
    with pytest.raises(ValueError, match="event kind 'seen'"):
        StreamEvent(kind="seen", appliance="a", camera="b", track_id=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time zone"):
        StreamEvent(kind="identified", appliance="a", camera="b", track_id=1, time=datetime(2026, 1, 1))
    tracked = StreamEvent(
        kind="identified", appliance="a", camera="b", track_id=np.int64(3), score=np.float32(0.5),
        bbox=tuple(np.array([1.4, 2.6, 3.5, 4.0], dtype=np.float32)),  # type: ignore[arg-type]
    )  # fmt: skip
    assert json.loads(tracked.to_json())["bbox"] == [1, 3, 4, 4] and type(tracked.track_id) is int
    moment = datetime(2026, 12, 4, 6, 10, 36, 123456, tzinfo=timezone.utc).astimezone()
    assert (
        StreamEvent(kind="identified", appliance="a", camera="b", track_id=1, time=moment).to_dict()["time"]
        == "2026-12-04T06:10:36.123Z"
    )


def test_docs_example_is_valid_and_every_field_is_documented() -> None:
    text = (ROOT / "docs" / "streams.md").read_text()
    example = re.search(r"```json\n(.*?)```", text, re.S)
    assert example, "docs/streams.md has no JSON example of an event"
    VALIDATOR.validate(json.loads(example.group(1)))
    for name in EVENT_SCHEMA["properties"]:
        assert f"| `{name}` |" in text, f"docs/streams.md's field table lacks {name}"


# --- the outbox --------------------------------------------------------------------------------------------


def test_outbox_bound_drops_the_oldest_and_counts_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counts = Counts()
    outbox = Outbox(tmp_path / "events.sqlite3", ["mqtt", "webhook"], max_events=5, observer=counts)
    try:
        events = [event(n) for n in range(8)]
        for one in events[:3]:
            outbox.add(one)
        outbox.mark_delivered("webhook", outbox.pending("webhook")[-1].seq)  # webhook is up to date, mqtt is not
        for one in events[3:]:
            outbox.add(one)
        assert outbox.count() == 5
        assert outbox.depth("mqtt") == 5 and outbox.depth("webhook") == 5
        assert [s.event.event_id for s in outbox.pending("mqtt")] == [e.event_id for e in events[3:]]
        assert outbox.dropped("mqtt") == 3 and counts.of("mqtt").dropped == 3
        assert outbox.dropped("webhook") == 0 and counts.of("webhook").dropped == 0
        assert outbox.add(events[-1]) == outbox.pending("mqtt")[-1].seq  # the same event twice: one row
        assert outbox.count() == 5
        drops = [r.message for r in caplog.records if "dropped" in r.message]
        assert drops == [  # one line a minute, not one per event dropped
            f"events: outbox {outbox.path}: 1 event(s) dropped before mqtt delivered them (over its 5-event bound)"
        ]
    finally:
        outbox.close()


def test_outbox_history_is_bounded_newest_first_per_camera(tmp_path: Path, crop: bytes) -> None:
    outbox = Outbox(tmp_path / "events.sqlite3", ["mqtt"])
    try:
        added = [event(n, camera="door" if n % 2 else "gate", crop=crop) for n in range(10)]
        for one in added:
            outbox.add(one)
        door = outbox.history(camera="door", limit=3)
        assert [s.event.track_id for s in door] == [9, 7, 5]
        assert all(s.event.crop is None for s in door)  # listing without crops; each one by its id
        assert outbox.crop(door[0].event.event_id) == crop
        assert [s.event.track_id for s in outbox.history(limit=2, before=door[1].seq)] == [6, 5]
        assert len(outbox.history(limit=10_000)) == 10
        assert outbox.history(camera="door", limit=1, crops=True)[0].event.crop == crop
    finally:
        outbox.close()


def test_outbox_retention_deletes_old_crops_then_old_events(tmp_path: Path, crop: bytes) -> None:
    clock, counts = Clock(), Counts()
    path = tmp_path / "events.sqlite3"
    outbox = Outbox(path, ["mqtt"], event_retention_s=24 * 3600, crop_retention_s=3600, clock=clock, observer=counts)
    try:
        old, new = event(1, crop=crop), event(2, crop=crop)
        outbox.add(old)
        outbox.mark_delivered("mqtt", outbox.pending("mqtt")[0].seq)
        clock.now += 1800
        outbox.add(new)
        clock.now += 1801  # the first crop is past its hour, the second not
        assert outbox.expire().crops == 1
        assert outbox.crop(old.event_id) is None and outbox.crop(new.event_id) == crop
        assert outbox.pending("mqtt")[0].event.crop == crop
        clock.now += 24 * 3600 - 3601 + 1  # the first event is past its day (it was delivered: no drop)
        expired = outbox.expire()
        assert (expired.events, expired.crops) == (1, 1)
        assert [s.event.event_id for s in outbox.history()] == [new.event_id]
        assert counts.of("mqtt").dropped == 0
        clock.now += 1800  # the second, never delivered, goes too: counted as dropped
        assert outbox.expire().events == 1
        assert outbox.count() == 0 and outbox.depth("mqtt") == 0 and outbox.dropped("mqtt") == 1
        assert counts.of("mqtt").dropped == 1
    finally:
        outbox.close()
    # secure_delete: the crop's bytes are overwritten, not left in the file's free pages (closing checkpoints the WAL)
    assert crop[100:200] not in path.read_bytes()
    assert (
        not path.with_name(path.name + "-wal").exists()
        or crop[100:200] not in path.with_name(path.name + "-wal").read_bytes()
    )


def test_outbox_keeps_cursors_across_restart_and_new_publishers_start_now(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    first = Outbox(path, ["mqtt", "webhook"])
    events = [event(n) for n in range(4)]
    for one in events:
        first.add(one)
    first.mark_delivered("mqtt", first.pending("mqtt")[1].seq)
    first.close()
    again = Outbox(path, ["mqtt", "audit"])  # webhook removed, audit added
    try:
        assert [s.event.event_id for s in again.pending("mqtt")] == [e.event_id for e in events[2:]]
        assert again.depth("audit") == 0  # a new publisher gets what is written from now on
        with pytest.raises(ValueError, match="'webhook' is not a publisher"):
            again.pending("webhook")
    finally:
        again.close()


def test_outbox_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "events.sqlite3"
    bad.write_bytes(b"not a database at all" * 100)
    from facefleet.streams.outbox import OutboxError

    with pytest.raises(OutboxError, match=r"events outbox .*events.sqlite3 cannot be opened: file is not a database"):
        Outbox(bad, ["mqtt"])


# --- MQTT, on a real mosquitto -----------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path / "broker")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    client = Subscriber(broker)
    try:
        yield client
    finally:
        client.close()


def mqtt_options(broker: Broker, **extra: object) -> MqttOptions:
    return MqttOptions(host="127.0.0.1", port=broker.port, reconnect_max_s=1, ack_timeout_s=3, **extra)  # type: ignore[arg-type]


def dispatcher(outbox: Outbox, *publishers: MqttPublisher | WebhookPublisher, counts: Counts) -> Dispatcher:
    running = Dispatcher(outbox, publishers, observer=counts, backoff_most_s=1)
    for loop in running.loops:
        loop.backoff.first = 0.1
    return running


def test_events_reach_the_broker_on_their_topic_with_their_payload(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, crop: bytes
) -> None:
    counts = Counts()
    outbox = Outbox(tmp_path / "events.sqlite3", ["mqtt"], observer=counts)
    running = dispatcher(outbox, MqttPublisher(mqtt_options(broker)), counts=counts)
    running.start()
    try:
        sent = [
            event(1, camera="door", kind="track_started", crop=crop),
            event(1, camera="door", kind="identified", crop=crop),
            event(2, camera="gate", kind="track_ended"),
        ]
        for one in sent:
            running.emit(one)
        got = subscriber.wait_for(len(sent))
        assert [m.topic for m in got] == [
            "facefleet/edge-1/door/track_started",
            "facefleet/edge-1/door/identified",
            "facefleet/edge-1/gate/track_ended",
        ]
        assert [m.payload for m in got] == [one.to_dict(include_crop=False) for one in sent]  # crops stay home
        assert all(m.qos == 1 and not m.retain for m in got)
        for m in got:
            VALIDATOR.validate(m.payload)
        until("the outbox to be drained", lambda: outbox.depth("mqtt") == 0 and counts.of("mqtt").published == 3)
        # a first attempt may fail while the client still connects (seen on a loaded machine): it is retried,
        # and what counts is that every event arrived once, in order
        assert counts.of("mqtt").depth == 0 and len(subscriber.messages) == len(sent)
    finally:
        running.stop()
        outbox.close()


def test_crops_are_published_only_when_asked(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, crop: bytes
) -> None:
    outbox = Outbox(tmp_path / "events.sqlite3", ["mqtt"])
    running = dispatcher(
        outbox, MqttPublisher(mqtt_options(broker, include_crops=True, topic_prefix="site")), counts=Counts()
    )
    running.start()
    try:
        one = event(3, crop=crop)
        running.emit(one)
        (got,) = subscriber.wait_for(1)
        assert got.topic == "site/edge-1/door/identified"
        assert StreamEvent.from_dict(got.payload).crop == crop
    finally:
        running.stop()
        outbox.close()


def first_seen_order(got: list) -> list[str]:
    seen: dict[str, None] = {}
    for m in got:
        seen.setdefault(m.payload["event_id"], None)
    return list(seen)


@pytest.mark.slow
def test_broker_down_keeps_events_and_delivers_them_all_in_order_when_back(
    tmp_path: Path, broker: Broker, subscriber: Subscriber
) -> None:
    counts = Counts()
    outbox = Outbox(tmp_path / "events.sqlite3", ["mqtt"], observer=counts)
    publisher = MqttPublisher(mqtt_options(broker))
    running = dispatcher(outbox, publisher, counts=counts)
    running.start()
    try:
        before = [event(n) for n in range(5)]
        for one in before:
            running.emit(one)
        subscriber.wait_for(5)
        broker.stop()
        until("the publisher to see the broker gone", lambda: not publisher.connected(), timeout=10)
        during = [event(n, camera="gate") for n in range(5, 45)]
        for one in during:
            running.emit(one)
        until("failed attempts while the broker is down", lambda: counts.of("mqtt").failed >= 2, timeout=10)
        assert outbox.depth("mqtt") == len(during)  # all waiting in the outbox
        until("the queue depth reported", lambda: counts.of("mqtt").depth == len(during), timeout=10)
        broker.start()  # the subscriber's session was saved: it gets what is published while it reconnects
        got = subscriber.wait_for(len(before) + len(during), timeout=30)
        ids = [m.payload["event_id"] for m in got]
        assert first_seen_order(got) == [e.event_id for e in before + during]  # none lost, in order
        duplicates = len(ids) - len(set(ids))
        # at least once: only messages in flight at the cut (either leg, publisher or subscriber) may come twice
        assert duplicates <= publisher.window, [(m.payload["track_id"], m.dup) for m in got]
        until("the outbox to be drained", lambda: outbox.depth("mqtt") == 0)
        assert counts.of("mqtt").published == len(before) + len(during)
        assert counts.of("mqtt").dropped == 0
    finally:
        running.stop()
        outbox.close()


def test_a_restarted_process_delivers_what_was_pending(tmp_path: Path, broker: Broker, subscriber: Subscriber) -> None:
    path = tmp_path / "events.sqlite3"
    earlier = Outbox(path, ["mqtt"])
    pending = [event(n) for n in range(6)]
    for one in pending:  # written, never delivered: the process "died" before its loop ran
        earlier.add(one)
    earlier.close()
    counts = Counts()
    outbox = Outbox(path, ["mqtt"], observer=counts)
    assert outbox.depth("mqtt") == 6
    running = dispatcher(outbox, MqttPublisher(mqtt_options(broker)), counts=counts)
    running.start()
    try:
        running.emit(latest := event(99))
        got = subscriber.wait_for(7)
        assert first_seen_order(got) == [e.event_id for e in [*pending, latest]]
        until("the outbox to be drained", lambda: outbox.depth("mqtt") == 0)
    finally:
        running.stop()
        outbox.close()


def test_tls_and_password_and_no_secret_in_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    server = Broker(tmp_path / "broker", users={"edge": "s3cret-mqtt-pw"}, pki=pki)
    server.start()
    try:
        watcher = Subscriber(server, username="edge", password="s3cret-mqtt-pw", pki=pki)
        outbox = Outbox(tmp_path / "events.sqlite3", ["mqtt"])
        try:
            good = MqttOptions(
                host="127.0.0.1", port=server.port, tls=True, ca_file=str(pki.ca), username="edge",
                password="s3cret-mqtt-pw", ack_timeout_s=3,
            )  # fmt: skip
            assert "s3cret" not in repr(good)
            running = dispatcher(outbox, MqttPublisher(good), counts=Counts())
            running.start()
            try:
                running.emit(one := event(1))
                (got,) = watcher.wait_for(1)
                assert got.payload["event_id"] == one.event_id
            finally:
                running.stop()
            counts = Counts()
            wrong = MqttOptions(
                host="127.0.0.1", port=server.port, tls=True, ca_file=str(pki.ca), username="edge",
                password="wrong-mqtt-pw", ack_timeout_s=1, reconnect_max_s=1,
            )  # fmt: skip
            running = dispatcher(outbox, MqttPublisher(wrong), counts=counts)
            running.start()
            try:
                running.emit(event(2))
                until("a refused connection", lambda: counts.of("mqtt").failed >= 1, timeout=10)
                assert outbox.depth("mqtt") == 1
            finally:
                running.stop()
            assert "refused the connection: Not authorized" in caplog.text
        finally:
            outbox.close()
            watcher.close()
    finally:
        server.stop()
    assert "s3cret-mqtt-pw" not in caplog.text and "wrong-mqtt-pw" not in caplog.text


# --- webhooks, to a real local HTTP server -----------------------------------------------------------------


class Endpoint:
    """A threaded http.server that records every POST and answers with the next status of `answers` (then 200)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    status = endpoint.answers.pop(0) if endpoint.answers else 200
                    endpoint.posts.append((dict(self.headers), body))
                    endpoint.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    try:
        yield server
    finally:
        server.close()


def test_webhook_posts_signed_events_and_retries_after_a_500(tmp_path: Path, endpoint: Endpoint) -> None:
    secret = "hook-s3cret"
    endpoint.answers = [500, 503]
    counts = Counts()
    outbox = Outbox(tmp_path / "events.sqlite3", ["webhook"], observer=counts)
    options = WebhookOptions(url=f"http://127.0.0.1:{endpoint.port}/events", secret=secret, retry_first_s=0.05)
    running = dispatcher(outbox, WebhookPublisher(options), counts=counts)
    running.start()
    try:
        sent = [event(n) for n in range(3)]
        for one in sent:
            running.emit(one)
        until("every event delivered", lambda: outbox.depth("webhook") == 0 and counts.of("webhook").published == 3)
        assert endpoint.statuses == [500, 503, 200, 200, 200]
        first = endpoint.posts[0][1]
        assert all(body == first for _, body in endpoint.posts[:3])  # the same event until it is taken
        delivered = [json.loads(body) for _, body in endpoint.posts[2:]]
        assert [d["event_id"] for d in delivered] == [e.event_id for e in sent]
        for headers, body in endpoint.posts:
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert headers[SIGNATURE_HEADER] == expected
            assert headers["Content-Type"] == "application/json"
            assert headers["X-Facefleet-Event-Id"] == json.loads(body)["event_id"]
            VALIDATOR.validate(json.loads(body))
    finally:
        running.stop()
        outbox.close()


def test_webhook_skips_an_event_it_refuses_and_backs_off_while_down(tmp_path: Path, endpoint: Endpoint) -> None:
    endpoint.answers = [422]
    counts = Counts()
    outbox = Outbox(tmp_path / "events.sqlite3", ["webhook"], observer=counts)
    options = WebhookOptions(url=f"http://127.0.0.1:{endpoint.port}/", retries=0)
    running = dispatcher(outbox, WebhookPublisher(options), counts=counts)
    running.start()
    try:
        refused, taken = event(1), event(2)
        running.emit(refused)
        running.emit(taken)
        until("both handled", lambda: outbox.depth("webhook") == 0)
        assert endpoint.statuses == [422, 200]
        assert counts.of("webhook").rejected == 1 and counts.of("webhook").published == 1
        endpoint.answers = [500] * 1000
        running.emit(event(3))
        until("attempts while the endpoint fails", lambda: counts.of("webhook").failed >= 3, timeout=10)
        assert outbox.depth("webhook") == 1
        endpoint.answers = []
        until("delivered once the endpoint is back", lambda: outbox.depth("webhook") == 0, timeout=10)
    finally:
        running.stop()
        outbox.close()


def test_webhook_secrets_never_reach_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = Endpoint(answers=[401] * 1000)
    url = f"http://edge:url-pass-123@127.0.0.1:{server.port}/hook?token=tok-456&x=1"
    options = WebhookOptions(url=url, secret="hmac-789", retries=1, retry_first_s=0.05)
    assert not re.search("url-pass-123|tok-456|hmac-789", repr(options))
    assert redact_url(url) == f"http://edge:***@127.0.0.1:{server.port}/hook?token=***&x=***"
    counts = Counts()
    outbox = Outbox(tmp_path / "events.sqlite3", ["webhook"], observer=counts)
    running = dispatcher(outbox, WebhookPublisher(options), counts=counts)
    running.start()
    try:
        running.emit(event(1))
        until("failed attempts", lambda: counts.of("webhook").failed >= 2, timeout=10)
        server.close()  # now nothing listens: connection refused
        until("more failed attempts", lambda: counts.of("webhook").failed >= 4, timeout=10)
    finally:
        running.stop()
        outbox.close()
    assert server.posts[0][0]["Authorization"] == "Basic " + base64.b64encode(b"edge:url-pass-123").decode()
    assert "answered HTTP 401" in caplog.text and "ConnectionRefusedError" in caplog.text
    assert not re.search("url-pass-123|tok-456|hmac-789", caplog.text)
    with pytest.raises(ValueError, match=r"webhook URL 'ftp://u:\*\*\*@h/' is not an http"):
        WebhookOptions(url="ftp://u:pw@h/")


@pytest.mark.slow
def test_broker_down_past_the_bound_delivers_the_newest_and_counts_the_rest(
    tmp_path: Path, broker: Broker, subscriber: Subscriber
) -> None:
    counts = Counts()
    outbox = Outbox(tmp_path / "events.sqlite3", ["mqtt"], max_events=20, observer=counts)
    broker.stop()
    running = dispatcher(outbox, MqttPublisher(mqtt_options(broker)), counts=counts)
    running.start()
    try:
        sent = [event(n) for n in range(50)]
        for one in sent:
            running.emit(one)
        assert outbox.depth("mqtt") == 20 and outbox.dropped("mqtt") == 30 and counts.of("mqtt").dropped == 30
        broker.start()
        subscriber.wait_for(20, timeout=30)
        until("the outbox to be drained", lambda: outbox.depth("mqtt") == 0)
        assert first_seen_order(subscriber.received()) == [e.event_id for e in sent[30:]]
    finally:
        running.stop()
        outbox.close()
