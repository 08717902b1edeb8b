"""The camera streams put together from the settings: the registry, the events outbox and its publishers, the
runner, and the lock that lets one worker run it (docs/streams.md).

Every worker opens the registry (it answers `/streams`) and reads the events history (`/events`, read-only);
only the worker that takes the lock opens the outbox, connects the publishers and starts the cameras, so a fleet
of workers never watches a camera twice.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facefleet.app.streams import CameraWatch, EngineGate, StreamRunner, WatchDefaults, WatchObserver
from facefleet.engine.pipeline import FaceEngine
from facefleet.errors import ConfigError
from facefleet.galleries.store import GalleryStore
from facefleet.settings import Settings
from facefleet.settings.sections import StreamsSettings
from facefleet.streams import decoders
from facefleet.streams.counters import DeliveryObserver
from facefleet.streams.delivery import Dispatcher, Publisher
from facefleet.streams.history import History
from facefleet.streams.leader import Leadership
from facefleet.streams.mqtt import MqttOptions, MqttPublisher
from facefleet.streams.outbox import Outbox
from facefleet.streams.registry import Camera, Registry, read_inventory
from facefleet.streams.webhooks import WebhookOptions, WebhookPublisher

log = logging.getLogger(__name__)
EVENTS_FILE = "events.sqlite3"  # in the streams folder: the lead's outbox, every worker's history


def _secret(path: str, what: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}") from None


def mqtt_options(section: StreamsSettings) -> MqttOptions | None:
    """FACEFLEET_MQTT_URL and its companions; None when no broker is named."""
    if not section.mqtt_url:
        return None
    parts = urllib.parse.urlsplit(section.mqtt_url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(
            f"FACEFLEET_MQTT_URL={section.mqtt_url!r}: expected mqtt://host[:port] or mqtts://host[:port]"
        )
    tls = parts.scheme == "mqtts"
    return MqttOptions(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=section.mqtt_username or None,
        password=_secret(section.mqtt_password_file, "FACEFLEET_MQTT_PASSWORD_FILE"),
        tls=tls,
        ca_file=section.mqtt_ca_file or None,
        topic_prefix=section.mqtt_topic_prefix,
        client_id=f"facefleet-{section.appliance_name}",
        include_crops=section.events_include_crops,
    )


def webhook_options(section: StreamsSettings) -> WebhookOptions | None:
    """FACEFLEET_WEBHOOK_URL and its secret; None when no webhook is named."""
    if not section.webhook_url:
        return None
    secret = _secret(section.webhook_secret_file, "FACEFLEET_WEBHOOK_SECRET_FILE")
    try:
        return WebhookOptions(section.webhook_url, secret, include_crops=section.events_include_crops)
    except ValueError as exc:
        raise ConfigError(f"FACEFLEET_WEBHOOK_URL: {exc}") from None


@dataclass(frozen=True)
class PublisherOptions:
    """The publishers the settings name, read and checked once per worker at start-up: MQTT, a webhook, both or
    none (events then stay in the local history)."""

    mqtt: MqttOptions | None
    webhook: WebhookOptions | None

    @classmethod
    def from_settings(cls, section: StreamsSettings) -> PublisherOptions:
        return cls(mqtt_options(section), webhook_options(section))

    def publishers(self) -> list[Publisher]:
        """Their clients: made by the leading worker only (the others never connect)."""
        found: list[Publisher] = []
        if self.mqtt is not None:
            found.append(MqttPublisher(self.mqtt))
        if self.webhook is not None:
            found.append(WebhookPublisher(self.webhook))
        return found


class Lead:
    """What the worker holding the streams lock runs: the outbox, the publishers' delivery and the cameras, made
    only then (another worker must not connect to the broker or write the outbox)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        inventory: list[Camera],
        options: PublisherOptions,
        make_watch: Callable[[Camera, Dispatcher], CameraWatch],
        delivery_observer: DeliveryObserver | None,
    ) -> None:
        self.section, self.folder = settings.streams, Path(settings.streams_path)
        self.registry, self.inventory, self.options, self.make_watch = registry, inventory, options, make_watch
        self.delivery_observer = delivery_observer
        self.dispatcher: Dispatcher | None = None
        self.runner: StreamRunner | None = None
        self._stopped = threading.Event()

    def __call__(self) -> None:
        section = self.section
        made = self.options.publishers()
        outbox = Outbox(
            self.folder / EVENTS_FILE,
            [p.name for p in made],
            max_events=section.events_max,
            event_retention_s=section.events_retention_h * 3600,
            crop_retention_s=section.crops_retention_h * 3600,
            observer=self.delivery_observer,
        )
        dispatcher = Dispatcher(outbox, made, self.delivery_observer)
        runner = StreamRunner(self.registry, lambda camera: self.make_watch(camera, dispatcher))
        self.dispatcher, self.runner = dispatcher, runner
        if self._stopped.is_set():
            return
        self.registry.sync_inventory(self.inventory)
        dispatcher.start()
        runner.run()
        dispatcher.stop()
        outbox.close()

    def stop(self) -> None:
        self._stopped.set()
        if self.runner is not None:
            self.runner.stop()


@dataclass(frozen=True)
class Streams:
    """The streams of one worker: its registry (every worker answers `/streams` from it), the events history
    read-only (`/events`) and its bid to lead."""

    registry: Registry
    history: History
    leadership: Leadership
    lead: Lead

    def stop(self) -> None:
        self.leadership.stop()
        self.lead.stop()


def open_streams(
    settings: Settings,
    engine: FaceEngine,
    store: GalleryStore | None,
    gate: EngineGate,
    observer: WatchObserver | None = None,
    delivery_observer: DeliveryObserver | None = None,
) -> Streams:
    """Read the inventory's cameras (a wrong file stops the start, one line), check the publishers' settings,
    open the registry, and bid for the lock in the background: the worker that takes it runs the cameras."""
    section = settings.streams
    folder = Path(settings.streams_path)
    inventory = read_inventory(section.streams_file)
    options = PublisherOptions.from_settings(section)  # a wrong setting is one line at start-up, in every worker
    registry = Registry(folder / "cameras.sqlite3")
    defaults = WatchDefaults(
        section.appliance_name,
        section.stream_fps,
        section.stream_buffer,
        section.stream_gallery or None,
        section.stream_decoder,
    )

    def make_watch(camera: Camera, dispatcher: Dispatcher) -> CameraWatch:
        # the hardware probe runs once per process, in the worker that runs the cameras, only when it may be used
        hardware = decoders.hardware() if defaults.decoder == "auto" else None
        return CameraWatch(camera, engine, store, dispatcher, defaults, gate, observer, hardware)

    lead = Lead(settings, registry, inventory, options, make_watch, delivery_observer)
    leadership = Leadership(folder / "runner.lock", lead).start()
    return Streams(registry, History(folder / EVENTS_FILE), leadership, lead)
