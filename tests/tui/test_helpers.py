"""The Textual-free pieces behind the widgets: decimation, sparklines, series, following a log, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from nanogpt_tui.messages.dashboard import GpuStats
from engine.settings import Settings, load_settings, save_settings, settings_path
from nanogpt_tui import format as fmt
from nanogpt_tui import gpu
from nanogpt_tui.gpu import NO_GPU, NO_NVML, format_gpu_stats
from nanogpt_tui.widgets.log_tail import TextFollower
from nanogpt_tui.series import RunSeries, decimate, sparkline


def test_decimate_keeps_ends_and_bounds_count() -> None:
    assert decimate(5, 10) == [0, 1, 2, 3, 4]
    picked = decimate(10_000, 200)
    assert len(picked) == 200 and picked[0] == 0 and picked[-1] == 9999
    assert picked == sorted(set(picked)), "decimated indices must be increasing and distinct"


def test_sparkline() -> None:
    assert sparkline([], 10) == ""
    line = sparkline([3.0, 2.0, 1.0], 10)
    assert line == "█▅▁"
    assert len(sparkline(list(range(1000)), 12)) == 12


def test_series_snapshot() -> None:
    series = RunSeries()
    series.add([
        {"kind": "train", "step": 1, "loss": 5.0, "tokens": 10, "tokens_per_s": 100.0, "step_time_ms": 10.0, "lr": 1.0},
        {"kind": "train", "step": 2, "loss": 3.0, "tokens": 20, "tokens_per_s": 300.0, "step_time_ms": 30.0, "lr": 0.5},
        {"kind": "val", "step": 2, "val_loss": 3.5, "val_bpb": 1.2, "tokens": 20},
        {"kind": "sample", "step": 2, "text": "hello"},
        {"kind": "checkpoint", "step": 2, "path": "x"},
        {"kind": "train", "step": 3, "loss": "nan?"},
    ])
    snap = series.snapshot(max_points=100)
    assert snap.train.steps == (1, 2) and snap.train.values == (5.0, 3.0)
    assert snap.train.smoothed[0] == pytest.approx(5.0), "the debiased EMA starts at the first value"
    assert snap.val.tokens == (20,) and snap.last_val_bpb == 1.2
    assert snap.step == 3 and snap.lr == 0.5 and snap.sample == "hello" and snap.sample_step == 2
    assert snap.step_time_ms == pytest.approx(20.0) and snap.last_tokens_per_s == 300.0


def test_series_decimates_long_runs() -> None:
    series = RunSeries()
    series.add([{"kind": "train", "step": s, "loss": 1.0, "tokens": s} for s in range(1, 5001)])
    snap = series.snapshot(max_points=160)
    assert len(snap.train.steps) == 160 and snap.train.steps[-1] == 5000


def test_text_follower_reads_only_new_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    follower = TextFollower(log)
    assert follower.read_new() == [], "a missing file reads as nothing"
    log.write_text("one\ntw")
    assert follower.read_new() == ["one"]
    with open(log, "a") as handle:
        handle.write("o\nthree\n")
    assert follower.read_new() == ["two", "three"]
    assert follower.read_new() == []


def test_text_follower_starts_at_the_tail_of_a_long_file(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    lines = TextFollower(log, initial_tail_bytes=100).read_new()
    assert lines[-1] == "line 999" and len(lines) < 20
    assert all(line.startswith("line ") for line in lines), "the cut first line must be dropped"


def test_settings_round_trip() -> None:
    assert load_settings() == Settings(), "no file means defaults"
    changed = Settings(data_dir="/tmp/somewhere", default_preset="medium", theme="textual-light")
    save_settings(changed)
    assert load_settings() == changed


@pytest.mark.parametrize("text, match", [
    ('colour = "red"\n', "unknown setting"),
    ("theme = 3\n", "expected a string"),
    ('default_preset = "huge"\n', "unknown preset"),
    ("theme = \n", "cannot read settings"),
])
def test_bad_settings_are_config_errors(text: str, match: str) -> None:
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings()


def test_formats() -> None:
    assert fmt.duration(3725) == "1h02m" and fmt.duration(75) == "1m15s" and fmt.duration(None) == "—"
    assert fmt.rate(12345) == "12.3k" and fmt.count(275_598_388) == "275.6M"
    assert fmt.run_duration(100.0, None, running=True, now=160.0) == "1m00s"
    assert fmt.run_duration(100.0, None, running=False, now=160.0) == "—", "a dead run without end time has no duration"
    assert fmt.size(2 * 1024**3) == "2.0 GiB"


def test_gpu_lines() -> None:
    stats = (GpuStats(0, "H100", 87, 40 * 1024**3, 80 * 1024**3), GpuStats(1, "H100", 5, 1024**3, 80 * 1024**3))
    assert format_gpu_stats(stats) == "GPU0  87%  40.0/80 GiB\nGPU1   5%  1.0/80 GiB"
    assert format_gpu_stats(()) == format_gpu_stats(NO_GPU) == "GPU: none on this machine (training runs on the CPU)"


def test_the_gpu_extra_is_suggested_only_where_a_gpu_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def without_nvml(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "pynvml":
            raise ImportError("no pynvml")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_nvml)
    monkeypatch.setattr(gpu, "nvidia_gpu_present", lambda: False)
    assert gpu.read_gpu_stats() == NO_GPU and "extra" not in NO_GPU, "no GPU here, yet the gpu extra was suggested"
    monkeypatch.setattr(gpu, "nvidia_gpu_present", lambda: True)
    assert gpu.read_gpu_stats() == NO_NVML and "pip install" in NO_NVML
