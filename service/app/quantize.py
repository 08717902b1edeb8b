"""INT8 copies of FP32 models with onnxruntime's own quantization tools.

Static quantization needs activation ranges, so it calibrates on the inputs the service itself
would build from real photos (letterboxed detector blobs, aligned 112 x 112 crops), captured
by running the FP32 models on them. The copy is written beside the original as `<stem>.int8.onnx`
and addressed as `<name>@int8` everywhere a model name goes (see `manifest.derived_int8`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

from facefleet.app.int8gate import Photo, find_photos, gate
from facefleet.engine.align import align_all
from facefleet.engine.decode import decode_image
from facefleet.engine.detector import Detector
from facefleet.engine.loader import load_model
from facefleet.engine.ort import ort_module
from facefleet.engine.ortlog import onnxruntime_output_to_log
from facefleet.engine.recognizer import Recognizer
from facefleet.engine.runner import Chain, RecordingRunner, build_runner
from facefleet.engine.runtime import SessionSlot
from facefleet.errors import FacefleetError
from facefleet.models.gatefile import GateReport, gate_path
from facefleet.models.manifest import ModelSpec, load_manifest
from facefleet.models.modelfiles import atomic_target, model_path, require_model_file
from facefleet.models.prepare import prepare_model
from facefleet.settings import Settings

log = logging.getLogger(__name__)

MODES = ("static", "dynamic")
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}


class QuantizeError(FacefleetError):
    """The model cannot be quantized as asked; the message says what to change."""


class BlobReader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
    """Feeds captured input blobs to the calibrator one sample at a time."""

    def __init__(self, input_name: str, blobs: list[np.ndarray]) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter({input_name: b[None]} for b in blobs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


class GateFailedError(QuantizeError):
    """The INT8 copy did not keep its FP32 original's answers: it was not installed."""

    def __init__(self, message: str, report: GateReport) -> None:
        super().__init__(message)
        self.report = report


def calibration_images(folder: Path, limit: int) -> list[Photo]:
    """The photos of `folder` and its subfolders (DIR/<subject>/<photo> labels a person for the gate)."""
    photos = find_photos(folder)
    if not photos:
        raise QuantizeError(f"no calibration photos (.jpg, .png, ...) in {folder}; give --images DIR")
    return photos[:limit]


def _opened(spec: ModelSpec, settings: Settings, sink: list[np.ndarray] | None) -> tuple[SessionSlot, Chain]:
    """The model's session and its chain, with a recorder link when `sink` is given
    (service/engine/runner.py): the calibrator then sees exactly what the service feeds, preprocessing included."""
    slot = SessionSlot(load_model(spec, settings)[0])
    return slot, build_runner(spec, slot, extra=[RecordingRunner.into(sink)] if sink is not None else [])


def calibration_blobs(spec: ModelSpec, settings: Settings, photos: list[Photo]) -> list[np.ndarray]:
    """One input sample per detector run (per photo) or per face (recognizers)."""
    manifest = load_manifest()
    det_spec = (
        spec if spec.task == "detection" else manifest.get(settings.models.det_name or manifest.default_detection)
    )
    runs: list[np.ndarray] = []
    slot, chain = _opened(det_spec, settings, runs if spec.task == "detection" else None)
    detector = Detector(det_spec, slot, settings, chain)
    recognizer = None
    if spec.task != "detection":
        slot, chain = _opened(spec, settings, runs)
        recognizer = Recognizer(spec, slot, settings, chain)
    for photo in tqdm(photos, desc=f"calibrating {spec.name}", unit="photo", leave=False):
        image = decode_image(photo.path.read_bytes(), settings.engine.max_pixels)
        found = detector.detect([image])[0]
        if recognizer is not None and len(found):
            recognizer.embed(align_all(image, found.landmarks))
    blobs = [sample for run in runs for sample in run]
    if not blobs:
        raise QuantizeError(f"the calibration photos gave no input for {spec.name} (no faces found?)")
    return blobs


class _FromOnnxruntime(logging.Filter):
    """Moves the quantization tools' records (they log through the root logger) to our log at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "onnxruntime" in record.pathname and record.levelno < logging.ERROR:
            log.debug("onnxruntime: %s", record.getMessage())
            return False
        return True


@contextmanager
def quiet() -> Iterator[None]:
    """onnxruntime's quantization tools talk to the terminal: the preprocessing's shape inference and the
    calibrator's sessions print C++ warnings about graphs they handle fine, and the quantizer logs one
    "Axis 1 is out-of-range for weight ..." per bias through the root logger (hundreds for IResNet-100).
    Both go to our log at debug level (facefleet.engine.ortlog); errors still raise or show."""
    ort = ort_module()
    root, records = logging.getLogger(), _FromOnnxruntime()
    ort.set_default_logger_severity(3)
    root.addFilter(records)
    try:
        with onnxruntime_output_to_log():
            yield
    finally:
        ort.set_default_logger_severity(2)
        root.removeFilter(records)


def already_quantized(path: Path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return any(node.op_type in QUANTIZED_OPS for node in model.graph.node)


def ready_for_quantization(path: Path, opset: int = 13) -> None:
    """Per-channel scales need DequantizeLinear's `axis`, which arrived in opset 13 (InsightFace's
    files are opset 11); excluding nodes needs every node named (exporters may leave names empty)."""
    model = onnx.load(str(path))
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current < opset:
        model = version_converter.convert_version(model, opset)
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_ff{i}"
    onnx.save(model, str(path))


def output_heads(path: Path) -> list[str]:
    """Nodes from each graph output back to its last Conv, inclusive (the score, box and keypoint
    heads). Kept in FP32: calibrated only on large faces, a quantized score head clips the small
    faces of a crowd photo below the threshold (seen: 0 of 29 Solvay faces), and the heads are a
    small share of the run time."""
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    names: list[str] = []
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None:
            names.append(node.name)
            if node.op_type == "Conv":
                break
            node = producer.get(node.input[0])
    return names


def quantize(
    spec: ModelSpec, settings: Settings, mode: str, photos: list[Photo], gate_photos: list[Photo] | None = None
) -> tuple[Path, GateReport]:
    """Write `<stem>.int8.onnx` beside the model from its prepared FP32 copy, if it passes its accuracy
    gate on `gate_photos` (default: the calibration photos); its report is written beside it either way.
    Raises GateFailedError (nothing installed, an earlier copy removed) when it does not."""
    source = _fp32_source(spec, settings, mode)
    target = model_path(load_manifest().get(f"{spec.name}@int8"), settings.models.models_dir)
    with tempfile.TemporaryDirectory(prefix="facefleet-quantize-") as tmp, atomic_target(target) as out:
        _quantize_file(spec, settings, mode, photos, source, Path(tmp), out)
        report = gate(spec, out, settings, photos if gate_photos is None else gate_photos)
        gate_path(target).write_text(report.to_json())
        if not report.passed:
            target.unlink(missing_ok=True)
            raise GateFailedError(
                f"{spec.name}@int8 failed its accuracy gate ({report.reason}); it is not installed "
                f"(report: {gate_path(target)})",
                report,
            )
    return target, report


def _fp32_source(spec: ModelSpec, settings: Settings, mode: str) -> Path:
    """The runnable FP32 file to quantize: the prepared copy (a default-pack file whose weights were stored
    block-quantized is FP32 once prepared; one with quantized operators is refused)."""
    if mode not in MODES:
        raise QuantizeError(f"unknown quantization mode {mode!r}; known: {', '.join(MODES)}")
    if spec.task not in ("detection", "recognition"):
        raise QuantizeError(f"{spec.name} is a {spec.task} model; INT8 copies are made of detectors and recognizers")
    path, digest = require_model_file(spec, settings.models.models_dir, settings.models.verify_models)
    source = Path(prepare_model(spec, path, digest, settings.models.cache_dir, None))
    if already_quantized(source):
        raise QuantizeError(f"{spec.name} ({path.name}) is already quantized; quantize an FP32 model")
    return source


def _quantize_file(
    spec: ModelSpec, settings: Settings, mode: str, photos: list[Photo], source: Path, tmp: Path, out: Path
) -> None:
    # Shape inference and graph optimisation first: onnxruntime's documented preprocessing,
    # which folds BatchNorms so the calibrator sees the tensors that will really be quantized.
    pre = tmp / "pre.onnx"
    blobs = calibration_blobs(spec, settings, photos) if mode == "static" else []  # opens sessions: not in quiet()
    tqdm.write(f"{spec.name}: quantizing ({mode}, {len(blobs)} calibration samples; a minute for a large model)")
    with quiet():
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        ready_for_quantization(pre)
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=True)
            return
        reader = BlobReader(spec.input_name, blobs)
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=output_heads(pre) if spec.task == "detection" else [],
        )
