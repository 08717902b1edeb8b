"""bench/streams.py's pure parts, fast: a window's rates from two /streams snapshots, the sustain rule and the
count it gives, and its refusals in one line (no service, no camera is started)."""

from __future__ import annotations

import math

from bench import streams
from bench.inputs import one_line
from bench.streams import Snapshot, StreamRates, falling_behind, percentile, rates, sustained_count, sustains


def _stream(processed: float) -> StreamRates:
    return StreamRates("cam", 30.0, processed, 5.0, 0, 0, "running")


def _status(age: float, sampled: int, dropped: int, frames: int, shed: int) -> dict:
    source = {"frames_sampled": sampled, "frames_dropped": dropped, "state": "running"}
    return {"status": {"source": source, "pipeline": {"frames": frames, "shed": shed}}, "status_age_s": age}


def test_a_windows_rates_come_from_the_counters_and_the_times_the_runner_wrote_them():
    before = Snapshot.of(_status(0.5, 100, 1, 90, 9), now=1000.0)  # written at 999.5
    after = Snapshot.of(_status(0.5, 250, 3, 235, 14), now=1030.0)  # written at 1029.5: 30 s apart
    window = rates("door", before, after)
    assert window == StreamRates("door", 30.0, round(145 / 30, 2), 5.0, 5, 2, "running")
    restarted = rates("door", after, Snapshot(after.at + 10, 50, 0, 40, 0, "running"))  # counts from zero again
    assert (restarted.processed_fps, restarted.shed) == (4.0, 0)
    assert Snapshot.of({"status": None, "status_age_s": None}, now=5.0).state == "none"


def test_the_sustain_rule_needs_every_stream_at_90_percent_and_p95_within_ten_percent():
    keeping = [_stream(4.5), _stream(5.0)]
    assert sustains(keeping, 5.0, p95_ms=110.0, baseline_p95_ms=100.0)
    assert not sustains(keeping, 5.0, p95_ms=110.5, baseline_p95_ms=100.0)  # HTTP p95 up by more than 10 %
    assert not sustains([_stream(4.49), _stream(5.0)], 5.0, p95_ms=90.0, baseline_p95_ms=100.0)  # one stream lags
    assert not sustains(keeping, 5.0, p95_ms=math.nan, baseline_p95_ms=100.0)  # no request answered
    assert streams.RULE.startswith("sustained: every stream processes >= 90% of its fps AND HTTP /extract p95 <= 1.10")


def test_the_sweep_ends_when_the_streams_mean_falls_under_three_quarters_of_their_fps():
    assert not falling_behind([_stream(5.0), _stream(3.99)], 5.0)  # one stream shedding: not yet
    assert falling_behind([_stream(4.0), _stream(3.4)], 5.0)
    assert not falling_behind([], 5.0)


def test_the_count_is_the_largest_n_that_held_with_every_smaller_n():
    assert sustained_count([(1, True), (2, True), (3, False), (4, True)]) == 2
    assert sustained_count([(1, False), (2, True)]) == 0
    assert sustained_count([(3, True), (1, True), (2, True)]) == 3
    assert sustained_count([]) == 0


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 1.0)) == (50.0, 95.0, 100.0)
    assert percentile([7.0], 0.95) == 7.0 and math.isnan(percentile([], 0.5))


def test_missing_rtsp_or_photos_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(streams, "rtsp_available", lambda: "GStreamer's RTSP server is missing (packages)")
    assert one_line("streams", lambda: streams.main([])) == 2
    assert capsys.readouterr().err == "streams: GStreamer's RTSP server is missing (packages)\n"
    monkeypatch.setattr(streams, "rtsp_available", lambda: None)
    assert one_line("streams", lambda: streams.main(["--images", str(tmp_path / "nope")])) == 2
    assert capsys.readouterr().err == f"streams: --images {tmp_path / 'nope'}: no such folder\n"


def test_missing_ffmpeg_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(streams.shutil, "which", lambda name: None if name == "ffmpeg" else "/usr/bin/" + name)
    assert one_line("streams", lambda: streams.main([])) == 2
    err = capsys.readouterr().err
    assert err.startswith("streams: ffmpeg is not installed") and err.count("\n") == 1, err
