"""The HTTP API's requests and answers, as typed models: the handlers validate requests with them
and build their answers through them, and the OpenAPI document (contract/openapi.py) is their
JSON schema, so the three cannot disagree.

Field names, defaults and the order of the fields are InsightFace-REST's (v0.9) where it has them.
An optional answer field is left out, not sent as null, unless it is set: answers are dumped with
`exclude_unset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from facefleet.contract.fields import (
    DownloadHeaders,
    EnrolVectors,
    FaceIndices,
    Flag,
    FormFlag,
    FormScore,
    FormWhole,
    GalleryName,
    GalleryRef,
    ImageData,
    ImagesCheck,
    Metadata,
    Name,
    Pixels,
    Score,
    Similarity,
    Subject,
    TopK,
    VerifyVectors,
    Whole,
    bad,
    schema_only,
)
from facefleet.engine.decode import ACCEPTED_NAMES
from facefleet.streams.events import NAME_PATTERN, check_name
from facefleet.streams.history import HISTORY_MAX, NEWEST
from facefleet.streams.registry import URL_PATTERN, check_url

R = TypeVar("R", bound="Request")
IMAGE_FORMATS = f"{ACCEPTED_NAMES}; a GIF is its first frame, a TIFF its first page"


@dataclass(frozen=True)
class ImageRef:
    """One image of a request: inline data (base64 text or raw msgpack bytes) or a URL/path."""

    kind: str  # "data" | "url"
    value: str | bytes


def parse(model: type[R], body: dict[str, Any]) -> R:
    """The request as `model`, or a 400 naming the field. The fields' own checks answer first, with
    their sentences (fields.py); pydantic's message is the fallback for anything they let through."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise bad(f"{where}: {first['msg']}") from None


# ----------------------------------------------------------------------------------- requests


class Request(BaseModel):
    """A request body. Every optional field may be null, meaning its default (as InsightFace-REST's
    Optional fields); a required one that is missing or null gets its field's own sentence.
    Unknown fields are ignored, as they always were."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        required = [name for name, field in cls.model_fields.items() if field.is_required()]
        out = {key: value for key, value in data.items() if value is not None or key in required}
        for name in required:
            out.setdefault(name, None)  # its check answers "missing field ..."
        return out


def _needs_images(*branches: tuple[int, int | None, int, int | None]) -> Any:
    """`json_schema_extra` of an images object: how many data and urls it may hold together, as
    anyOf branches built from the generated array schemas (the counts are checked by the handlers)."""

    def extra(schema: dict[str, Any], cls: type) -> None:
        properties: Any = schema["properties"]
        arrays = {kind: properties[kind]["anyOf"][0] for kind in ("data", "urls")}
        options: list[Any] = []
        for data_min, data_max, urls_min, urls_max in branches:
            counts = {"data": (data_min, data_max), "urls": (urls_min, urls_max)}
            props: dict[str, Any] = {}
            for kind, (low, high) in counts.items():
                bounds = {"minItems": low} if low else {}
                if high is not None:
                    bounds["maxItems"] = high
                props[kind] = {**arrays[kind], **bounds} if low else bounds
            required = [kind for kind, (low, _) in counts.items() if low]
            options.append({"required": required, "properties": {k: v for k, v in props.items() if v}})
        schema["anyOf"] = options

    return extra


def _needs_one_of(*names: str) -> Any:
    """`json_schema_extra` of a request that needs one of these nullable fields, not null: anyOf
    branches made of each field's generated schema without its null."""

    def extra(schema: dict[str, Any], cls: type) -> None:
        properties: Any = schema["properties"]
        schema["anyOf"] = [{"required": [name], "properties": {name: properties[name]["anyOf"][0]}} for name in names]

    return extra


class Images(BaseModel):
    """at least one image; at most FACEFLEET_MAX_IMAGES (64) in all, more is a 413"""

    model_config = ConfigDict(json_schema_extra=_needs_images((1, None, 0, None), (0, None, 1, None)))

    data: list[ImageData] | None = Field(
        default=None,
        description=f"base64 images ({IMAGE_FORMATS}), padded, in the standard or the URL-safe alphabet; "
        "whitespace and line breaks are ignored and a data:...;base64, prefix is dropped; any other character "
        "fails that image (bad_image). Raw bytes in msgpack",
    )
    urls: list[str] | None = Field(
        default=None, description="http(s) URLs (when enabled) or paths relative to the images root"
    )


def image_refs(images: Images | None) -> list[ImageRef]:
    """Each image of a request in order: data first, then urls."""
    if images is None:
        return []
    return [ImageRef("data", v) for v in images.data or []] + [ImageRef("url", v) for v in images.urls or []]


class VerifyImages(Images):
    """exactly two images in all: two data, two urls, or one of each"""

    model_config = ConfigDict(json_schema_extra=_needs_images((2, 2, 0, 0), (0, 0, 2, 2), (1, 1, 1, 1)))


class ImageRequest(Request):
    """The image fields and flags every image endpoint takes, in the order they are checked."""

    embed_only: Flag = Field(default=False, description="each image is an aligned 112x112 face crop: embed it")
    return_face_data: Flag = Field(default=False, description="add the aligned crop as base64 JPEG (facedata)")
    return_landmarks: Flag = False
    extract_embedding: Flag = True
    extract_ga: Flag = Field(
        default=False, description="gender/age: null with ga_error unless a gender/age model is configured"
    )
    detect_masks: Flag = Field(
        default=False, description="mask and mask_probs: null with mask_error unless a mask model is configured"
    )
    float_coords: Flag = Field(
        default=False,
        description="facefleet's addition: bbox and landmarks as floats (2 decimals) and size to 1 decimal, "
        "instead of InsightFace-REST's truncated integers",
    )
    img_req_headers: DownloadHeaders = Field(
        default=None,
        description="headers of this request's image downloads (urls), replacing the appliance's "
        "(FACEFLEET_IMG_REQ_HEADERS); at most 32 and 8 KB; Host, Content-Length and the connection's "
        "headers are refused",
    )
    verbose_timings: Flag = False
    msgpack: Flag = Field(default=False, description="answer in msgpack")
    images: Annotated[Images, ImagesCheck]
    threshold: Score = Field(default=None, description="face score threshold (default: the detector's, /info)")
    limit_faces: Whole = Field(
        default=0, description="with more faces than N, keep the N largest by box area, largest first (0: all)"
    )
    min_face_size: Pixels = Field(
        default=0.0, description="then drop faces narrower than this many pixels (size: the box width)"
    )

    def image_refs(self) -> list[ImageRef]:
        return image_refs(self.images)


class ExtractRequest(ImageRequest):
    gallery: GalleryRef = Field(
        default=None,
        description="facefleet's addition: each face gets `match`, its best subject in this gallery "
        "(/galleries) at or above gallery_threshold, or null. The match needs each face's embedding, so "
        "faces are embedded even with extract_embedding false; vec and norm are then left out of the "
        "answer, the matches are not. An unknown gallery is 404, another recognizer's 409.",
    )
    gallery_threshold: Similarity = Field(
        default=None, description="with gallery: the lowest similarity that is a match (default: the recognizer's)"
    )


class DrawRequest(ImageRequest):
    """only the first image is drawn; extract_embedding, embed_only and msgpack do not apply"""

    draw_scores: Flag = True
    draw_landmarks: Flag = True
    draw_sizes: Flag = True


class DrawForm(Request):
    """The multipart form of /multipart/draw_detections (flags spelled as forms do, any letter case)."""

    file: bytes = Field(description=f"the image ({IMAGE_FORMATS})")
    threshold: FormScore = None
    limit_faces: FormWhole = None
    draw_scores: FormFlag = Field(default="true", validate_default=True)
    draw_landmarks: FormFlag = Field(default="true", validate_default=True)
    draw_sizes: FormFlag = Field(default="true", validate_default=True)


class VerifyRequest(Request):
    """two images or two embeddings; embeddings win when both are sent. Of an image with several faces, the
    largest is compared unless face_indices names one, or all_pairs asks for every pair; the answer says which
    face of each image was compared (faces) and warns when the largest was taken from several."""

    model_config = ConfigDict(json_schema_extra=_needs_one_of("images", "embeddings"))

    threshold: Similarity = None
    msgpack: Flag = False
    embeddings: VerifyVectors = Field(
        default=None,
        description="two vectors of as many numbers as the recognizer's embedding (/info); finite, not all zero",
    )
    images: Annotated[VerifyImages | None, ImagesCheck] = None
    face_indices: FaceIndices = Field(
        default=None,
        description="the face of each image to compare: its num_det as /extract numbers it (from 0, detection "
        "order), or null for the largest; a number past the image's faces is 422 no_such_face. Ignored with "
        "embeddings.",
    )
    all_pairs: Flag = Field(
        default=False,
        description="compare every face of the first image with every face of the second (an image named in "
        "face_indices keeps its one face): `pairs` has each, and similarity and same_person are the most similar "
        "pair's. Ignored with embeddings.",
    )


class GalleryCreate(Request):
    name: Name
    metadata: Metadata = None


class EnrolRequest(Request):
    """images (the largest face of each) or embeddings of the appliance's recognizer"""

    model_config = ConfigDict(json_schema_extra=_needs_one_of("images", "embeddings"))

    embeddings: EnrolVectors = None
    images: Annotated[Images | None, ImagesCheck] = None
    subject: Subject
    metadata: Metadata = None


class SearchRequest(ImageRequest):
    top_k: TopK = 1
    gallery_threshold: Similarity = Field(default=None, description="default: the recognizer's verify_threshold")


# ----------------------------------------------------------------------------------- answers


def absent(description: str | None = None) -> Any:
    """An answer field that is left out unless set (never sent as null)."""
    return Field(default=None, description=description)


class Answer(BaseModel):
    """An answer body; `dump()` is what goes on the wire (JSON or msgpack)."""

    def dump(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


Bbox = Annotated[list[float], Field(min_length=4, max_length=4)]
Point = Annotated[list[float], Field(min_length=2, max_length=2)]
# A face's coordinates: InsightFace-REST's truncated integers, or floats with the request's float_coords
FaceBox = Annotated[list[int], Field(min_length=4, max_length=4)] | Bbox
FacePoints = Annotated[list[Annotated[list[int], Field(min_length=2, max_length=2)]], Field(min_length=5, max_length=5)]
Landmarks = FacePoints | Annotated[list[Point], Field(min_length=5, max_length=5)]


class ErrorDetail(Answer):
    code: str
    message: str


class Error(Answer):
    error: ErrorDetail


class Match(Answer):
    subject: str
    score: float


class MaskProbs(Answer):
    mask: float
    no_mask: float


class FaceBase(Answer):
    """A face as InsightFace-REST answers it: each of its keys present, null when the request did not ask."""

    bbox: FaceBox = Field(description="x1, y1, x2, y2 in the image's pixels, truncated to integers")
    landmarks: Landmarks | None = Field(description="with return_landmarks: eyes, nose, mouth corners")
    prob: float
    num_det: int = Field(description="its number in its image: after limit_faces, before min_face_size")
    scale: float = Field(description="its image's resize factor into the detector's input")
    facedata: str | None = Field(description="with return_face_data: the aligned 112x112 crop, base64 JPEG")
    gender: int | None = Field(description="with extract_ga and a gender/age model: 1 male, 0 female")
    age: int | None
    mask: bool | None = Field(description="with detect_masks and a mask model")
    mask_probs: MaskProbs | None
    size: int | float = Field(description="the box width, truncated (InsightFace-REST's size)")
    ga_error: str = absent("with extract_ga and no gender/age model: why gender and age are null")
    mask_error: str = absent("with detect_masks and no mask model: why mask and mask_probs are null")


class Face(FaceBase):
    norm: float | None = Field(description="the raw embedding's norm; null without extract_embedding")
    vec: list[float] | None = Field(description="the unit-length embedding; null without extract_embedding")
    match: Match | None = absent(
        "only with the request's gallery: the best subject, or null when none reaches the threshold",
    )


class ImageResult(Answer):
    status: Literal["ok", "failed"]
    took_ms: float
    faces: list[Face]
    error: ErrorDetail = absent()


class Took(Answer):
    total_ms: float
    read_imgs_ms: float
    embed_all_ms: float
    queue_ms: float = absent()
    stages_ms: dict[str, float] = absent()


class GallerySearched(Answer):
    """only with the request's gallery: the gallery searched, its version and threshold"""

    name: str
    version: int
    threshold: float


class ExtractResponse(Answer):
    took: Took
    data: list[ImageResult]
    gallery: GallerySearched = absent()
    took_ms: float = absent("with embed_only: took.total_ms again, where InsightFace-REST puts it then")
    status: Literal["ok"] = absent("with embed_only, as InsightFace-REST answers it then")


class Compared(Answer):
    num_det: int
    bbox: Bbox


class VerifySide(Answer):
    faces_found: int
    chosen: Literal["largest", "requested", "all"]
    compared: list[Compared]


class Pair(Answer):
    a: int
    b: int
    similarity: float
    same_person: bool


class VerifyResponse(Answer):
    similarity: float
    threshold: float
    same_person: bool
    recognizer: str
    took_ms: float
    faces: Annotated[list[VerifySide], Field(min_length=2, max_length=2)] = absent(
        "with images: for each image, how many faces were found, how the compared one(s) were "
        "chosen, and their num_det and bbox",
    )
    pairs: list[Pair] = absent("with all_pairs: every pair compared (num_det of each image's face)")
    warnings: list[str] = absent("one per image whose largest face was compared by default while it had several")


class Attempt(Answer):
    provider: str
    ok: bool
    reason: str
    seconds: float


class Placement(Answer):
    nodes: dict[str, int]
    cpu_nodes: int
    cpu_ops: list[str]


class Candidate(Answer):
    provider: str
    median_ms: float
    min_ms: float
    resident_mib: float = Field(
        0.0, description="what opening and warming up its session added to the worker's resident memory, MiB"
    )


class ProviderChoice(Answer):
    mode: Literal["first", "fastest"] = Field(description="FACEFLEET_PROVIDER_CHOICE")
    chosen: str
    why: str
    runs: int = Field(description="timed runs per candidate (0 under `first`)")
    candidates: list[Candidate] = Field(
        description="every provider that took the model, timed on the same input (empty under `first`)"
    )
    dropped: dict[str, str] = Field(description="providers that warmed up but failed while timed, and why")


class Batch(Answer):
    cross_request: bool
    max: int


class ModelInfo(Answer):
    name: str
    task: Literal["detection", "recognition", "genderage", "mask"]
    family: str
    file: str
    licence: str
    batch: Batch
    sha256: str
    active_provider: Literal["tensorrt", "cuda", "openvino", "cpu"]
    attempts: list[Attempt]
    warmup_ms: float
    model_path: str
    trt_engine_cache: dict[str, Any] | None
    partial_fallback: bool | None = Field(
        description="true when the model runs on TensorRT, CUDA or OpenVINO but some of its nodes ran on the CPU"
    )
    node_placement: Placement | None = Field(
        description="nodes of the profiled warm-up run per provider, and the CPU's operator types"
    )
    degraded_at_run_time: bool
    runtime_failures: list[dict[str, Any]]
    choice: ProviderChoice | None = Field(
        None, description="how the serving provider was chosen among those that work, with their timings"
    )


class Runtime(Answer):
    version: str
    device: str
    available_providers: list[str]


class AuthInfo(Answer):
    enabled: bool
    warning: str = absent()
    open_paths: list[str] = absent()
    trusted_networks: list[str] = absent(
        "networks whose requests are served without a key (FACEFLEET_TRUSTED_NETWORKS); empty: none"
    )


class GallerySummary(Answer):
    name: str
    version: int
    checksum: str
    subjects: int
    faces: int
    recognizer: str


class Models(Answer):
    """InsightFace-REST's `models` block (its client reads these keys), and facefleet's report of each model by
    task (`detection`, `recognition`)."""

    inference_backend: Literal["onnx", "trt"] = Field(
        description="trt when the detector runs on TensorRT (onnxruntime's provider), else onnx"
    )
    det_name: str
    rec_name: str | None
    max_size: list[int] = Field(description="the detector's input, width and height")
    ga_name: str | None
    mask_detector: str | None
    rec_batch_size: int
    det_batch_size: int
    force_fp16: bool
    triton_uri: str | None
    detection: ModelInfo
    recognition: ModelInfo = absent()
    genderage: ModelInfo = absent("with GA_NAME: the gender/age model")
    mask: ModelInfo = absent("with MASK_DETECTOR: the mask classifier")


class Memory(Answer):
    """The answering worker's resident memory against the project's budget: 1.5 x its model files + 250 MiB."""

    worker_pid: int
    resident_bytes: int = Field(description="this worker's resident set size now (/proc/self/statm)")
    model_files_bytes: int = Field(description="the sizes of the model files this worker runs (prepared copies)")
    budget_bytes: int = Field(description="1.5 x model_files_bytes + 250 MiB")
    within_budget: bool


class Info(Answer):
    version: str
    tensorrt_version: str | None = Field(
        description="TRT_VERSION or TENSORRT_VERSION of the image, as InsightFace-REST"
    )
    log_level: str
    python: str
    onnxruntime: Runtime
    models: Models
    defaults: dict[str, Any]
    auth: AuthInfo
    galleries: list[GallerySummary]
    memory: Memory = absent("the answering worker's resident memory and its budget (an older appliance has none)")


class Health(Answer):
    status: Literal["ok", "failing", "unready"] = Field(
        description="unready: the models could not be made ready at start-up (reason says why; restart after the fix)"
    )
    reason: str = absent()
    checks: dict[str, dict[str, Any]]


class Live(Answer):
    status: Literal["alive"]


class Gallery(Answer):
    name: GalleryName
    version: int = Field(description="bumped by every write; a bundle's own version after an import")
    recognizer: str
    recognizer_sha256: str
    dim: int
    metadata: dict[str, Any]
    checksum: str = Field(description="the imported bundle's checksum; empty after a local write")
    updated: float
    subjects: int
    faces: int


class GalleryList(Answer):
    galleries: list[Gallery]


class Deleted(Answer):
    deleted: str


class SubjectInfo(Answer):
    subject: str
    metadata: dict[str, Any]
    faces: int


class Subjects(Answer):
    gallery: str
    subjects: list[SubjectInfo]


class Removed(Answer):
    gallery: str
    removed: str


class EnrolImage(Answer):
    status: Literal["ok", "failed"]
    error: ErrorDetail = absent()


class EnrolResponse(Answer):
    subject: str
    added: int
    faces: int
    gallery: str
    images: list[EnrolImage]


class SearchFace(FaceBase):
    """A face of /extract without its vector (and norm), with its matches, best first."""

    matches: list[Match]


class SearchImage(Answer):
    status: Literal["ok", "failed"]
    faces: list[SearchFace]
    error: ErrorDetail = absent()


class SearchResponse(Answer):
    gallery: str
    version: int
    threshold: float
    took: Took
    data: list[SearchImage]


class BundleImport(Answer):
    installed: bool
    gallery: Gallery


# ------------------------------------------------------------------------------------------ /streams
def _camera_name(value: Any) -> str:
    if not isinstance(value, str):
        raise bad('missing field "name": the camera\'s name')
    try:
        return check_name("camera", value)
    except ValueError as exc:
        raise bad(str(exc)) from None


def _camera_url(value: Any) -> str:
    if not isinstance(value, str):
        raise bad('missing field "url": the camera\'s address')
    try:
        return check_url(value)
    except ValueError as exc:
        raise bad(str(exc)) from None


def _camera_fps(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60):
        raise bad("fps must be a number above 0 and at most 60 (frames looked at per second)")
    return value


CameraName = Annotated[str, schema_only(pattern=f"^{NAME_PATTERN}$"), BeforeValidator(_camera_name)]


class StreamCreate(Request):
    """A camera to watch: its name (in events and MQTT topics), its address, and optionally its rate and gallery."""

    name: CameraName
    url: Annotated[str, schema_only(pattern=URL_PATTERN), BeforeValidator(_camera_url)] = Field(
        description="rtsp://, rtsps://, http(s):// (MJPEG), file://, an absolute path to a video file or /dev/videoN"
    )
    fps: Annotated[float | None, Field(gt=0, le=60), BeforeValidator(_camera_fps)] = Field(
        None, description="frames looked at per second; null: FACEFLEET_STREAM_FPS"
    )
    gallery: GalleryRef = Field(
        None, description="the gallery its faces are searched in; null: FACEFLEET_STREAM_GALLERY"
    )


class StreamSource(Answer):
    """The camera's reader (streams/source.py's SourceStatus): decoding, sampling, losses."""

    url: str
    kind: str
    state: Literal["connecting", "running", "backoff", "ended", "stopped", "failed"]
    frames_in: int = Field(description="frames decoded")
    frames_sampled: int = Field(description="frames kept at the camera's rate")
    frames_dropped: int = Field(description="sampled frames dropped: the engine was slower than the camera")
    decode_errors: int
    reconnects: int
    gap_seconds_total: float = Field(description="seconds without frames after losses")
    fps_in: float
    fps_sampled: float
    last_error: str | None
    decoder: str | None
    width: int | None
    height: int | None
    buffered: int


class StreamPipeline(Answer):
    """What the engine and the tracker did with the camera's frames."""

    frames: int = Field(description="frames looked at by the engine")
    shed: int = Field(description="frames skipped: they waited a frame interval for the engine, HTTP had it")
    recognitions_shed: int = Field(
        0, description="track recognitions that waited 2 s for the engine in vain (asked again with a later crop)"
    )
    faces: int
    tracks: int = Field(description="tracks started")
    identified: int
    events: int
    errors: int
    last_error: str | None
    last_latency_s: float | None = Field(description="from a frame's decoding to its event, seconds")
    open_tracks: int


class StreamStatus(Answer):
    source: StreamSource
    pipeline: StreamPipeline


class Stream(Answer):
    name: str
    url: str = Field(description="the address, credentials masked")
    fps: float | None
    gallery: str | None
    origin: Literal["inventory", "api"] = Field(description="inventory: FACEFLEET_STREAMS_FILE; api: POST /streams")
    running: bool = Field(description="a worker runs it now (its status is fresh)")
    status: StreamStatus | None = Field(description="the runner's last snapshot; null before its first")
    status_age_s: float | None


class StreamList(Answer):
    streams: list[Stream]


# ------------------------------------------------------------------------------------------ /events
EVENTS_MAX = HISTORY_MAX  # the most events one page holds
SEQ_MAX = NEWEST  # SQLite's largest integer: a larger `before` is refused, not an overflow


def _query_whole(name: str, low: int, high: int, meaning: str) -> Any:
    """A whole number from a query string (text) or a JSON body, in [low, high], with one sentence naming it."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        text = value if isinstance(value, str) else None
        whole = int(text) if text is not None and text.strip().isdecimal() and len(text) <= 20 else value
        if isinstance(whole, bool) or not isinstance(whole, int) or not low <= whole <= high:
            raise bad(f"{name} must be a whole number from {low} to {high} ({meaning}), not {value!r}")
        return whole

    return check


def _optional_camera(value: Any) -> Any:
    return None if value is None else _camera_name(value)


class EventQuery(Request):
    """The query string of GET /events: which camera, how many, and where a page starts."""

    camera: Annotated[str | None, schema_only(pattern=f"^{NAME_PATTERN}$"), BeforeValidator(_optional_camera)] = Field(
        None, description="only this camera's events; absent: every camera's"
    )
    limit: Annotated[
        int,
        Field(ge=1, le=EVENTS_MAX),
        BeforeValidator(_query_whole("limit", 1, EVENTS_MAX, "events per page")),
    ] = Field(50, description=f"events on this page, at most {EVENTS_MAX}")
    before: Annotated[
        int | None,
        Field(ge=1, le=SEQ_MAX),
        BeforeValidator(_query_whole("before", 1, SEQ_MAX, "an event's seq: the page holds older events")),
    ] = Field(None, description="a seq: only events older than it (the previous page's next_before)")


class StreamEventAnswer(Answer):
    """One event of the history: the payload of docs/streams.md without its crop, with its place in the order
    and whether its crop is still kept (GET /events/{event_id}/crop)."""

    seq: int = Field(description="the event's place in the appliance's order; pass it as before to page back")
    event_id: str
    kind: Literal["track_started", "identified", "track_ended"]
    appliance: str
    camera: str
    track_id: int
    time: str = Field(description="UTC, ISO 8601 with milliseconds and Z")
    subject: str = Field(description="the gallery subject, or unknown")
    score: float | None
    gallery: str | None
    bbox: Annotated[list[int], Field(min_length=4, max_length=4)] | None
    has_crop: bool = Field(description="its crop is kept: false once the crop retention passed, or never stored")


class EventList(Answer):
    events: list[StreamEventAnswer] = Field(description="newest first")
    next_before: int | None = Field(description="before for the next (older) page; null: this page is the last")
