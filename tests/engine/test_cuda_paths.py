"""Fast-path selection by faked GPUs, the FP8 head op, bf16 preparation, compile timing,
environment.json, and the 8-GPU / multi-node launch commands (built, never run)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from engine.config import ModelConfig, RunConfig, preset
from engine.train.device import (
    DeviceCapabilities,
    FastPaths,
    choose_fast_paths,
    detect_capabilities,
    prepare_model_for_device,
    window_argument,
)
from engine.errors import DeviceError
from engine.model import GPT
from engine.model.fp8 import fp8_linear
from engine.train.failures import out_of_memory_error

H100 = DeviceCapabilities("cuda", "NVIDIA H100 80GB HBM3", 8, (9, 0), 80 << 30, bf16=True, fp8=True, triton=True)
RTX4090 = DeviceCapabilities("cuda", "NVIDIA GeForce RTX 4090", 1, (8, 9), 24 << 30, bf16=True, fp8=True, triton=True)
A100 = DeviceCapabilities("cuda", "NVIDIA A100-SXM4-80GB", 8, (8, 0), 80 << 30, bf16=True, fp8=False, triton=True)
V100 = DeviceCapabilities("cuda", "Tesla V100-SXM2-32GB", 4, (7, 0), 32 << 30, bf16=False, fp8=False, triton=True)
CPU = DeviceCapabilities("cpu", "x86_64", 2)
AUTO = RunConfig()

TINY = ModelConfig(vocab_size=64, num_layers=4, num_heads=2, head_dim=16, model_dim=32, num_value_embeds=1,
                   no_attention_layers=(2,), window_pattern="LSSL", max_window_tokens=32, attn_block_size=8,
                   bos_id=0)


def _paths(caps: DeviceCapabilities, **run: str) -> FastPaths:
    return choose_fast_paths(caps, dataclasses.replace(AUTO, **run))


@pytest.mark.parametrize("caps,expected", [
    (H100, ("flex", "bfloat16", True, True, True)),
    (RTX4090, ("flex", "bfloat16", True, True, True)),
    (A100, ("flex", "bfloat16", True, False, True)),
    (V100, ("flex", "float32", True, False, True)),
    (CPU, ("sdpa", "float32", False, False, False)),
])
def test_auto_paths_by_device(caps: DeviceCapabilities, expected: tuple) -> None:
    paths = _paths(caps)
    got = (paths.attention, paths.dtype, paths.compile, paths.fp8_head, paths.fused_adam)
    assert got == expected, f"{caps.name}: {paths.reasons}"
    assert len(paths.reasons) == 5 and all(isinstance(r, str) for r in paths.reasons)


def test_reasons_name_why_fp8_is_off() -> None:
    assert any("sm80" in r and "sm89" in r for r in _paths(A100).reasons), _paths(A100).reasons
    assert any("fp8 lm_head: off (compile is off" in r for r in _paths(H100, compile="off").reasons)
    assert any("fp8 lm_head: off (float32" in r for r in _paths(H100, dtype="float32").reasons)
    assert any("fp8 lm_head: on (sm90" in r for r in _paths(H100).reasons)


def test_config_switches_override_auto() -> None:
    assert not _paths(H100, compile="off").compile
    assert _paths(H100, dtype="float32").dtype == "float32"
    assert _paths(CPU, compile="on").compile, "run.compile=on must compile on CPU too"
    assert _paths(CPU, dtype="bfloat16").dtype == "bfloat16"
    no_triton = dataclasses.replace(H100, triton=False)
    assert (_paths(no_triton).attention, _paths(no_triton).compile) == ("sdpa", False)


def test_impossible_requests_are_device_errors() -> None:
    with pytest.raises(DeviceError, match="no bf16 support"):
        _paths(V100, dtype="bfloat16")
    with pytest.raises(DeviceError, match="Triton"):
        _paths(dataclasses.replace(H100, triton=False), compile="on")


def test_detect_capabilities_on_cpu() -> None:
    caps = detect_capabilities(torch.device("cpu"))
    assert caps.device_type == "cpu" and caps.count >= 1 and not caps.fp8 and caps.compute_capability is None


def test_out_of_memory_hint_halves_the_micro_batch_or_the_sequence() -> None:
    hp = preset("speedrun-124m")
    hint = out_of_memory_error(hp, world_size=8).hint
    assert "train.train_seq_len=24576" in hint and "train.batch_size=16" in hint, hint
    hp = dataclasses.replace(hp, train=dataclasses.replace(hp.train, micro_batch_size=4))
    hint = out_of_memory_error(hp, world_size=1).hint
    assert "train.micro_batch_size=2" in hint and "accumulates 4" in hint, hint


# --------------------------------------------------------------------------- FP8 head


def test_fp8_op_matches_a_bf16_matmul_forward_and_backward() -> None:
    torch.manual_seed(0)
    dim, vocab = 64, 256
    x = torch.nn.functional.rms_norm(torch.randn(2, 20, dim), (dim,)).bfloat16().requires_grad_()
    weight = (torch.randn(vocab, dim) * 0.05).requires_grad_()
    out = fp8_linear(x, weight)
    assert out.shape == (2, 20, vocab) and out.dtype == torch.bfloat16
    x_ref, w_ref = x.detach().float().requires_grad_(), weight.detach().clone().requires_grad_()
    ref = x_ref @ w_ref.T
    grad = torch.randn_like(ref) * 1e-2
    out.backward(grad.bfloat16())
    ref.backward(grad)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.detach().float() - b.detach()).norm() / b.detach().norm())

    # e4m3 keeps 3 mantissa bits, e5m2 two: a few percent of error is the format, not a bug
    assert rel(out, ref) < 0.08, "FP8 forward is far from the bf16 matmul"
    assert x.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.float32
    assert rel(x.grad, x_ref.grad) < 0.15 and rel(weight.grad, w_ref.grad) < 0.15, "FP8 gradients are wrong"


def _model(fp8: bool, bf16: bool) -> GPT:
    torch.manual_seed(0)
    model = GPT(TINY, max_seq_len=64)
    with torch.no_grad():
        model.lm_head.weight.normal_(std=0.05)
    paths = FastPaths("sdpa", "bfloat16" if bf16 else "float32", compile=False, fp8_head=fp8, fused_adam=False)
    return prepare_model_for_device(model, paths)


def test_fp8_flag_falls_back_to_the_usual_logits() -> None:
    tokens = torch.randint(1, 64, (2, 32), generator=torch.Generator().manual_seed(0))
    for bf16 in (False, True):
        plain, flagged = _model(fp8=False, bf16=bf16), _model(fp8=True, bf16=bf16)
        assert flagged.use_fp8_head
        plain.eval(), flagged.eval()
        # evaluation (and any fp32 run) uses the ordinary head: identical logits
        torch.testing.assert_close(flagged(tokens), plain(tokens), rtol=0, atol=0)
    fp32_training = _model(fp8=True, bf16=False)
    torch.testing.assert_close(fp32_training(tokens), _model(fp8=False, bf16=False)(tokens), rtol=0, atol=0)


def test_fp8_head_trains_close_to_the_bf16_head() -> None:
    tokens = torch.randint(1, 64, (2, 32), generator=torch.Generator().manual_seed(0))
    losses = []
    for fp8 in (False, True):
        model = _model(fp8=fp8, bf16=True)
        loss = model(tokens, tokens.roll(-1, 1))
        loss.backward()
        assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.dtype == torch.float32
        losses.append(float(loss))
    assert losses[1] == pytest.approx(losses[0], rel=0.02), losses


def test_bf16_preparation_keeps_fp32_master_weights() -> None:
    model = _model(fp8=False, bf16=True)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert {d for n, d in dtypes.items() if "embed" in n} == {torch.bfloat16}
    assert {d for n, d in dtypes.items() if "embed" not in n} == {torch.float32}, "Muon's matrices must stay fp32"
    tokens = torch.randint(1, 64, (1, 32), generator=torch.Generator().manual_seed(1))
    reference = _model(fp8=False, bf16=False)
    torch.testing.assert_close(model(tokens), reference(tokens), atol=0.1, rtol=0.05)


def test_a_compiled_model_does_not_recompile_as_the_window_grows() -> None:
    graphs: list[int] = []

    def counting_backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(1)
        return graph_module.forward

    torch._dynamo.reset()
    model = _model(fp8=False, bf16=False)
    compiled = torch.compile(model, backend=counting_backend, dynamic=False)
    tokens = torch.randint(1, 64, (1, 32), generator=torch.Generator().manual_seed(0))
    paths = FastPaths("sdpa", "float32", compile=True, fp8_head=False, fused_adam=False)
    compiled(tokens, tokens, window_argument(1, paths, tokens.device)).backward()
    after_first = len(graphs)
    for blocks in (2, 3, 4):
        loss = compiled(tokens, tokens, window_argument(blocks, paths, tokens.device))
        loss.backward()
    assert len(graphs) == after_first, "a new window size recompiled the model"
    torch._dynamo.reset()


# --------------------------------------------------------------------------- the trainer


def _run_dir(tmp_path: Path, name: str, *overrides: str) -> Path:
    from engine.runs import RunManager
    from tests.helpers import tiny_config, write_corpus

    hp = tiny_config(write_corpus(tmp_path), "train.num_iterations=3", "run.val_every=0", "run.sample_tokens=0",
                     "run.checkpoint_every=0", *overrides)
    return RunManager().create(hp, name).path


def test_environment_json_records_device_and_fast_paths(tmp_path: Path) -> None:
    from engine.train.pretraining import build_trainer
    from engine.train.trainer import StopSignal

    run_dir = _run_dir(tmp_path, "env")
    assert build_trainer(run_dir, False, StopSignal()).run() == "finished"
    record = json.loads((run_dir / "environment.json").read_text())
    assert record["torch"] == torch.__version__ and record["python"] == sys.version.split()[0]
    assert record["device"]["type"] == "cpu" and record["world_size"] == 1 and record["hostname"]
    assert record["fast_paths"]["attention"] == "sdpa" and record["fast_paths"]["fp8_head"] is False
    assert record["fast_paths"]["reasons"], "the reasons for each path must be recorded"
    assert "git_sha" in record


def test_compile_time_is_reported_apart_from_step_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.metrics import read_metrics
    from engine.train.pretraining import build_trainer
    import engine.train.trainer
    from engine.train.trainer import StopSignal

    # dynamo traces for real; the "eager" backend skips Inductor's C++ build, which takes minutes on CPU
    monkeypatch.setattr(engine.train.trainer, "compile_for_training",
                        lambda model, paths: torch.compile(model, backend="eager", dynamic=False))
    run_dir = _run_dir(tmp_path, "compiled", "run.compile='on'")
    trainer = build_trainer(run_dir, False, StopSignal())
    assert trainer.step_model is not trainer.model and trainer.fast_paths.compile
    assert trainer.run() == "finished"
    events = read_metrics(run_dir / "metrics.jsonl")
    compiled = [e for e in events if e["kind"] == "status" and "compile_s" in e]
    assert len(compiled) == 1 and compiled[0]["compile_s"] > 0, events
    step_times = [e["step_time_ms"] / 1000 for e in events if e["kind"] == "train"]
    assert trainer.train_time_s == pytest.approx(sum(step_times[1:]), rel=0.05), "compile time leaked into train time"
    assert trainer.step_avg_ms() == pytest.approx(trainer.train_time_s * 1000 / 2)
    assert not any(key.startswith("_orig_mod.") for key in trainer.model.state_dict()), "checkpoint keys changed"


# --------------------------------------------------------------------------- launching on 8 GPUs and many nodes


@pytest.fixture
def eight_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.runs.manager.available_devices", lambda device: ("cuda", 8))


def test_speedrun_on_eight_gpus_builds_the_torchrun_command(eight_gpus: None) -> None:
    from engine.runs import RunManager

    manager = RunManager()
    info = manager.create(preset("speedrun-124m"), "speedrun", nproc=8)
    command = manager.torchrun_command(info.name)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=8"], command
    assert command[5:] == ["-m", "engine.pretraining", "--run-dir", str(info.path.resolve())]
    hp = manager.config(info.name)
    # the original's global batch: 8 sequences of 48Ki tokens, one per GPU, no accumulation
    assert (hp.train.batch_size, hp.train.micro_batch_size, hp.train.train_seq_len) == (8, 1, 48 * 1024)
    with pytest.raises(DeviceError, match="more than the 8 CUDA"):
        manager.create(preset("speedrun-124m"), "too-many", nproc=9)


def test_multi_node_prints_the_command_for_the_other_nodes(eight_gpus: None, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from engine.runs import RunManager
    from nanogpt_tui.cli import run_cli

    launched: list[str] = []
    monkeypatch.setattr(RunManager, "launch", lambda self, name, resume=False: launched.append(name) or self.get(name))
    code = run_cli(["train", "--preset", "speedrun-124m", "--name", "two-nodes", "--nproc", "8", "--nnodes", "2",
                    "--rdzv-endpoint", "10.0.0.1:29500", "--detach"])
    assert code == 0 and launched == ["two-nodes"]
    out = capsys.readouterr().out
    other = next(line.strip() for line in out.splitlines() if "torch.distributed.run" in line)
    for part in ["--nnodes=2", "--node-rank=1", "--nproc-per-node=8", "--rdzv-backend=c10d",
                 "--rdzv-endpoint=10.0.0.1:29500", "--rdzv-id=two-nodes", "-m engine.pretraining"]:
        assert part in other, f"{part} missing from the other nodes' command: {other}"
    own = RunManager().torchrun_command("two-nodes")
    assert "--node-rank=0" in own


# --------------------------------------------------------------------------- on a real GPU

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_gpu
def test_gpu_detection_and_bf16_flex_logits_match_cpu() -> None:
    caps = detect_capabilities(torch.device("cuda"))
    paths = choose_fast_paths(caps, AUTO)
    assert caps.compute_capability is not None and paths.fused_adam
    cpu_model = _model(fp8=False, bf16=False).eval()
    gpu_model = prepare_model_for_device(_model(fp8=False, bf16=False).cuda(), paths).eval()
    tokens = torch.randint(1, 64, (1, 64), generator=torch.Generator().manual_seed(0))
    tokens[0, [0, 20, 41]] = 0
    with torch.no_grad():
        torch.testing.assert_close(gpu_model(tokens.cuda()).cpu(), cpu_model(tokens), atol=0.1, rtol=0.05)


@pytest.mark.gpu
@needs_gpu
def test_gpu_fp8_op_matches_bf16() -> None:
    if not detect_capabilities(torch.device("cuda")).fp8:
        pytest.skip("this GPU has no FP8 matmuls")
    x = torch.nn.functional.rms_norm(torch.randn(256, 768, device="cuda"), (768,)).bfloat16().requires_grad_()
    weight = (torch.randn(50304, 768, device="cuda") * 0.02).requires_grad_()
    out = fp8_linear(x, weight)
    ref = x.float() @ weight.T
    assert float((out.float() - ref).norm() / ref.norm()) < 0.08
    out.float().sum().backward()
    assert weight.grad is not None and x.grad is not None and torch.isfinite(weight.grad).all()
