"""Settings: config file < environment < flags, InsightFace-REST aliases, one-line errors."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.errors import ConfigError


def test_config_file_then_environment_then_flags(tmp_path):
    config = tmp_path / "facefleet.yml"
    config.write_text("det_name: scrfd_2.5g\nproviders: [cuda, cpu]\nMAX_SIZE: 640,384\nbatching: false\nport: 9000\n")
    env = {"FACEFLEET_CONFIG": str(config), "FACEFLEET_PORT": "9100"}
    settings = Settings.from_env(env, det_name="yunet_2026may")
    assert settings.providers == ("cuda", "cpu") and settings.det_size == (640, 384)
    assert settings.batching is False and settings.port == 9100 and settings.det_name == "yunet_2026may"


def test_insightface_rest_names_are_aliases_and_facefleet_names_win():
    env = {
        "REC_NAME": "glintr100",
        "NUM_WORKERS": "2",
        "LOG_LEVEL": "debug",
        "DEF_DET_THRESH": "0.6",
        "FACEFLEET_WORKERS": "3",
        "FORCE_FP16": "false",
    }
    settings = Settings.from_env(env)
    assert settings.rec_name == "glintr100" and settings.workers == 3 and settings.log_level == "DEBUG"
    assert settings.det_threshold == 0.6 and settings.trt_fp16 is False


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nonsense_key: 1\n", "unknown setting 'nonsense_key'"),
        ("queue_size: -1\n", "invalid queue_size=-1: expected a whole number >= 0"),
        ("- a\n- b\n", "must be a mapping"),
        ("det_size: [1, 2\n", "is not valid YAML"),
    ],
)
def test_bad_config_file_is_one_line(tmp_path, text, fragment):
    config = tmp_path / "facefleet.yml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"FACEFLEET_CONFIG": str(config)})
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_missing_config_file_is_named():
    with pytest.raises(ConfigError, match=r"cannot read FACEFLEET_CONFIG=/nonexistent\.yml"):
        Settings.from_env({"FACEFLEET_CONFIG": "/nonexistent.yml"})


def test_threads_are_derived_from_the_queue():
    assert Settings(max_concurrent=4, queue_size=16).gunicorn_threads == 24
    assert 1 <= Settings().engine_slots <= 4
    assert Settings(threads=6).gunicorn_threads == 6


def test_gpu_memory_settings_take_onnxruntime_spellings_in_any_case():
    """TensorRT workspace and CUDA arena knobs (docs/configuration.md); defaults for an 8 GB Jetson."""
    defaults = Settings.from_env({})
    assert defaults.trt_workspace_mb == 1024 and defaults.gpu_mem_limit_mb == 0
    assert defaults.cudnn_conv_algo_search == "HEURISTIC" and defaults.gpu_arena_extend_strategy == "kSameAsRequested"
    env = {
        "FACEFLEET_TRT_WORKSPACE_MB": "512",
        "FACEFLEET_CUDNN_CONV_ALGO_SEARCH": "exhaustive",
        "FACEFLEET_GPU_MEM_LIMIT_MB": "2048",
        "FACEFLEET_GPU_ARENA_EXTEND_STRATEGY": "KNEXTPOWEROFTWO",
    }
    settings = Settings.from_env(env)
    assert settings.trt_workspace_mb == 512 and settings.gpu_mem_limit_mb == 2048
    assert settings.cudnn_conv_algo_search == "EXHAUSTIVE" and settings.gpu_arena_extend_strategy == "kNextPowerOfTwo"
    with pytest.raises(ConfigError, match=r"FACEFLEET_CUDNN_CONV_ALGO_SEARCH='fast': expected one of HEURISTIC"):
        Settings.from_env({"FACEFLEET_CUDNN_CONV_ALGO_SEARCH": "fast"})
    with pytest.raises(ConfigError, match=r"invalid FACEFLEET_GPU_MEM_LIMIT_MB='-1': expected a whole number >= 0"):
        Settings.from_env({"FACEFLEET_GPU_MEM_LIMIT_MB": "-1"})
