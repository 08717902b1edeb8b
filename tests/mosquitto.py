"""A real MQTT broker for tests: Debian's mosquitto (never its system service) on a free loopback port, in the
test's own folder, with optional users (a password file) and TLS; and a paho subscriber that records what it gets.

The broker persists its sessions in its folder, so a subscriber with a persistent session (clean_session off,
QoS 1) gets the messages published while it was away, across a broker restart: what a test of "broker down, then
back" needs to see every event. Callers stop what they start (fixtures with finally/yield).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.front import Pki
from tests.server import Process, free_port

MOSQUITTO = "/usr/sbin/mosquitto"


class Broker:
    """mosquitto on 127.0.0.1:`port` (free, kept across `stop`/`start`), configured in `folder`."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None, pki: Pki | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = pki is not None
        lines = [
            "user root",  # run as the test (root here): mosquitto would switch to its own user and lose the files
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            "log_dest stdout",
            "log_type all",
            "max_queued_messages 10000",
        ]
        if users:
            passwords = folder / "passwords"
            passwords.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if pki is not None:
            lines += [f"cafile {pki.ca}", f"certfile {pki.cert}", f"keyfile {pki.key}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: Process | None = None
        self.starts = 0

    def start(self, timeout: float = 10.0) -> None:
        self.starts += 1
        self.process = Process([MOSQUITTO, "-c", str(self.conf)], self.folder / f"mosquitto-{self.starts}.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.process.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto not listening on {self.port}: {self.process.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()  # SIGTERM: mosquitto saves its sessions, then exits
            self.process = None

    def log(self) -> str:
        return "".join(p.read_text() for p in sorted(self.folder.glob("mosquitto-*.log")))


@dataclass(frozen=True)
class Received:
    topic: str
    payload: dict[str, Any]
    qos: int
    retain: bool
    dup: bool


class Subscriber:
    """A paho client subscribed to `topic` at QoS 1 with a persistent session (`client_id` fixed), recording
    every message; it reconnects by itself after a broker restart."""

    def __init__(
        self,
        broker: Broker,
        topic: str = "#",
        username: str | None = None,
        password: str | None = None,
        pki: Pki | None = None,
    ) -> None:
        self.topic = topic
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-subscriber-{broker.port}", clean_session=False
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if pki is not None:
            self.client.tls_set(ca_certs=str(pki.ca))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("the test subscriber did not get its SUBACK")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not flags.session_present:
            client.subscribe(self.topic, qos=1)
        else:
            self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Received(message.topic, json.loads(message.payload), message.qos, message.retain, message.dup)
            )

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The messages once there are at least `count` distinct event ids, or AssertionError at `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len({m.payload["event_id"] for m in got}) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received())} message(s) of {count} after {timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
