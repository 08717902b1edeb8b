"""The dashboard's typed snapshot, built from recorded answers (no server, no browser): both backends'
observations become the same `ApplianceView`, and /info is read with the service's contract types."""

from __future__ import annotations

import copy
from dataclasses import replace

from facefleet.contract.models import Info
from facefleet.dashboard.answers import read_info
from facefleet.dashboard.poller import _galleries
from facefleet.dashboard.snapshot import (
    FIGURES,
    ApplianceView,
    Numbers,
    Observation,
    appliance_view,
    flag_lagging,
    fleet_view,
    gallery_views,
)


def model(name: str, family: str, task: str, attempts: list[tuple[str, bool]]) -> dict:
    """One model of a recorded /info (a CUDA host's, trimmed of nothing the contract requires)."""
    return {
        "name": name,
        "task": task,
        "family": family,
        "file": f"{name}.onnx",
        "licence": "MIT",
        "batch": {"cross_request": True, "max": 4},
        "sha256": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        "active_provider": next(p for p, ok in attempts if ok),
        "attempts": [
            {"provider": p, "ok": ok, "reason": "" if ok else "CUDA failure 100", "seconds": 0.1} for p, ok in attempts
        ],
        "warmup_ms": 75.1,
        "model_path": f"/var/lib/facefleet/prepared/{name}.onnx",
        "trt_engine_cache": None,
        "partial_fallback": False,
        "node_placement": None,
        "degraded_at_run_time": False,
        "runtime_failures": [],
    }


RECORDED_INFO = {
    "version": "0.1.0",
    "tensorrt_version": None,
    "log_level": "INFO",
    "python": "3.10.12",
    "onnxruntime": {"version": "1.20.1", "device": "GPU", "available_providers": ["CUDAExecutionProvider"]},
    "models": {
        "inference_backend": "onnx",  # InsightFace-REST's keys of the block, beside the reports
        "det_name": "yunet_2023mar_int8bq",
        "rec_name": "sface_2021dec_int8bq",
        "max_size": [640, 640],
        "ga_name": None,
        "mask_detector": None,
        "rec_batch_size": 16,
        "det_batch_size": 4,
        "force_fp16": True,
        "triton_uri": None,
        "detection": model("yunet_2023mar_int8bq", "yunet", "detection", [("cuda", False), ("cpu", True)]),
        "recognition": model("sface_2021dec_int8bq", "sface", "recognition", [("cuda", False), ("cpu", True)]),
    },
    "defaults": {"det_threshold": 0.71, "providers": ["cuda", "cpu"]},
    "auth": {"enabled": True},
    "galleries": [
        {"name": "staff", "version": 3, "checksum": "ab12", "subjects": 3, "faces": 5, "recognizer": "sface"}
    ],
}


def test_the_recorded_info_is_the_contract_s():
    Info.model_validate(RECORDED_INFO)  # the recording is faithful to what the service sends


def test_a_cuda_host_on_its_cpu_is_degraded_from_its_info():
    seen = Observation(
        name="cuda-01", group="lab", answered_at=100.0, health={"status": "ok"}, info=read_info(RECORDED_INFO)
    )
    view = appliance_view(seen)
    assert view.status == "degraded"
    assert view.reason == (
        "GPU host running sface_2021dec_int8bq, yunet_2023mar_int8bq on CPU"
        " (its provider chain starts with cuda; TensorRT/CUDA fell back)"
    )
    assert view.providers == {"yunet_2023mar_int8bq": "cpu", "sface_2021dec_int8bq": "cpu"}
    assert view.chains == {"yunet_2023mar_int8bq": ["cuda", "cpu"], "sface_2021dec_int8bq": ["cuda", "cpu"]}
    assert set(view.provider_states.values()) == {"fallback"} and view.last_seen == 100.0
    assert view.versions == {"facefleet": "0.1.0", "onnxruntime": "1.20.1"}
    assert view.info == read_info(RECORDED_INFO).shown


def test_info_fields_of_the_wrong_contract_type_are_left_out():
    """Wrong types where the dashboard computes are left out (the page still shows the answer, escaped)."""
    broken = copy.deepcopy(RECORDED_INFO)
    broken["version"] = ["0.1"]
    broken["models"]["detection"]["name"] = 3
    broken["models"]["recognition"]["attempts"] = [{"provider": 7}, "cpu", {"provider": "cpu"}]
    broken["galleries"] = [{"name": "<script>", "version": "x"}, 7, None]
    seen = read_info(broken)
    assert seen.version is None and seen.galleries == {}
    assert [(m.name, m.chain) for m in seen.models] == [("sface_2021dec_int8bq", ("cpu",))]
    assert seen.shown["version"] == ["0.1"]  # shown as the appliance sent it
    assert read_info({}).shown == {} and read_info({"models": "x"}).models == ()


def test_both_backends_views_have_the_json_keys_they_always_had():
    common = {
        "name", "group", "status", "reason", "last_seen", "providers", "chains", "gpu_expected",
        "provider_states", "versions", "info", "power_mode", "failures", *FIGURES,
    }  # fmt: skip
    # through Prometheus: no /info, the providers from metrics, a Jetson's labels
    seen = Observation(
        name="orin-01",
        group="lab",
        answered_at=None,
        unreachable="Prometheus cannot scrape the service",
        health={"status": "ok"},
        providers={"yunet": "cpu"},
        jetson={"l4t": "36.4.3", "jetpack": "6.2"},
        numbers=Numbers(gpu_load=0.3),
    )
    view = appliance_view(seen)
    assert (view.status, view.reason, view.last_seen) == ("down", "Prometheus cannot scrape the service", None)
    assert view.versions == {"L4T": "36.4.3", "JetPack": "6.2"} and view.gpu_load == 0.3
    assert set(view.as_json()) == common
    # the poller's, with its galleries, and an appliance's detail
    polled = appliance_view(Observation(name="a", group="", answered_at=1.0, health={"status": "ok"}))
    detail = replace(
        polled, service="http://a", exporter="http://a:9", polled=1.0, galleries={}, history=(), provider_changes=()
    )
    assert set(detail.as_json()) == common | {
        "service",
        "exporter",
        "polled",
        "galleries",
        "history",
        "provider_changes",
    }
    assert detail.as_json()["last_seen"] == 1.0 and detail.as_json()["status"] == "ok"


def test_an_appliance_not_answering_keeps_its_last_info_and_sighting():
    before = appliance_view(
        Observation(name="a", group="", answered_at=5.0, health={"status": "ok"}, info=read_info(RECORDED_INFO))
    )
    after = appliance_view(Observation(name="a", group="", answered_at=9.0, timed_out="service slow: x"), before)
    assert (after.status, after.reason) == ("stale", "service slow: x")
    assert after.last_seen == 5.0 and after.info == before.info


def test_the_fleet_is_worst_first_and_lagging_galleries_are_flagged():
    def one(name: str, version: int, unreachable: str) -> ApplianceView:
        info = copy.deepcopy(RECORDED_INFO)
        info["galleries"][0]["version"] = version
        found = read_info(info)
        view = appliance_view(Observation(name=name, group="", answered_at=1.0, unreachable=unreachable, info=found))
        return replace(view, galleries=gallery_views(found.galleries))

    views = flag_lagging([one("a", 3, ""), one("b", 2, "service unreachable: refused")])
    fleet = fleet_view(views, 0.5, "", "poller")
    assert [v.name for v in fleet.appliances] == ["b", "a"]
    assert fleet.counts == {"down": 1, "unauthorized": 0, "degraded": 1, "stale": 0, "ok": 0}
    galleries = {v.name: v.as_json()["galleries"]["staff"] for v in fleet.appliances}
    assert galleries["a"]["lagging_behind"] is None and galleries["b"]["lagging_behind"] == 3
    assert _galleries(RECORDED_INFO) == {
        "staff": {"version": 3, "checksum": "ab12", "lagging_behind": None, "subjects": 3}
    }
    assert fleet.as_json()["backend"] == "poller" and len(fleet.as_json()["appliances"]) == 2
