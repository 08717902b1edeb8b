"""The settings' sections: each field declared once, with its variable, default and meaning.

`Settings` (service/settings/root.py) holds one of each; a part of the program takes the section
it needs. docs/configuration.md's tables are generated from these declarations
(`python -m facefleet.settings.docs`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from facefleet.errors import ConfigError
from facefleet.settings.env import (
    ARENA_STRATEGIES,
    CONV_ALGO_SEARCHES,
    PROVIDER_CHOICES,
    SHAPE_POLICIES,
    STREAM_DECODERS,
    STREAM_SHARES,
    Network,
    above_zero_float,
    above_zero_int,
    auth_mode,
    cosine,
    default_cache_dir,
    exactly_one_of,
    key_lines,
    knob,
    log_format,
    log_level,
    network_list,
    non_negative_float,
    non_negative_int,
    one_of,
    parse_bool,
    parse_headers,
    parse_openvino_device,
    parse_providers,
    parse_size,
    path_list,
    positive_int,
    read_variables,
    unit_float,
    word_list,
)

S = TypeVar("S", bound="Section")


class Section:
    """A group of settings read from their own variables."""

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
        """Defaults < environment < `overrides` (flags; a None flag is one not given)."""
        values = read_variables(cls, os.environ if environ is None else environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class ModelsSettings(Section):
    """Where the model files are and which ones run (`facefleet models ...` and every engine user)."""

    models_dir: str = knob(
        "./models", "FACEFLEET_MODELS_DIR", "MODELS_DIR", doc="folder holding the model files (`/models` in containers)"
    )
    cache_dir: str = knob(
        None,
        "FACEFLEET_CACHE_DIR",
        doc=(
            "prepared model copies (`prepared/<sha256>/`), downloads, TensorRT engine and timing "
            "caches (`trt/<sha256>/<device>/`)"
        ),
        shown="`$XDG_CACHE_HOME/facefleet` or `~/.cache/facefleet`",
        factory=default_cache_dir,
    )
    det_name: str = knob(
        "",
        "FACEFLEET_DET_NAME",
        "DET_NAME",
        doc="detector, by manifest name",
        shown="the manifest's default (`yunet_2023mar_int8bq`)",
    )
    rec_name: str = knob(
        "",
        "FACEFLEET_REC_NAME",
        "REC_NAME",
        doc="recognizer, by manifest name",
        shown="the manifest's default (`sface_2021dec_int8bq`)",
    )
    ga_name: str = knob(
        "",
        "FACEFLEET_GA_NAME",
        "GA_NAME",
        doc="gender/age model, by manifest name (`genderage_v1`): what `extract_ga` reads",
        shown="none (`gender` and `age` null, with `ga_error`)",
    )
    mask_name: str = knob(
        "",
        "FACEFLEET_MASK_DETECTOR",
        "MASK_DETECTOR",
        doc="mask classifier, by manifest name (`mask_detector`, `mask_detector112`): what `detect_masks` reads",
        shown="none (`mask` and `mask_probs` null, with `mask_error`, unless the detector scores masks)",
    )
    verify_models: bool = knob(
        True,
        "FACEFLEET_VERIFY_MODELS",
        parse=parse_bool,
        doc="check each model file's sha256 against the manifest before loading it",
    )


@dataclass(frozen=True)
class EngineSettings(Section):
    """How models run: providers, thresholds, input sizes, batches, onnxruntime's memory knobs."""

    providers: tuple[str, ...] = knob(
        ("tensorrt", "cuda", "cpu"),
        "FACEFLEET_PROVIDERS",
        parse=parse_providers,
        doc=(
            "the provider chain, tried in order; any of `tensorrt`, `cuda`, `openvino`, `cpu`. A provider"
            ' this onnxruntime build does not offer is passed over with its reason (README.md, "Providers and Jetsons")'
        ),
    )
    provider_choice: str | None = knob(
        None,
        "FACEFLEET_PROVIDER_CHOICE",
        parse=exactly_one_of(*PROVIDER_CHOICES),
        doc=(
            "which provider of the chain serves a model: `first`, the first that works; `fastest`, every "
            "one that works is opened and timed on the same warm input (median of a few runs), the "
            "fastest serves and the others are closed. The figures are in the model's provider report "
            '(`/info`; docs/models.md, "Which provider serves a model")'
        ),
        shown="`fastest` when the chain names `openvino`, else `first`",
    )
    openvino_device: str = knob(
        "CPU",
        "FACEFLEET_OPENVINO_DEVICE",
        parse=parse_openvino_device,
        doc="the OpenVINO provider's `device_type`: `CPU`, `GPU`, `GPU.1`, `NPU`, `AUTO:GPU,CPU`...",
    )
    det_threshold: float | None = knob(
        None,
        "FACEFLEET_DET_THRESH",
        "DEF_DET_THRESH",
        parse=unit_float,
        doc=('face score threshold, 0 to 1; a request\'s `"threshold"` wins over it (docs/models.md, "Thresholds")'),
        shown="the detector's `det_threshold` from the manifest (0.5 for a model without one)",
    )
    verify_threshold: float | None = knob(
        None,
        "FACEFLEET_VERIFY_THRESH",
        parse=cosine,
        doc=(
            "cosine similarity at or above which two faces are one person (`/verify`, `compare`, "
            'gallery search), -1 to 1; a request\'s `"threshold"` / `"gallery_threshold"` wins over '
            "it"
        ),
        shown="the recognizer's `verify_threshold` from the manifest (0.4 for a model without one)",
    )
    nms_iou: float = knob(
        0.4, "FACEFLEET_NMS_IOU", parse=unit_float, doc="overlap (IoU) above which the weaker of two boxes is dropped"
    )
    det_size: tuple[int, int] = knob(
        (640, 640),
        "FACEFLEET_DET_SIZE",
        "MAX_SIZE",
        parse=parse_size,
        doc="detector input `WIDTH,HEIGHT`, multiples of 32; the largest input under `fit`",
    )
    shape_policy: str = knob(
        "fixed",
        "FACEFLEET_SHAPE_POLICY",
        parse=exactly_one_of(*SHAPE_POLICIES),
        doc=(
            "`fixed`: always the full `DET_SIZE` (what TensorRT engines need); `fit`: the image's "
            "own aspect padded to a multiple of 32 (fewer pixels on CPU). Files with a fixed input "
            "always run `fixed`"
        ),
    )
    det_batch_size: int = knob(
        4,
        "FACEFLEET_DET_BATCH_SIZE",
        "DET_BATCH_SIZE",
        parse=positive_int,
        doc="images per detector run, for detectors with a batch axis",
    )
    rec_batch_size: int = knob(
        8,
        "FACEFLEET_REC_BATCH_SIZE",
        "REC_BATCH_SIZE",
        parse=positive_int,
        doc=(
            "faces per recognizer run, for recognizers with a batch axis; a run's activations grow with it "
            "(IResNet-100 INT8 on the CPU: 177 MiB at 8, 293 MiB at 16, for the same time per face)"
        ),
    )
    max_pixels: int = knob(
        40000000,
        "FACEFLEET_MAX_PIXELS",
        parse=positive_int,
        doc=("largest image accepted, in pixels; larger ones are refused from their header, before decoding"),
    )
    max_request_pixels: int = knob(
        64000000,
        "FACEFLEET_MAX_REQUEST_PIXELS",
        parse=positive_int,
        doc=(
            "most pixels all the images of one request may declare in their headers, summed before any is "
            "decoded; more is 413 too_many_pixels"
        ),
    )
    max_faces: int = knob(
        100,
        "FACEFLEET_MAX_FACES",
        parse=positive_int,
        doc=(
            "most faces kept per image, best scores first (NMS sees only the best 8 candidates per "
            "face kept; a face has about 6). A low threshold (0 makes every anchor a candidate) "
            "would otherwise cost seconds of NMS, gigabytes of IoU matrix and an embedding per "
            'anchor: one 1x1 image at `"threshold": 0` took 184 s before this cap'
        ),
    )
    cpu_threads: int = knob(
        0,
        "FACEFLEET_CPU_THREADS",
        parse=non_negative_int,
        doc="CPU provider intra-op threads",
        shown="`0` (onnxruntime's choice: one per core)",
    )
    device_id: int = knob(0, "FACEFLEET_DEVICE_ID", parse=non_negative_int, doc="CUDA / TensorRT device")
    trt_fp16: bool = knob(True, "FACEFLEET_TRT_FP16", "FORCE_FP16", parse=parse_bool, doc="TensorRT FP16 kernels")
    trt_workspace_mb: int = knob(
        1024,
        "FACEFLEET_TRT_WORKSPACE_MB",
        parse=non_negative_int,
        doc=(
            "TensorRT's builder workspace bound (`trt_max_workspace_size`, in MiB; `0` = TensorRT's"
            " own choice, which may take most of the device memory). On an 8 GB Orin Nano keep it "
            "bounded: that memory is the CPU's too"
        ),
    )
    cudnn_conv_algo_search: str = knob(
        "HEURISTIC",
        "FACEFLEET_CUDNN_CONV_ALGO_SEARCH",
        parse=one_of(CONV_ALGO_SEARCHES),
        doc=(
            "the CUDA provider's `cudnn_conv_algo_search`: `HEURISTIC`, `EXHAUSTIVE` (onnxruntime's"
            " default: benchmarks every convolution at start-up, slower to start and with workspace"
            " peaks) or `DEFAULT`"
        ),
    )
    gpu_mem_limit_mb: int = knob(
        0,
        "FACEFLEET_GPU_MEM_LIMIT_MB",
        parse=non_negative_int,
        doc=(
            "the CUDA provider's arena bound (`gpu_mem_limit`, in MiB), also for the CUDA entry "
            "behind TensorRT; see the note on Jetson memory below"
        ),
        shown="`0` (no bound)",
    )
    gpu_arena_extend_strategy: str = knob(
        "kSameAsRequested",
        "FACEFLEET_GPU_ARENA_EXTEND_STRATEGY",
        parse=one_of(ARENA_STRATEGIES),
        doc=(
            "how the CUDA arena grows: `kSameAsRequested` (by what is asked) or `kNextPowerOfTwo` "
            "(onnxruntime's default: up to twice what is needed)"
        ),
    )
    cpu_mem_arena: bool = knob(
        False,
        "FACEFLEET_CPU_MEM_ARENA",
        parse=parse_bool,
        doc=(
            "onnxruntime's CPU memory arena: a little faster, but it keeps the peak of every "
            "batch's activations for the life of the worker (465 MiB against 286 MiB resident after"
            " 8 concurrent clients, measured)"
        ),
    )
    batching: bool = knob(
        True, "FACEFLEET_BATCHING", parse=parse_bool, doc="cross-request batching for models with a batch axis"
    )
    batch_wait_ms: float = knob(
        2.0,
        "FACEFLEET_BATCH_WAIT_MS",
        parse=non_negative_float,
        doc=(
            "longest time a model run waits for more inputs; it waits only while other requests are"
            " in flight, so a lone request never waits"
        ),
    )

    @property
    def choice(self) -> str:
        """FACEFLEET_PROVIDER_CHOICE, or its default: `fastest` where the chain names OpenVINO (which is
        faster than the CPU provider on some models and slower on others, measured in docs/benchmarks.md),
        `first` otherwise (a GPU provider that works is always the one wanted)."""
        if self.provider_choice is not None:
            return self.provider_choice
        return "fastest" if "openvino" in self.providers else "first"


@dataclass(frozen=True)
class ServerSettings(Section):
    """The HTTP service (`facefleet serve`): listening, gunicorn, admission, URL fetching, logs."""

    host: str = knob(
        "127.0.0.1",
        "FACEFLEET_HOST",
        doc=("listen address (`0.0.0.0` to serve the network; the container and Ansible roles set it)"),
    )
    port: int = knob(18080, "FACEFLEET_PORT", "PORT", parse=positive_int, doc="listen port")
    workers: int = knob(
        1,
        "FACEFLEET_WORKERS",
        "NUM_WORKERS",
        parse=positive_int,
        doc="gunicorn worker processes; each loads its own copy of the models",
    )
    threads: int = knob(
        0,
        "FACEFLEET_THREADS",
        parse=non_negative_int,
        doc=(
            "threads per worker; the extra 4 keep `/livez`, `/health` and `/metrics` answering "
            "while the engine is saturated"
        ),
        shown="`0` = engine slots + `QUEUE_SIZE` + 4",
    )
    max_body_mb: float = knob(
        64.0, "FACEFLEET_MAX_BODY_MB", parse=non_negative_float, doc="largest request body; larger is 413"
    )
    max_images: int = knob(
        64, "FACEFLEET_MAX_IMAGES", parse=positive_int, doc="most images in one request; more is 413"
    )
    max_concurrent: int = knob(
        0,
        "FACEFLEET_MAX_CONCURRENT",
        parse=non_negative_int,
        doc=(
            "requests inside the engine at once: what cross-request batches are made of, and what "
            "bounds the worker's memory (each holds its decoded images and inputs)"
        ),
        shown="`0` = one per CPU core, at most 4",
    )
    queue_size: int = knob(
        16,
        "FACEFLEET_QUEUE_SIZE",
        parse=non_negative_int,
        doc=("requests that may wait for the engine; one more is refused with 503 and `Retry-After: 1`"),
    )
    queue_timeout_s: float = knob(
        30.0, "FACEFLEET_QUEUE_TIMEOUT_S", parse=non_negative_float, doc="longest wait in that queue before a 503"
    )
    allow_urls: bool = knob(
        False, "FACEFLEET_ALLOW_URLS", parse=parse_bool, doc="accept `images.urls` with http(s) URLs"
    )
    url_allow: tuple[str, ...] = knob(
        (),
        "FACEFLEET_URL_ALLOW",
        parse=word_list,
        doc=(
            "comma-separated hosts and CIDRs allowed although internal (every address that is not "
            "globally routable unicast is refused otherwise: loopback, link-local, private, shared "
            "100.64/10, reserved, multicast, and IPv4 inside IPv6 as its IPv4 address; on every "
            "redirect hop, checked on the resolved address, which is also the one connected to)"
        ),
    )
    url_max_mb: float = knob(
        20.0, "FACEFLEET_URL_MAX_MB", parse=non_negative_float, doc="largest image fetched from a URL"
    )
    url_timeout_s: float = knob(
        10.0, "FACEFLEET_URL_TIMEOUT_S", parse=non_negative_float, doc="time limit of one URL fetch, redirects included"
    )
    images_root: str = knob(
        "",
        "FACEFLEET_IMAGES_ROOT",
        "ROOT_IMAGES_DIR",
        doc=("folder that relative paths in `images.urls` are read from; absolute paths and `..` are refused"),
        shown="empty (local paths refused)",
    )
    log_format: str = knob(
        "text", "FACEFLEET_LOG_FORMAT", parse=log_format, doc="`text`, or `json` (one object per line)"
    )
    log_level: str = knob(
        "INFO",
        "FACEFLEET_LOG_LEVEL",
        "LOG_LEVEL",
        parse=log_level,
        doc=(
            "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`; INFO logs one line per request with"
            " its request id (`X-Request-ID`, taken from the request or made)"
        ),
    )

    @property
    def engine_slots(self) -> int:
        """Requests inside the engine at once: enough to form batches, few enough that their
        buffers stay small (0 = one per core, at most 4; 2 on a 2-core machine measured
        214 MiB resident under 8 clients against 291 MiB with 4)."""
        return self.max_concurrent or min(4, os.cpu_count() or 1)

    @property
    def gunicorn_threads(self) -> int:
        """Enough threads that the bounded queue, not gunicorn's backlog, is where requests wait,
        plus a few so /livez, /health and /metrics answer while the engine is saturated."""
        return self.threads or self.engine_slots + self.queue_size + 4


@dataclass(frozen=True)
class AuthSettings(Section):
    """API keys of the HTTP service."""

    mode: str = knob(
        "on",
        "FACEFLEET_AUTH",
        parse=auth_mode,
        doc=(
            "`on`: every request but the open paths needs an API key, and the service refuses to "
            "start without one; `off`: no keys asked (a warning in the log and in `/info`'s "
            "`auth`), for a trusted network only"
        ),
    )
    api_keys: tuple[str, ...] = knob(
        (),
        "FACEFLEET_API_KEYS",
        parse=word_list,
        doc=(
            "API keys, comma-separated, added to the file's (prefer the file: environments show up "
            "in process listings of the same user)"
        ),
        secret=True,
    )
    api_keys_file: str = knob(
        "",
        "FACEFLEET_API_KEYS_FILE",
        doc=(
            "file of API keys, one per line, `#` comments; what the Ansible role writes from the "
            "vault variable `inference_service_api_keys` (or a key it generates). Keys have at "
            "least 16 characters"
        ),
    )
    open_paths: tuple[str, ...] = knob(
        ("/", "/livez", "/health", "/metrics", "/docs", "/openapi.json"),
        "FACEFLEET_AUTH_OPEN_PATHS",
        parse=path_list,
        doc=(
            "paths answered without a key (`/livez` always is; `/` only redirects to `/docs`): "
            "leave `/metrics` open for Prometheus on the monitoring network, or remove it and give "
            "Prometheus a bearer key"
        ),
    )

    trusted_networks: tuple[Network, ...] = knob(
        (),
        "FACEFLEET_TRUSTED_NETWORKS",
        parse=network_list,
        doc=(
            "networks served without a key, comma-separated CIDRs (IPv4 or IPv6; `0.0.0.0/0` and `::/0` are every "
            "address): for clients that cannot send a header. The client's address is the TCP peer's, or the "
            'front\'s `X-Forwarded-For` when the peer is loopback ("Clients that cannot send a key" below); '
            "logged as a warning at start-up and listed in `/info`'s `auth`"
        ),
    )

    def __hash__(self) -> int:
        return hash((self.mode, self.api_keys, self.api_keys_file, self.open_paths, self.trusted_networks))


@dataclass(frozen=True)
class GalleriesSettings(Section):
    """Where the galleries live (docs/galleries.md)."""

    gallery_db: str = knob(
        "",
        "FACEFLEET_GALLERY_DB",
        doc=(
            "SQLite file of the galleries (docs/galleries.md); on the persistent volume "
            "(`/var/lib/facefleet/galleries/` from the Ansible roles)"
        ),
        shown="`$FACEFLEET_CACHE_DIR/galleries.sqlite3`",
    )


@dataclass(frozen=True)
class MetricsSettings(Section):
    """The Prometheus side: the service's multiprocess folder and the exporter (`facefleet exporter`)."""

    metrics_dir: str = knob(
        "",
        "FACEFLEET_METRICS_DIR",
        doc=(
            "prometheus_client multiprocess folder, wiped at each start of the service; the exporter "
            "merges it (the container mounts it on the host)"
        ),
        shown="`$FACEFLEET_CACHE_DIR/metrics`",
    )
    exporter_host: str = knob(
        "127.0.0.1",
        "FACEFLEET_EXPORTER_HOST",
        doc="listen address (`0.0.0.0` where Prometheus scrapes from another host)",
    )
    exporter_port: int = knob(18090, "FACEFLEET_EXPORTER_PORT", parse=positive_int, doc="listen port; `/metrics`")
    service_url: str = knob(
        "",
        "FACEFLEET_SERVICE_URL",
        doc="the service it probes (/health, /info) every 5 s on its own thread",
        shown="`http://127.0.0.1:$FACEFLEET_PORT`",
    )
    ca_file: str = knob(
        "",
        "FACEFLEET_CA_FILE",
        doc=(
            "CA certificate (PEM) the probe and `facefleet bench load` verify an `https://` service with (the "
            "roles point it at the fleet CA, `/etc/facefleet/tls/ca.crt`; the exporter reads it again when it "
            "changes); empty: the system's trust store"
        ),
    )


@dataclass(frozen=True)
class AnswerSettings(Section):
    """What /extract (and /draw_detections, gallery search) do for a request that does not say: InsightFace-REST's
    request defaults, under its own variable names too."""

    return_face_data: bool = knob(
        False,
        "FACEFLEET_RETURN_FACE_DATA",
        "DEF_RETURN_FACE_DATA",
        parse=parse_bool,
        doc="each face's aligned crop (base64 JPEG, `facedata`) unless a request says",
    )
    return_landmarks: bool = knob(
        False,
        "FACEFLEET_RETURN_LANDMARKS",
        "DEF_RETURN_LANDMARKS",
        parse=parse_bool,
        doc="each face's five landmarks unless a request says",
    )
    extract_embedding: bool = knob(
        True,
        "FACEFLEET_EXTRACT_EMBEDDING",
        "DEF_EXTRACT_EMBEDDING",
        parse=parse_bool,
        doc="each face's embedding (`vec`, `norm`) unless a request says",
    )
    extract_ga: bool = knob(
        False,
        "FACEFLEET_EXTRACT_GA",
        "DEF_EXTRACT_GA",
        parse=parse_bool,
        doc="gender and age unless a request says (null with `ga_error` without a gender/age model)",
    )
    detect_masks: bool = knob(
        False,
        "FACEFLEET_DETECT_MASKS",
        "DEF_DETECT_MASKS",
        parse=parse_bool,
        doc="mask and mask_probs unless a request says (null with `mask_error` without a mask model)",
    )
    img_req_headers: tuple[tuple[str, str], ...] = knob(  # pairs: a frozen section stays hashable
        (),
        "FACEFLEET_IMG_REQ_HEADERS",
        "DEF_IMG_REQ_HEADERS",
        parse=parse_headers,
        doc=(
            "headers of every image download (a JSON object, e.g. a User-Agent) unless a request sends its own "
            "`img_req_headers`, which replace them; Host, Content-Length and the connection's headers are refused"
        ),
        shown="`{}` (facefleet's User-Agent only)",
    )


@dataclass(frozen=True)
class JetsonSettings(Section):
    """Where the exporter reads a Jetson's hardware (the exporter's telemetry)."""

    sysfs_root: str = knob(
        "/",
        "FACEFLEET_SYSFS_ROOT",
        doc=(
            "root that `sys/`, `etc/nv_tegra_release` and `proc/device-tree/model` are read under "
            "(tests point it at a fixture tree)"
        ),
    )
    nvpmodel: str = knob(
        "nvpmodel",
        "FACEFLEET_NVPMODEL",
        doc="the command queried with `-q` for the power mode (2 s timeout, cached 60 s)",
    )


@dataclass(frozen=True)
class StreamsSettings(Section):
    """Camera streams and their events (docs/streams.md): which cameras, how often a frame is looked at,
    where the events go and how long they are kept."""

    streams_file: str = knob(
        "",
        "FACEFLEET_STREAMS_FILE",
        doc=(
            "YAML list of the cameras this appliance watches (`name`, `url`, optional `fps`, `gallery`), "
            "written by the roles from the inventory; cameras added through `/streams` are kept in the "
            "streams folder and survive restarts"
        ),
    )
    streams_dir: str = knob(
        "",
        "FACEFLEET_STREAMS_DIR",
        doc=(
            "folder of the cameras added through `/streams`, their state, the events outbox and its crops "
            "(SQLite), and the lock that makes one worker the streams' runner "
            "(`/var/lib/facefleet/streams/` from the Ansible roles)"
        ),
        shown="`$FACEFLEET_CACHE_DIR/streams`",
    )
    stream_fps: float = knob(
        5.0, "FACEFLEET_STREAM_FPS", parse=above_zero_float, doc="frames per second looked at per camera (sampled)"
    )
    stream_buffer: int = knob(
        2,
        "FACEFLEET_STREAM_BUFFER",
        parse=positive_int,
        doc="sampled frames a camera may hold waiting for the engine; past it the oldest is dropped and counted",
    )
    stream_share: str = knob(
        "idle",
        "FACEFLEET_STREAM_SHARE",
        parse=exactly_one_of(*STREAM_SHARES),
        doc=(
            "when a camera's frame may use the engine (HTTP always comes first, and the last free engine slot is "
            "left to it): `idle`, only while no HTTP request is in the engine (the HTTP latency least touched); "
            "`free-slot`, beside requests whenever a slot is free and none waits (more cameras keep up on many "
            "cores, requests share the cores with them). A frame that waits a frame interval is shed"
        ),
    )
    stream_decoder: str = knob(
        "auto",
        "FACEFLEET_STREAM_DECODER",
        parse=exactly_one_of(*STREAM_DECODERS),
        doc=(
            "which decoder reads RTSP and file cameras: `auto`, a Jetson's hardware decoder (GStreamer's "
            "`nvv4l2decoder`) when it is probed present, FFmpeg (software, PyAV) otherwise and for MJPEG and V4L2; "
            "`ffmpeg`, never the hardware. When the hardware pipeline gives a connection no frame, that connection "
            "is decoded by FFmpeg and the camera's status says why (docs/streams.md)"
        ),
    )
    stream_gallery: str = knob(
        "",
        "FACEFLEET_STREAM_GALLERY",
        doc="the gallery a camera's faces are searched in unless the camera names its own; empty: none (`unknown`)",
    )
    appliance_name: str = knob(
        "",
        "FACEFLEET_APPLIANCE_NAME",
        doc="this appliance's name in events and MQTT topics",
        shown="the host name",
        factory=lambda: socket.gethostname().split(".")[0] or "facefleet",
    )
    mqtt_url: str = knob(
        "",
        "FACEFLEET_MQTT_URL",
        doc="the MQTT broker events go to, `mqtt://host:1883` or `mqtts://host:8883` (TLS); empty: no MQTT",
    )
    mqtt_username: str = knob("", "FACEFLEET_MQTT_USERNAME", doc="MQTT user name; empty: anonymous")
    mqtt_password_file: str = knob(
        "", "FACEFLEET_MQTT_PASSWORD_FILE", doc="file holding the MQTT password (root only); never logged"
    )
    mqtt_ca_file: str = knob(
        "",
        "FACEFLEET_MQTT_CA_FILE",
        doc="CA certificate (PEM) an `mqtts://` broker is verified with; empty: the system's",
    )
    mqtt_topic_prefix: str = knob(
        "facefleet", "FACEFLEET_MQTT_TOPIC_PREFIX", doc="topics are `<prefix>/<appliance>/<camera>/<kind>`"
    )
    webhook_url: str = knob("", "FACEFLEET_WEBHOOK_URL", doc="URL every event is POSTed to as JSON; empty: none")
    webhook_secret_file: str = knob(
        "",
        "FACEFLEET_WEBHOOK_SECRET_FILE",
        doc="file holding the secret of the events' HMAC-SHA256 signature header (docs/streams.md); never logged",
    )
    events_include_crops: bool = knob(
        False,
        "FACEFLEET_EVENTS_INCLUDE_CROPS",
        parse=parse_bool,
        doc="publish each event's face crop (JPEG, base64) with it; off: crops stay on the appliance",
    )
    events_max: int = knob(
        10000,
        "FACEFLEET_EVENTS_MAX",
        parse=positive_int,
        doc="events kept (delivered or waiting); past it the oldest go, undelivered ones counted as dropped",
    )
    events_retention_h: float = knob(
        24.0, "FACEFLEET_EVENTS_RETENTION_H", parse=above_zero_float, doc="hours an event is kept, delivered or not"
    )
    crops_retention_h: float = knob(
        1.0, "FACEFLEET_CROPS_RETENTION_H", parse=above_zero_float, doc="hours a face crop is kept (privacy)"
    )


def _dashboard_cache_file() -> str:
    return str(Path(default_cache_dir()) / "dashboard.sqlite3")


def _dash(name: str) -> str:
    return f"FACEFLEET_DASHBOARD_{name.upper()}"


@dataclass(frozen=True)
class DashboardSettings(Section):
    """The fleet dashboard (`facefleet dashboard`, docs/dashboard.md); read from the environment
    only (FACEFLEET_CONFIG is the appliance's file, not the dashboard's)."""

    targets_file: str = knob("", _dash("targets_file"), doc="file_sd JSON of the appliances")
    targets: tuple[str, ...] = knob((), _dash("targets"), parse=word_list, doc="or `host:port,host:port`")
    exporter_port: int = knob(
        18090,
        _dash("exporter_port"),
        parse=above_zero_int,
        doc="an appliance's exporter port unless its `exporter` label says otherwise",
    )
    poll_interval_s: float = knob(10.0, _dash("poll_interval_s"), parse=above_zero_float, doc="seconds between polls")
    timeout_s: float = knob(3.0, _dash("timeout_s"), parse=above_zero_float, doc="per-request timeout of a poll")
    pool: int = knob(16, _dash("pool"), parse=above_zero_int, doc="requests in flight at once")
    database: str = knob(
        None,
        _dash("database"),
        doc="the history",
        shown="`~/.cache/facefleet/dashboard.sqlite3`",
        factory=_dashboard_cache_file,
    )
    retention_h: float = knob(24.0, _dash("retention_h"), parse=above_zero_float, doc="hours of history kept")
    prometheus_url: str = knob("", _dash("prometheus_url"), doc="read the fleet from Prometheus instead of polling")
    password: str = knob(
        "",
        _dash("password"),
        doc="login password; empty: no login, which only a loopback address (or `ALLOW_OPEN`) accepts",
        secret=True,
    )
    password_file: str = knob(
        "",
        _dash("password_file"),
        doc=(
            "a file whose first line (not blank, not `#`) is the password, when none is set above; the role "
            "points it at `/etc/facefleet/dashboard-password`"
        ),
    )
    allow_open: bool = knob(
        False,
        _dash("allow_open"),
        parse=parse_bool,
        doc="`true`: serve a non-loopback address without a login (only behind a proxy that authenticates)",
    )
    secret_key: str = knob(
        "",
        _dash("secret_key"),
        doc="signs the session cookie (set it so logins survive restarts)",
        shown="random per start",
        secret=True,
    )
    appliance_api_key: str = knob(
        "", _dash("appliance_api_key"), doc="sent to appliances as `X-API-Key`, never to browsers", secret=True
    )
    ca_file: str = knob(
        "",
        _dash("ca_file"),
        doc=(
            "CA certificate (PEM) the poller verifies `https://` appliances with (targets labelled "
            "`__scheme__: https`; read again when it changes); empty: the system's trust store"
        ),
    )
    appliance_api_key_file: str = knob(
        "",
        _dash("appliance_api_key_file"),
        doc=(
            "a facefleet API key file (one key per line); its first key is sent when no key is set above. The "
            "dashboard role points it at `/etc/facefleet/api-keys` on a host that is also an appliance"
        ),
    )
    secure_cookie: bool = knob(
        False,
        _dash("secure_cookie"),
        parse=parse_bool,
        doc="`true`: the login's session cookie is sent over HTTPS only (the role sets it behind its TLS front)",
    )
    host: str = knob(
        "127.0.0.1", _dash("host"), doc="listen address; any other than loopback needs the login (see Access)"
    )
    port: int = knob(18100, _dash("port"), parse=above_zero_int, doc="listen port")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> DashboardSettings:
        """Defaults < environment < flags, then the secrets' files read (a key or password given
        directly wins over its file)."""
        return super().from_env(environ, **overrides).with_secrets()

    def with_secrets(self) -> DashboardSettings:
        """The password and the appliance key filled in from their files where only a file is named."""
        changes: dict[str, Any] = {}
        if self.appliance_api_key_file and not self.appliance_api_key:
            changes["appliance_api_key"] = _first_key(self.appliance_api_key_file)
        if self.password_file and not self.password:
            changes["password"] = _first_line(self.password_file, _dash("password_file"), "password")
        return replace(self, **changes) if changes else self

    def require_login_off_loopback(self) -> None:
        """The dashboard shows the whole fleet: reachable from the network, it needs a login."""
        if self.password or self.allow_open or _loopback(self.host):
            return
        raise ConfigError(
            f"the dashboard would listen on {self.host} without a login: set FACEFLEET_DASHBOARD_PASSWORD_FILE "
            "(or FACEFLEET_DASHBOARD_PASSWORD), listen on 127.0.0.1, or set FACEFLEET_DASHBOARD_ALLOW_OPEN=true "
            "behind a proxy that authenticates"
        )


def _loopback(host: str) -> bool:
    """Every address `host` resolves to is loopback (0.0.0.0 and :: are every interface)."""
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(found) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in found)


def _first_key(path: str) -> str:
    """The key the dashboard presents: the first of the file the appliance role writes, so a
    dashboard on an appliance (the default inventory) needs no key of its own."""
    return _first_line(path, _dash("appliance_api_key_file"), "key")


def _first_line(path: str, variable: str, what: str) -> str:
    """The first line of a secret's file that is not blank or a `#` comment."""
    try:
        lines = key_lines(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {variable}={path}: {exc.strerror}") from None
    if not lines:
        raise ConfigError(f"{variable}={path} holds no {what}")
    return lines[0]


SECTIONS: dict[str, type[Section]] = {
    "engine": EngineSettings,
    "answers": AnswerSettings,
    "server": ServerSettings,
    "auth": AuthSettings,
    "models": ModelsSettings,
    "galleries": GalleriesSettings,
    "metrics": MetricsSettings,
    "jetson": JetsonSettings,
    "streams": StreamsSettings,
    "dashboard": DashboardSettings,
}
