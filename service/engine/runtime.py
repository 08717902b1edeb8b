"""Open a model on the first execution provider of the chain that really works.

onnxruntime itself falls back silently: ask for CUDA on a host whose cuDNN does not load and
you get a CPU session and a log line nobody reads. Here every provider of the chain is tried
with a real warm-up inference, the session's actual first provider is checked against the one
asked for, and every attempt is kept with its reason, so /info, the metrics and
`facefleet providers` can say exactly why a model runs where it runs.

With FACEFLEET_PROVIDER_CHOICE=fastest (the default of a chain naming OpenVINO, which beats the CPU
provider on some models and loses on others), every provider that works is opened and timed on the
same input, the fastest serves and the others' sessions are dropped; the figures stay in the report,
with what each candidate's session holds in memory (OpenVINO keeps its own compiled copy of the weights
beside onnxruntime's: about twice the CPU provider's, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import re
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from facefleet.engine import gpuprobe, resident
from facefleet.engine.ort import ort_module  # also imported from here by diagnose, coarse, bench and api/status
from facefleet.engine.ortlog import first_error, onnxruntime_output_to_log
from facefleet.engine.placement import Placement, Profiling
from facefleet.errors import ProviderError
from facefleet.settings import PROVIDER_NAMES, Settings

log = logging.getLogger(__name__)

ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}
MIB = 1024 * 1024


@dataclass(frozen=True)
class Attempt:
    """One provider of the chain: whether it took the model, and why not."""

    provider: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "ok": self.ok, "reason": self.reason, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Candidate:
    """A provider that took the model, timed on the same warm input as the others (FACEFLEET_PROVIDER_CHOICE)."""

    provider: str
    median_ms: float
    min_ms: float
    resident_mib: float = 0.0  # what opening and warming its session added to the process's resident size

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "median_ms": round(self.median_ms, 2),
            "min_ms": round(self.min_ms, 2),
            "resident_mib": round(self.resident_mib, 1),
        }


@dataclass(frozen=True)
class Choice:
    """How the serving provider was chosen among those that work: `first` or `fastest`, and why."""

    mode: str
    chosen: str
    why: str
    candidates: tuple[Candidate, ...] = ()
    runs: int = 0  # timed runs per candidate
    dropped: tuple[tuple[str, str], ...] = ()  # (provider, reason): worked at warm-up, failed while timed

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "chosen": self.chosen,
            "why": self.why,
            "runs": self.runs,
            "candidates": [c.as_dict() for c in self.candidates],
            "dropped": dict(self.dropped),
        }


@dataclass(frozen=True)
class RuntimeFailure:
    """A provider that warmed up fine and then failed mid-service (service/engine/failover.py): kept so
    /info and /health say when the model degraded, from where to where, and why."""

    provider: str
    now_on: str
    error: str
    at: float  # Unix time

    def as_dict(self) -> dict[str, Any]:
        when = datetime.fromtimestamp(self.at, timezone.utc).isoformat(timespec="seconds")
        return {"provider": self.provider, "now_on": self.now_on, "at": when, "error": self.error}


@dataclass
class OpenedSession:
    """A warmed-up session and the story of how it came to run where it runs."""

    session: Any
    provider: str
    attempts: list[Attempt]
    warmup_ms: float
    model_path: str
    input_name: str
    input_shape: tuple[int | None, ...]
    trt_cache_dir: str | None = None
    sha256: str = ""
    warmup_hw: tuple[int, int] = (0, 0)  # what a reopen warms up with (dynamic axes)
    batch: int = 1  # the largest batch it runs: TensorRT's optimisation profile ends there
    placement: Placement | None = None  # nodes per provider in the warm-up run
    runtime_failures: list[RuntimeFailure] = field(default_factory=list)
    resident_mib: float = 0.0  # measured while choosing (FACEFLEET_PROVIDER_CHOICE=fastest), else 0
    # What the warm-up run answered: facefleet.engine.roles checks it fits the model's role, without a run more.
    warmup_outputs: tuple[Any, ...] = ()
    choice: Choice | None = None  # None until open_session has chosen

    @property
    def fell_back(self) -> bool:
        return any(not a.ok for a in self.attempts)

    @property
    def partial_fallback(self) -> bool | None:
        """Some nodes ran on the CPU although another provider (a GPU's, OpenVINO) took the model (None: not known)."""
        return None if self.placement is None else self.placement.partial(PROVIDER_NAMES[self.provider])

    def report(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "active_provider": self.provider,
            "attempts": [a.as_dict() for a in self.attempts],
            "warmup_ms": round(self.warmup_ms, 1),
            "model_path": self.model_path,
            "trt_engine_cache": trt_cache_state(self.trt_cache_dir),
            "partial_fallback": self.partial_fallback,
            "node_placement": self.placement.as_dict() if self.placement else None,
            "degraded_at_run_time": bool(self.runtime_failures),
            "runtime_failures": [f.as_dict() for f in self.runtime_failures],
            "choice": self.choice.as_dict() if self.choice else None,
        }


class SessionSlot:
    """A model's current session. Every run reads it; only the model's failover replaces it
    (under this lock, and only if it still holds the session that failed), so the model object
    itself never changes after it is built."""

    def __init__(self, opened: OpenedSession) -> None:
        self._opened = opened
        self._lock = threading.Lock()

    @property
    def opened(self) -> OpenedSession:
        return self._opened

    def swap(self, failed: OpenedSession, fresh: OpenedSession) -> bool:
        """Put `fresh` in place of `failed`; False (and no change) when `failed` is already gone."""
        with self._lock:
            if self._opened is not failed:
                return False
            self._opened = fresh
            return True


def device_tag(device_id: int, dt_model: Path = Path("/proc/device-tree/model")) -> str:
    """A TensorRT engine is only valid on the GPU it was built for: key caches by board + device."""
    try:
        board = dt_model.read_bytes().rstrip(b"\x00\n").decode(errors="replace")
    except OSError:
        board = "gpu"
    return re.sub(r"[^A-Za-z0-9]+", "-", board).strip("-").lower() + f"-dev{device_id}"


def trt_cache_state(cache_dir: str | None) -> dict[str, Any] | None:
    if not cache_dir:
        return None
    path = Path(cache_dir)
    files = [p for p in path.glob("*") if p.is_file()] if path.is_dir() else []
    engines = [p for p in files if p.suffix == ".engine"]
    return {"path": cache_dir, "engines": len(engines), "bytes": sum(p.stat().st_size for p in files)}


@dataclass(frozen=True)
class ModelInput:
    """A graph input as the ONNX file declares it; None for a dynamic axis."""

    name: str
    shape: tuple[int | None, ...]


def model_inputs(path: str | Path) -> list[ModelInput]:
    """The inputs of an ONNX file, read with onnx before any session exists (TensorRT's profiles
    must be in the options the session is created with). Initializers that old exporters list
    as inputs too are not inputs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [
        ModelInput(i.name, tuple(d.dim_value if d.dim_value > 0 else None for d in i.type.tensor_type.shape.dim))
        for i in graph.input
        if i.name not in weights
    ]


def trt_profile_shapes(inputs: Sequence[ModelInput], batch: int, hw: tuple[int, int]) -> dict[str, str]:
    """trt_profile_{min,opt,max}_shapes for the dynamic inputs, in onnxruntime's format
    ("input.1:1x3x640x640", comma-separated): the batch axis spans 1 to `batch` (optimised for
    `batch`, what the batcher fills runs up to), any other dynamic axis is the warm-up size. With
    every dynamic input covered, TensorRT builds its engine when the session is created, never
    for a new batch size in the middle of a request; a file without dynamic axes needs none."""
    ends: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
    for model_input in inputs:
        if None not in model_input.shape:
            continue
        for end, rows in (("min", 1), ("opt", batch), ("max", batch)):
            dims = _fill_dynamic(model_input.shape, (rows, 3, hw[0], hw[1]))
            ends[end].append(f"{model_input.name}:{'x'.join(map(str, dims))}")
    return {f"trt_profile_{end}_shapes": ",".join(shapes) for end, shapes in ends.items() if shapes}


def _fill_dynamic(shape: tuple[int | None, ...], sizes: tuple[int, ...]) -> list[int]:
    """`shape` with each dynamic axis taken from `sizes` (N, C, H, W), 1 past the fourth."""
    return [dim if dim is not None else (sizes[i] if i < len(sizes) else 1) for i, dim in enumerate(shape)]


def cuda_options(settings: Settings) -> dict[str, Any]:
    """The CUDA provider's options; the same for the CUDA entry that follows TensorRT. HEURISTIC
    instead of EXHAUSTIVE: no minutes of benchmarking every convolution at start-up, nor its
    workspace peaks. kSameAsRequested: the arena grows by what is asked, not to the next power of
    two, which on a Jetson's shared 8 GB is memory the CPU loses too."""
    options: dict[str, Any] = {
        "device_id": settings.engine.device_id,
        "cudnn_conv_algo_search": settings.engine.cudnn_conv_algo_search,
        "arena_extend_strategy": settings.engine.gpu_arena_extend_strategy,
    }
    if settings.engine.gpu_mem_limit_mb:
        options["gpu_mem_limit"] = settings.engine.gpu_mem_limit_mb * MIB
    return options


def provider_entry(
    short: str, settings: Settings, model_sha256: str, trt_shapes: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any], str | None]:
    """(provider name, its options, TensorRT cache folder) for one link of the chain;
    `trt_shapes` are the TensorRT optimisation profiles (trt_profile_shapes); onnxruntime keeps
    them in a .profile file beside a cached engine and rebuilds the engine when they change."""
    name = PROVIDER_NAMES[short]
    if short == "tensorrt":
        cache = Path(settings.models.cache_dir) / "trt" / model_sha256[:16] / device_tag(settings.engine.device_id)
        options = {
            "device_id": settings.engine.device_id,
            "trt_fp16_enable": settings.engine.trt_fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            **(trt_shapes or {}),
        }
        if settings.engine.trt_workspace_mb:
            options["trt_max_workspace_size"] = settings.engine.trt_workspace_mb * MIB
        return name, options, str(cache)
    if short == "cuda":
        return name, cuda_options(settings), None
    if short == "openvino":
        return name, openvino_options(settings), None
    return name, {}, None


def openvino_options(settings: Settings) -> dict[str, Any]:
    """The OpenVINO provider's options: the device (FACEFLEET_OPENVINO_DEVICE), the model's own precision
    (`ACCURACY`: FP32 stays FP32 and an INT8 copy's quantised layers run OpenVINO's int8 kernels, where
    `FP16` on a GPU would round every answer), and the CPU threads the CPU provider is given too."""
    options: dict[str, Any] = {"device_type": settings.engine.openvino_device, "precision": "ACCURACY"}
    if settings.engine.cpu_threads:
        options["num_of_threads"] = settings.engine.cpu_threads
    return options


def session_options(settings: Settings) -> Any:
    ort = ort_module()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the fallback story is told by the attempts, not by ORT's log
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Detector and recognizer run one after the other: a pool that spins after its run steals
    # the cores the next model needs (seen: +30 % detector time on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if settings.engine.cpu_threads:
        options.intra_op_num_threads = settings.engine.cpu_threads
    # The arena keeps the peak of every batch's activations for the life of the process
    # (measured: 465 MiB against 286 MiB without it after 8 concurrent clients, for ~8 % less
    # throughput); on an 8 GB Jetson that memory is the GPU's too.
    options.enable_cpu_mem_arena = settings.engine.cpu_mem_arena
    return options


OPENVINO_NODE = re.compile(r"While validating ONNX node '<Node\((\w+)\): ([^>]+)>'")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "[OpenVINO-EP]" in text:
        return openvino_cause(text)[:400]
    return text.splitlines()[0][:400]


def openvino_cause(text: str) -> str:
    """OpenVINO's errors start with lines of C++ signatures and end with the cause: 'OpenVINO: <its last
    line> (node <name>, <op>)', e.g. the number of a DequantizeLinear's scales against its axis."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    node = next((m for m in map(OPENVINO_NODE.search, lines) if m), None)
    return f"OpenVINO: {lines[-1]}" + (f" (node {node.group(2)}, {node.group(1)})" if node else "")


def warmup_input(session: Any, fallback_hw: tuple[int, int], batch: int = 1) -> tuple[str, np.ndarray]:
    """Zeros of the model's real input shape; dynamic axes take the configured size."""
    meta = session.get_inputs()[0]
    dims = list(meta.shape)
    defaults = [batch, 3, fallback_hw[0], fallback_hw[1]]
    shape = [d if isinstance(d, int) and d > 0 else defaults[i] for i, d in enumerate(dims)]
    return meta.name, np.zeros(shape, dtype=ONNX_DTYPES.get(meta.type, np.float32))


@dataclass(frozen=True)
class ModelFile:
    """The model file to open: its path, its identity, its warm-up size and largest batch."""

    path: str
    sha256: str
    warmup_hw: tuple[int, int]
    batch: int


def _provider_list(short: str, model: ModelFile, settings: Settings, available: Sequence[str]) -> list[Any]:
    """The providers handed to onnxruntime for one attempt: TensorRT gets CUDA behind it (it hands
    the layers it cannot build to CUDA rather than to the CPU), each with its options."""
    trt_shapes = None
    if short == "tensorrt":
        try:
            inputs = model_inputs(model.path)
        except Exception:  # an unreadable file: onnxruntime's own error on it becomes the reason
            inputs = []
        trt_shapes = trt_profile_shapes(inputs, model.batch, model.warmup_hw)
    name, options, cache = provider_entry(short, settings, model.sha256, trt_shapes)
    providers: list[tuple[str, dict[str, Any]]] = [(name, options)]
    if short == "tensorrt" and PROVIDER_NAMES["cuda"] in available:
        providers.append(provider_entry("cuda", settings, model.sha256)[:2])
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
    return providers


def _create_and_warm(
    name: str, model: ModelFile, options: Any, providers: list[Any], factory: Callable[..., Any]
) -> tuple[Any, str, float, tuple[Any, ...]]:
    """(the session or None, why it cannot serve or "", warm-up ms, warm-up outputs): created,
    really on `name`, and one inference run."""
    try:
        session = factory(model.path, sess_options=options, providers=providers)
    except Exception as exc:
        return None, f"session creation failed: {first_line(exc)}", 0.0, ()
    actual = session.get_providers()[0]
    if actual != name:
        return session, f"onnxruntime fell back silently: asked for {name}, the session runs on {actual}", 0.0, ()
    start = time.perf_counter()
    try:
        input_name, zeros = warmup_input(session, model.warmup_hw)
        outputs = tuple(session.run(None, {input_name: zeros}))
    except Exception as exc:
        return session, f"warm-up failed: {first_line(exc)}", 0.0, ()
    return session, "", (time.perf_counter() - start) * 1000, outputs


def _try_provider(
    short: str,
    model: ModelFile,
    settings: Settings,
    available: Sequence[str],
    factory: Callable[..., Any],
    probe: bool,
) -> tuple[OpenedSession | None, Attempt]:
    """One link of the chain: the probe's verdict on a GPU provider first (onnxruntime is not even
    asked when its libraries, driver or device are missing), else a real session, checked and
    warmed up with its nodes counted, onnxruntime's own output routed to the log meanwhile."""
    start = time.perf_counter()
    engine = settings.engine
    problem = (
        gpuprobe.provider_problem(short, engine.device_id, engine.openvino_device) if probe and short != "cpu" else None
    )
    if problem:
        return None, Attempt(short, False, problem)
    name = PROVIDER_NAMES[short]
    providers = _provider_list(short, model, settings, available)
    options = session_options(settings)
    profiling = Profiling(options)
    with onnxruntime_output_to_log() as caught:
        session, reason, warmup_ms, outputs = _create_and_warm(name, model, options, providers, factory)
        placement = profiling.finish(session)
    if reason.startswith("onnxruntime fell back"):
        cause = first_error(caught)
        reason += f" (onnxruntime: {cause})" if cause else " (see `facefleet providers`)"
    attempt = Attempt(short, not reason, reason, time.perf_counter() - start)
    if reason:
        return None, attempt
    meta = session.get_inputs()[0]
    opened = OpenedSession(
        session,
        short,
        attempts=[],
        warmup_ms=warmup_ms,
        model_path=model.path,
        input_name=meta.name,
        input_shape=tuple(d if isinstance(d, int) and d > 0 else None for d in meta.shape),
        trt_cache_dir=providers[0][1].get("trt_engine_cache_path"),
        sha256=model.sha256,
        warmup_hw=model.warmup_hw,
        batch=model.batch,
        placement=placement,
        warmup_outputs=outputs,
    )
    return opened, attempt


def open_session(
    path: str | Path,
    model_sha256: str,
    settings: Settings,
    warmup_hw: tuple[int, int],
    *,
    batch: int = 1,
    available: Sequence[str] | None = None,
    session_factory: Callable[..., Any] | None = None,
) -> OpenedSession:
    """Walk the provider chain; the first provider that creates, stays and warms up wins, or, with
    FACEFLEET_PROVIDER_CHOICE=fastest, the fastest of all those that do (choose_fastest).

    `batch` is the largest batch the model will be run with (TensorRT's profiles end there).
    `available` and `session_factory` default to onnxruntime's own; tests pass others to
    reproduce GPU failures on a CPU-only machine. A factory stands for a whole onnxruntime (a
    FAKE GPU build): the probe of the real build's GPU libraries is then not asked, the fake's
    sessions tell the story."""
    ort = ort_module()
    available = list(ort.get_available_providers() if available is None else available)
    model = ModelFile(str(path), model_sha256, warmup_hw, batch)
    fastest = settings.engine.choice == "fastest"
    attempts: list[Attempt] = []
    passed_over: list[Attempt] = []
    working: list[OpenedSession] = []
    for short in settings.engine.providers:
        if PROVIDER_NAMES[short] not in available:
            reason = f"not offered by this onnxruntime {ort.__version__} build (it offers {', '.join(available)})"
            attempts.append(Attempt(short, False, reason))
            continue
        factory = session_factory or ort.InferenceSession
        before = resident.settled_mib() if fastest else 0.0
        opened, attempt = _try_provider(short, model, settings, available, factory, session_factory is None)
        attempts.append(attempt)
        if opened is None:
            passed_over.append(attempt)
            continue
        if fastest:  # the candidate's memory beside its speed: the other candidates' sessions are open too
            opened.resident_mib = max(0.0, resident.settled_mib() - before)
        working.append(opened)
        if not fastest:
            break
    if not working:
        tried = "; ".join(f"{a.provider}: {a.reason}" for a in attempts)
        raise ProviderError(f"no provider could run {Path(path).name}: {tried}")
    # The providers passed over, said once a later one serves; when none does, ProviderError says it all
    # (in one line: the service's start-up reason, facefleet.api.unready).
    for failed in passed_over:
        log.warning("%s: %s: %s", Path(path).name, failed.provider, failed.reason)
    opened = choose_fastest(working) if fastest else _first(working[0])
    opened.attempts = _with_choice(attempts, opened.choice)
    _warn_partial(opened)
    return opened


def _first(opened: OpenedSession) -> OpenedSession:
    opened.choice = Choice("first", opened.provider, "the first provider of the chain that works")
    return opened


CHOICE_RUNS = 5  # timed runs per candidate, alternating: a median that a neighbour's burst does not decide


def choose_fastest(working: Sequence[OpenedSession], runs: int = CHOICE_RUNS) -> OpenedSession:
    """The candidate with the smallest median run time on the same input (the model's warm-up shape,
    a fixed non-zero pattern), the candidates run in turn so a burst of load on the host hits them
    alike. A candidate whose run fails while timed is out (its reason kept, as a failover would). The
    losers' sessions are dropped here: a second copy of every model's weights is memory an appliance
    does not have."""
    if len(working) == 1:
        only = working[0]
        only.choice = Choice("fastest", only.provider, "the only provider of the chain that works")
        return only
    times, dropped = _time_in_turns(working, runs)
    alive = [o for o in working if o.provider not in dropped]
    if not alive:
        tried = "; ".join(f"{p}: {reason}" for p, reason in dropped.items())
        raise ProviderError(f"no provider could run {Path(working[0].model_path).name}: {tried}")
    candidates = tuple(
        Candidate(o.provider, statistics.median(times[o.provider]), min(times[o.provider]), o.resident_mib)
        for o in alive
    )
    best = min(range(len(alive)), key=lambda i: candidates[i].median_ms)
    winner, best_c = alive[best], candidates[best]
    others = [f"{c.provider} {c.median_ms:.1f} ms, {c.resident_mib:.0f} MiB" for c in candidates if c is not best_c]
    why = f"fastest median of {runs} runs: {best_c.median_ms:.1f} ms, {best_c.resident_mib:.0f} MiB resident" + (
        f" against {', '.join(others)}" if others else ", the only one that ran every timing run"
    )
    winner.choice = Choice("fastest", winner.provider, why, candidates, runs, tuple(dropped.items()))
    log.info("%s: %s", Path(winner.model_path).name, why)
    return winner


def _time_in_turns(working: Sequence[OpenedSession], runs: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """({provider: ms per run}, {provider: why it is out}): `runs` turns of one run each."""
    feeds = {o.provider: timing_feed(o) for o in working}
    times: dict[str, list[float]] = {o.provider: [] for o in working}
    dropped: dict[str, str] = {}
    for _ in range(runs):
        for opened in working:
            if opened.provider in dropped:
                continue
            start = time.perf_counter()
            try:
                opened.session.run(None, feeds[opened.provider])
            except Exception as exc:  # any failure of a provider's run: it cannot serve; the input is the warm-up's
                dropped[opened.provider] = f"failed while timed: {first_line(exc)}"
                continue
            times[opened.provider].append((time.perf_counter() - start) * 1000)
    return times, dropped


def timing_feed(opened: OpenedSession) -> dict[str, np.ndarray]:
    """The warm-up input filled with a ramp: zeros may take shortcuts (denormals, ReLU) real pixels do not."""
    name, blob = warmup_input(opened.session, opened.warmup_hw)
    low, high = (-1.0, 1.0) if blob.dtype.kind == "f" else (0.0, 255.0)
    blob[...] = np.linspace(low, high, blob.size, dtype=np.float32).reshape(blob.shape).astype(blob.dtype)
    return {name: blob}


def _with_choice(attempts: list[Attempt], choice: Choice | None) -> list[Attempt]:
    """The attempts, a provider that worked but lost the timing saying so (it does not count as a fallback)."""
    if choice is None or not (choice.candidates or choice.dropped):
        return attempts
    measured, dropped = {c.provider: c for c in choice.candidates}, dict(choice.dropped)
    return [_said(a, choice.chosen, measured, dropped) for a in attempts]


def _said(attempt: Attempt, chosen: str, measured: Mapping[str, Candidate], dropped: Mapping[str, str]) -> Attempt:
    """One attempt after the timing: failed while timed (not ok), or worked and lost (ok, with its figure)."""
    if attempt.ok and attempt.provider in dropped:
        return Attempt(attempt.provider, False, dropped[attempt.provider], attempt.seconds)
    if attempt.ok and attempt.provider != chosen and attempt.provider in measured:
        figure = f"works, not chosen: {measured[attempt.provider].median_ms:.1f} ms median"
        return Attempt(attempt.provider, True, figure, attempt.seconds)
    return attempt


def _warn_partial(opened: OpenedSession) -> None:
    """Say it once at start-up when a GPU provider left some of the model's nodes to the CPU."""
    if opened.partial_fallback and opened.placement is not None:
        placement = opened.placement
        log.warning(
            "%s: runs on %s, but %d of its %d nodes ran on the CPU (%s)",
            Path(opened.model_path).name,
            opened.provider,
            placement.cpu_nodes,
            sum(placement.nodes.values()),
            ", ".join(placement.cpu_ops),
        )
