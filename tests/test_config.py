"""Settings: config file < environment < flags, InsightFace-REST aliases, one-line errors."""

from __future__ import annotations

import dataclasses

import pytest

from facefleet.errors import ConfigError
from facefleet.settings import Settings


def test_config_file_then_environment_then_flags(tmp_path):
    config = tmp_path / "facefleet.yml"
    config.write_text("det_name: scrfd_2.5g\nproviders: [cuda, cpu]\nMAX_SIZE: 640,384\nbatching: false\nport: 9000\n")
    env = {"FACEFLEET_CONFIG": str(config), "FACEFLEET_PORT": "9100"}
    settings = Settings.from_env(env, det_name="yunet_2026may")
    assert settings.engine.providers == ("cuda", "cpu") and settings.engine.det_size == (640, 384)
    assert (
        settings.engine.batching is False
        and settings.server.port == 9100
        and settings.models.det_name == "yunet_2026may"
    )


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
    assert (
        settings.models.rec_name == "glintr100"
        and settings.server.workers == 3
        and settings.server.log_level == "DEBUG"
    )
    assert settings.engine.det_threshold == 0.6 and settings.engine.trt_fp16 is False


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
    assert Settings.of(max_concurrent=4, queue_size=16).server.gunicorn_threads == 24
    assert 1 <= Settings().server.engine_slots <= 4
    assert Settings.of(threads=6).server.gunicorn_threads == 6


def test_gpu_memory_settings_take_onnxruntime_spellings_in_any_case():
    """TensorRT workspace and CUDA arena knobs (docs/configuration.md); defaults for an 8 GB Jetson."""
    defaults = Settings.from_env({})
    assert defaults.engine.trt_workspace_mb == 1024 and defaults.engine.gpu_mem_limit_mb == 0
    assert (
        defaults.engine.cudnn_conv_algo_search == "HEURISTIC"
        and defaults.engine.gpu_arena_extend_strategy == "kSameAsRequested"
    )
    env = {
        "FACEFLEET_TRT_WORKSPACE_MB": "512",
        "FACEFLEET_CUDNN_CONV_ALGO_SEARCH": "exhaustive",
        "FACEFLEET_GPU_MEM_LIMIT_MB": "2048",
        "FACEFLEET_GPU_ARENA_EXTEND_STRATEGY": "KNEXTPOWEROFTWO",
    }
    settings = Settings.from_env(env)
    assert settings.engine.trt_workspace_mb == 512 and settings.engine.gpu_mem_limit_mb == 2048
    assert (
        settings.engine.cudnn_conv_algo_search == "EXHAUSTIVE"
        and settings.engine.gpu_arena_extend_strategy == "kNextPowerOfTwo"
    )
    with pytest.raises(ConfigError, match=r"FACEFLEET_CUDNN_CONV_ALGO_SEARCH='fast': expected one of HEURISTIC"):
        Settings.from_env({"FACEFLEET_CUDNN_CONV_ALGO_SEARCH": "fast"})
    with pytest.raises(ConfigError, match=r"invalid FACEFLEET_GPU_MEM_LIMIT_MB='-1': expected a whole number >= 0"):
        Settings.from_env({"FACEFLEET_GPU_MEM_LIMIT_MB": "-1"})


def test_each_setting_lives_in_one_section_and_reads_its_variables():
    """Sections: every flat name (a FACEFLEET_CONFIG key, a CLI override) is one section's field."""
    from facefleet.settings import FLAT, SECTIONS, ServerSettings

    assert set(SECTIONS) == {
        "engine", "answers", "server", "auth", "models", "galleries", "metrics", "jetson", "streams", "dashboard"
    }  # fmt: skip
    assert len(FLAT) == len(set(FLAT.values())) == 84
    settings = Settings.from_env({"PORT": "9100", "FACEFLEET_AUTH": "off", "FACEFLEET_PROVIDERS": "cpu"})
    assert settings.server.port == 9100 and settings.auth.mode == "off" and settings.engine.providers == ("cpu",)
    assert ServerSettings.from_env({"NUM_WORKERS": "2"}, port=1).workers == 2
    assert Settings.of(port=5, auth_open_paths=("/livez",)).auth.open_paths == ("/livez",)


def test_settings_are_frozen_and_changed_by_copy():
    settings = Settings.of(providers=("cpu",), api_keys=("k" * 20,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.server.port = 1  # type: ignore[misc]
    changed = settings.replace(port=1234, providers=("cuda", "cpu"))
    assert (changed.server.port, changed.engine.providers) == (1234, ("cuda", "cpu"))
    assert settings.server.port == 18080 and changed.auth.api_keys == settings.auth.api_keys
    assert "k" * 20 not in repr(settings)  # keys stay out of logs and tracebacks
    with pytest.raises(TypeError, match="unexpected setting 'porta'"):
        Settings.of(porta=1)


def test_the_transitional_flat_names_read_the_sections():
    """Until every caller reads sections: `settings.port` is `settings.server.port`."""
    settings = Settings.of(port=1234, auth="off", queue_size=3, max_concurrent=1)
    assert settings.server.port == 1234 and settings.auth.mode == "off" and settings.server.gunicorn_threads == 8
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = settings.nonsense


def test_the_dashboard_section_reads_its_own_variables():
    settings = Settings.from_env({"FACEFLEET_DASHBOARD_PORT": "18200", "FACEFLEET_PORT": "18081"})
    assert settings.dashboard.port == 18200 and settings.server.port == 18081
    with pytest.raises(ConfigError, match=r"^invalid FACEFLEET_DASHBOARD_POOL='0': expected a number above 0$"):
        Settings.from_env({"FACEFLEET_DASHBOARD_POOL": "0"})
    # Its secrets' files are the dashboard's own business: another command does not read them.
    assert Settings.from_env({"FACEFLEET_DASHBOARD_PASSWORD_FILE": "/nonexistent"}).dashboard.password == ""


def test_gunicorn_takes_its_options_from_the_settings_object():
    """`facefleet serve` hands gunicorn the settings, not environment variables: real gunicorn validates them."""
    from facefleet.cli.gunicorn_conf import service_application
    from facefleet.dashboard.gunicorn_conf import dashboard_application
    from facefleet.settings import DashboardSettings

    settings = Settings.of(host="127.0.0.1", port=18181, workers=2, threads=6, log_level="WARNING")
    cfg = service_application(settings).cfg
    assert (cfg.bind, cfg.workers, cfg.threads, cfg.worker_class_str) == (["127.0.0.1:18181"], 2, 6, "gthread")
    assert (cfg.loglevel, cfg.timeout, cfg.proc_name) == ("warning", 900, "facefleet")
    assert callable(cfg.on_starting) and callable(cfg.child_exit) and callable(cfg.post_worker_init)
    dash = dashboard_application(DashboardSettings(host="127.0.0.1", port=18199)).cfg
    assert (dash.bind, dash.workers, dash.threads) == (["127.0.0.1:18199"], 1, 8)


def test_the_stream_decoder_is_auto_or_ffmpeg_and_a_wrong_one_is_one_line():
    assert Settings().streams.stream_decoder == "auto"
    assert Settings.from_env({"FACEFLEET_STREAM_DECODER": "ffmpeg"}).streams.stream_decoder == "ffmpeg"
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"FACEFLEET_STREAM_DECODER": "nvdec"})
    assert "FACEFLEET_STREAM_DECODER" in str(err.value) and "auto, ffmpeg" in str(err.value)
    assert "\n" not in str(err.value)
