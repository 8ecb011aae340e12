"""How the GPU path fails: a torch.compile failure, out of memory in validation, the allocator
setting, the process-group timeout, and a GPU benchmark that outlives a failing variant."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
import torch

from engine.config import preset
from engine.train.device import configure_cuda_allocator
from engine.train.failures import out_of_memory_error

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_dir(tmp_path: Path, name: str, *overrides: str) -> Path:
    from engine.runs import RunManager
    from tests.helpers import tiny_config, write_corpus

    hp = tiny_config(write_corpus(tmp_path), "train.num_iterations=3", "run.sample_tokens=0",
                     "run.checkpoint_every=0", *overrides)
    return RunManager().create(hp, name).path


def test_a_compile_failure_ends_the_run_with_the_hint_to_turn_compile_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.train.pretraining import build_trainer
    import engine.train.trainer
    from engine.train.entry import run_entry_point

    def broken_backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        raise RuntimeError("ptxas fatal: unsupported GPU architecture")  # what a Triton/CUDA mismatch reports

    monkeypatch.setattr(engine.train.trainer, "compile_for_training",
                        lambda model, paths: torch.compile(model, backend=broken_backend, dynamic=False))
    run_dir = _run_dir(tmp_path, "nocompile", "run.compile='on'", "run.val_every=0")
    torch._dynamo.reset()
    try:
        assert run_entry_point(run_dir, lambda stop: build_trainer(run_dir, False, stop)) == 1
    finally:
        torch._dynamo.reset()
    err = capsys.readouterr().err
    error = next(line for line in err.splitlines() if line.startswith("error: "))
    hint = next(line for line in err.splitlines() if line.startswith("hint: "))
    assert "torch.compile failed" in error and "ptxas fatal" in error, error
    assert "--set run.compile=off" in hint, hint
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "run.compile=off" in status["message"], status


def test_out_of_memory_in_validation_names_val_seq_len(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.train.pretraining import build_trainer
    from engine.train.entry import run_entry_point
    from engine.train.trainer import Trainer

    def out_of_memory(self: Trainer, window_blocks: int) -> dict[str, float]:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 48.00 GiB")

    monkeypatch.setattr(Trainer, "validate", out_of_memory)
    run_dir = _run_dir(tmp_path, "valoom", "run.val_every=2", "train.val_seq_len=256")
    assert run_entry_point(run_dir, lambda stop: build_trainer(run_dir, False, stop)) == 1
    hint = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("hint: "))
    assert "train.val_seq_len (now 256" in hint and "--set train.val_seq_len=128" in hint, hint
    speedrun = out_of_memory_error(preset("speedrun-124m"), world_size=8, validating=True)
    assert "--set train.val_seq_len=131072" in speedrun.hint and "during validation" in speedrun.message


def test_cuda_runs_get_expandable_segments_unless_the_user_chose() -> None:
    environ: dict[str, str] = {}
    configure_cuda_allocator(environ)
    assert environ == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    chosen = {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:512"}
    configure_cuda_allocator(chosen)
    assert chosen == {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:512"}


def test_the_process_group_waits_longer_than_the_default_ten_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    from engine.train.distributed import init_distributed

    calls: list[dict] = []
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    ctx = init_distributed("cpu")
    assert ctx.world_size == 2 and ctx.host_group is None  # gloo already agrees on the host
    assert calls and calls[0]["backend"] == "gloo" and calls[0]["timeout"] >= timedelta(minutes=30), calls


def _benchmark(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_throughput", REPO_ROOT / "benchmarks" / "gpu_throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_throughput", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_gpu_benchmark_reports_a_failing_variant_and_goes_on(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bench = _benchmark(monkeypatch)

    def failing() -> object:
        raise AssertionError("a custom op's fake strides differ")

    failed = bench._guarded("ours compile=True fp8=True", failing)
    assert failed.error.startswith("failed: AssertionError: a custom op's fake strides"), failed.error
    original = bench.Measurement("original", 1000.0, 1.0, 1.0, 3.0)
    ours = bench.Measurement("ours", 1100.0, 1.0, 1.0, 3.0)
    assert bench.summary_line(ours, original, 1e9, 1000.0) == (
        "tokens_per_s=1100 mfu=0.001 original_tokens_per_s=1000 ratio_vs_original=1.100")
    assert "ratio_vs_original=nan" in bench.summary_line(failed, original, 1e9, 1000.0)
    if not torch.cuda.is_available():
        assert bench.main([]) == 2
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert re.fullmatch(r"tokens_per_s=\S+ mfu=\S+ original_tokens_per_s=\S+ ratio_vs_original=\S+", last), last
