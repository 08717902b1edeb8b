"""/info, /health, /livez and /metrics: what the appliance runs, and whether it works."""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from facefleet import __version__
from facefleet.contract import models as m
from facefleet.engine.ort import ort_module
from facefleet.engine.pipeline import FaceEngine
from facefleet.ops import malloc, metrics
from facefleet.settings import Settings, value_of

bp = Blueprint("status", __name__)

SHOWN_DEFAULTS = (
    "det_threshold",
    "nms_iou",
    "det_size",
    "shape_policy",
    "det_batch_size",
    "rec_batch_size",
    "max_pixels",
    "max_request_pixels",
    "max_faces",
    "max_images",
    "max_body_mb",
    "max_concurrent",
    "queue_size",
    "batching",
    "batch_wait_ms",
    "allow_urls",
    "providers",
    "provider_choice",
    "openvino_device",
    "trt_workspace_mb",
    "cudnn_conv_algo_search",
    "gpu_mem_limit_mb",
    "gpu_arena_extend_strategy",
    "workers",
)


def _engine() -> FaceEngine:
    return current_app.extensions["facefleet.engine"]


def model_info(model: Any, batching: bool) -> dict[str, Any]:
    spec, opened = model.spec, model.opened
    return {
        "name": spec.name,
        "task": spec.task,
        "family": spec.family,
        "file": spec.file,
        "licence": spec.licence,
        "batch": {"cross_request": batching and model.batchable and model.max_batch > 1, "max": model.max_batch},
        **opened.report(),
    }


@bp.get("/info")
def info() -> Response:
    engine = _engine()
    settings = engine.settings
    ort = ort_module()
    defaults = {name: value_of(settings, name) for name in SHOWN_DEFAULTS}
    detector = engine.detector
    defaults["effective_shape_policy"] = detector.policy
    defaults["provider_choice"] = settings.engine.choice  # its default depends on the chain
    # What a request without its own threshold gets (setting > model's manifest value > default).
    defaults["det_threshold"] = detector.threshold
    if engine.recognizer is not None:
        defaults["verify_threshold"] = engine.recognizer.threshold
    defaults["engine_slots"] = settings.server.engine_slots
    defaults.update(_ifr_defaults(settings, detector.threshold))
    info = m.Info.model_validate(
        {
            "version": __version__,
            "tensorrt_version": os.environ.get("TRT_VERSION") or os.environ.get("TENSORRT_VERSION"),
            "log_level": settings.server.log_level,
            "python": platform.python_version(),
            "onnxruntime": {
                "version": ort.__version__,
                "device": ort.get_device(),
                "available_providers": ort.get_available_providers(),
            },
            "models": _models(engine),
            "defaults": defaults,
            "auth": _auth_info(settings),
            "galleries": _galleries(),
            "memory": _memory(engine),
        }
    )
    return jsonify(info.dump())


def _memory(engine: FaceEngine) -> dict[str, Any]:
    """This worker's resident size against its budget, from the files its models were opened from."""
    files = sum(os.path.getsize(m.opened.model_path) for m in engine.models() if os.path.isfile(m.opened.model_path))
    resident = int(malloc.rss_mib() * 2**20)
    budget = malloc.memory_budget(files)
    return {
        "worker_pid": os.getpid(),
        "resident_bytes": resident,
        "model_files_bytes": files,
        "budget_bytes": budget,
        "within_budget": resident <= budget,
    }


def _models(engine: FaceEngine) -> dict[str, Any]:
    """InsightFace-REST's keys (its client's server_info() reads them), then each model's report by task."""
    settings, detector = engine.settings, engine.detector
    return {
        "inference_backend": "trt" if detector.opened.provider == "tensorrt" else "onnx",
        "det_name": detector.spec.name,
        "rec_name": engine.recognizer.spec.name if engine.recognizer is not None else None,
        "max_size": list(detector.det_size),
        "ga_name": engine.attributes["genderage"].spec.name if "genderage" in engine.attributes else None,
        "mask_detector": engine.attributes["mask"].spec.name if "mask" in engine.attributes else None,
        "rec_batch_size": settings.engine.rec_batch_size,
        "det_batch_size": settings.engine.det_batch_size,
        "force_fp16": settings.engine.trt_fp16,
        "triton_uri": None,
        **{model.spec.task: model_info(model, settings.engine.batching) for model in engine.models()},
    }


def _ifr_defaults(settings: Settings, det_thresh: float) -> dict[str, Any]:
    """InsightFace-REST's `defaults` block: what a request that does not say gets (the `answers` section)."""
    answers = dataclasses.asdict(settings.answers)
    answers["img_req_headers"] = dict(settings.answers.img_req_headers)
    return {**answers, "det_thresh": det_thresh, "sslv3_hack": False}


def _auth_info(settings: Any) -> dict[str, Any]:
    """Whether keys are required, and a warning an operator cannot miss when they are not."""
    if settings.auth.mode == "off":
        return {"enabled": False, "warning": "authentication is off (FACEFLEET_AUTH=off): anyone may use this service"}
    return {
        "enabled": True,
        "open_paths": ["/livez", *settings.auth.open_paths],
        "trusted_networks": [str(net) for net in settings.auth.trusted_networks],
    }


def _galleries() -> list[dict[str, Any]]:
    """Name, version and checksum of each gallery: what the dashboard compares across the fleet."""
    keep = ("name", "version", "checksum", "subjects", "faces", "recognizer")
    return [{k: g[k] for k in keep} for g in current_app.extensions["facefleet.galleries"].list()]


@bp.get("/health")
def health() -> Response:
    checks = _engine().health()
    failing = {name: c["reason"] for name, c in checks.items() if not c["ok"]}
    if failing:
        reason = "; ".join(f"{name}: {why}" for name, why in failing.items())
        response = jsonify(m.Health(status="failing", reason=reason, checks=checks).dump())
        response.status_code = 503
        return response
    return jsonify(m.Health(status="ok", checks=checks).dump())


@bp.get("/livez")
def livez() -> Response:
    return jsonify(m.Live(status="alive").dump())


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4; charset=utf-8")
