"""Events to an MQTT broker: QoS 1, retain off, one topic per appliance, camera and kind.

Why the care about acknowledgements: an event leaves the outbox only once the broker has taken responsibility
for it (its PUBACK), never when paho merely queued it. paho keeps a QoS 1 message it sent across a reconnect and
sends it again itself (DUP flag), so this publisher remembers which outbox events it already handed to paho and
waits for their PUBACK instead of publishing them twice. While the client is disconnected nothing new is handed
to paho: the outbox is the only queue. paho reconnects on its own (1 s, doubling to `reconnect_max_s`).

Topic: `<topic_prefix>/<appliance>/<camera>/<kind>` (`facefleet/edge-1/door/identified`); payload: the event's
JSON (docs/streams.md), crops left out unless `include_crops`.
"""

from __future__ import annotations

import logging
import ssl
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from facefleet.streams.delivery import Attempt
from facefleet.streams.events import TOPIC_PREFIX
from facefleet.streams.outbox import Stored

log = logging.getLogger(__name__)

MAX_PAHO_QUEUE = 1000  # messages paho may hold unacknowledged (a broker that takes but never acknowledges)


@dataclass(frozen=True)
class MqttOptions:
    """Where and how to publish. `password` never appears in a repr or a log line. `tls` with no `ca_file`
    trusts the system's CAs; `cert_file`/`key_file` add a client certificate."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    topic_prefix: str = TOPIC_PREFIX
    client_id: str | None = None  # default: facefleet-<random>, so two processes never take over each other
    keepalive_s: int = 30
    ack_timeout_s: float = 10.0
    reconnect_max_s: int = 30
    include_crops: bool = False
    window: int = 20

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class MqttPublisher:
    """A `Publisher` (delivery.py) to one broker."""

    name = "mqtt"

    def __init__(self, options: MqttOptions) -> None:
        self.options = options
        self.window = options.window
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id or f"facefleet-{uuid.uuid4().hex[:12]}",
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        if options.username is not None:
            self._client.username_pw_set(options.username, options.password)
        if options.tls:
            self._client.tls_set(
                ca_certs=options.ca_file,
                certfile=options.cert_file,
                keyfile=options.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self._client.reconnect_delay_set(1, options.reconnect_max_s)
        self._client.max_queued_messages_set(MAX_PAHO_QUEUE)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self._state = threading.Condition()
        self._connected = False
        self._closed = False
        self._why = "not connected yet"
        self._acks = 0  # PUBACKs received so far: tells a fresh acknowledgement of a mid from an old one
        self._acked: dict[int, int] = {}  # mid -> number of the PUBACK that acknowledged it
        self._inflight: dict[int, tuple[int, int]] = {}  # outbox seq -> (mid, PUBACKs before it was published)

    def start(self) -> None:
        log.info("events: mqtt publishing to %s as %s", self.options.where, self.options.username or "anonymous")
        self._client.connect_async(self.options.host, self.options.port, self.options.keepalive_s)
        self._client.loop_start()  # paho's thread: network, keepalive, reconnects

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.notify_all()
        self._client.disconnect()
        self._client.loop_stop()

    def connected(self) -> bool:
        with self._state:
            return self._connected

    # paho's callbacks, on its network thread
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        with self._state:
            self._connected = not reason.is_failure
            self._why = "" if self._connected else f"broker refused the connection: {reason}"
            self._state.notify_all()
        if reason.is_failure:
            log.warning("events: mqtt %s refused the connection: %s", self.options.where, reason)
        else:
            log.info("events: mqtt connected to %s", self.options.where)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        with self._state:
            was = self._connected
            self._connected = False
            self._why = f"disconnected: {reason}"
            self._state.notify_all()
        if was and not self._closed:
            log.warning("events: mqtt lost %s (%s); reconnecting", self.options.where, reason)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        with self._state:
            self._why = f"cannot connect to {self.options.where}"

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        with self._state:
            self._acks += 1
            self._acked[mid] = self._acks
            self._state.notify_all()

    def _is_acked(self, seq: int) -> bool:
        mid, before = self._inflight[seq]
        return self._acked.get(mid, -1) > before

    def send(self, batch: Sequence[Stored]) -> Attempt:
        """Hand the events not yet handed to paho to it (only while connected), then wait for every PUBACK of
        the batch, up to `ack_timeout_s`; done = the acknowledged run from the batch's start."""
        if not batch:
            return Attempt(0)
        with self._state:
            first = batch[0].seq
            for seq in [s for s in self._inflight if s < first]:  # gone from the outbox (bound, retention)
                del self._inflight[seq]
            if not self._connected:
                return Attempt(0, reason="unreachable", error=f"{self.options.where}: {self._why}")
        for item in batch:
            if item.seq in self._inflight:
                continue  # paho has it (and resends it after a reconnect): wait for its PUBACK, do not repeat it
            event = item.event
            with self._state:
                before = self._acks
            info = self._client.publish(
                event.topic(self.options.topic_prefix),
                event.to_json(include_crop=self.options.include_crops),
                qos=1,
                retain=False,
            )
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                break
            with self._state:
                self._inflight[item.seq] = (info.mid, before)
        done = 0
        with self._state:
            self._state.wait_for(
                lambda: self._closed or all(i.seq in self._inflight and self._is_acked(i.seq) for i in batch),
                self.options.ack_timeout_s,
            )
            for item in batch:
                if item.seq not in self._inflight or not self._is_acked(item.seq):
                    break
                mid, _ = self._inflight.pop(item.seq)
                self._acked.pop(mid, None)
                done += 1
            connected, why = self._connected, self._why
        if done == len(batch):
            return Attempt(done)
        if not connected:
            return Attempt(done, reason="unreachable", error=f"{self.options.where}: {why}")
        return Attempt(
            done, reason="timeout", error=f"{self.options.where}: no PUBACK within {self.options.ack_timeout_s:g} s"
        )
