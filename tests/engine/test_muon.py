"""Muon, the optimiser split and the schedules, on CPU in fp32 (sharding checked over 2 gloo ranks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.config import OptimConfig
from engine.train.muon import Muon, setup_optimizers, zeropower_via_newtonschulz5
from engine.train.schedules import (
    get_lr,
    get_window_size_blocks,
    lr_multiplier,
    muon_momentum,
    window_blocks_for_progress,
)
from tests.helpers import assert_close_scaled

REPO_ROOT = Path(__file__).resolve().parents[2]
VOCAB, DIM, HEADS_DIM = 64, 32, 16


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv_w = nn.Parameter(torch.randn(3, HEADS_DIM, DIM) * 0.1)  # 3-D: Muon orthogonalises batched
        self.lambdas = nn.Parameter(torch.tensor([0.5, 0.5]))
        self.c_proj = nn.Linear(HEADS_DIM, DIM, bias=False)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = _Attention()
        self.c_fc = nn.Linear(DIM, 4 * DIM, bias=False)
        self.c_proj = nn.Linear(4 * DIM, DIM, bias=False)
        self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x: Tensor, ve: Tensor) -> Tensor:
        q, k, v = (x @ self.attn.qkv_w.transpose(-2, -1)).unbind(0)  # each (T, HEADS_DIM)
        v = self.attn.lambdas[0] * v + self.attn.lambdas[1] * ve[:, :HEADS_DIM]
        scores = (q @ k.T).masked_fill(torch.ones(len(x), len(x)).triu(1).bool(), float("-inf"))
        x = self.lambdas[0] * x + self.attn.c_proj(scores.softmax(-1) @ v)
        return x + self.c_proj(F.relu(self.c_fc(x)).square())


class StandInGPT(nn.Module):
    """The parameter layout setup_optimizers relies on, without the real model's machinery."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.value_embeds = nn.ModuleList([nn.Embedding(VOCAB, DIM) for _ in range(2)])
        self.blocks = nn.ModuleList([_Block() for _ in range(2)])
        self.lm_head = nn.Linear(DIM, 128, bias=False)
        self.skip_weights = nn.Parameter(torch.ones(1))

    def forward(self, tokens: Tensor, targets: Tensor) -> Tensor:
        x = F.rms_norm(self.embed(tokens), (DIM,))  # (T, DIM)
        skip = self.blocks[0](x, self.value_embeds[0](tokens))
        x = self.blocks[1](skip, self.value_embeds[1](tokens)) + self.skip_weights[0] * skip
        logits = self.lm_head(F.rms_norm(x, (DIM,)))  # (T, 128)
        return F.cross_entropy(logits, targets)


def _make_model(seed: int = 0) -> StandInGPT:
    torch.manual_seed(seed)
    return StandInGPT()


def _train(model: nn.Module, optimizers: list[torch.optim.Optimizer], steps: range, total: int) -> None:
    for step in steps:
        generator = torch.Generator().manual_seed(100 + step)
        tokens = torch.randint(0, VOCAB, (17,), generator=generator)
        model.zero_grad(set_to_none=True)
        model(tokens[:-1], tokens[1:]).backward()
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * get_lr(step, total, cooldown_frac=0.5)
            optimizer.step()


# --------------------------------------------------------------------------- Newton-Schulz


@pytest.mark.parametrize("shape", [(64, 32), (32, 64)])
def test_newton_schulz_output_is_near_orthogonal(shape: tuple[int, int]) -> None:
    G = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    X = zeropower_via_newtonschulz5(G, steps=5)
    assert X.shape == G.shape and X.dtype == torch.float32, "CPU default must keep shape and use fp32"
    singular = torch.linalg.svdvals(X)
    assert singular.min() > 0.3 and singular.max() < 1.5, f"singular values out of range: {singular}"


def test_newton_schulz_batched_equals_per_matrix() -> None:
    G = torch.randn(4, 24, 8, generator=torch.Generator().manual_seed(1))
    batched = zeropower_via_newtonschulz5(G)
    single = torch.stack([zeropower_via_newtonschulz5(matrix) for matrix in G])
    assert_close_scaled(batched, single, rel=1e-5)
    bf16 = zeropower_via_newtonschulz5(G, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16, "an explicit dtype must be honoured"


# --------------------------------------------------------------------------- optimiser split


def _hidden_names(model: nn.Module) -> set[str]:
    return {f"blocks.{name}" for name, p in model.blocks.named_parameters() if p.ndim >= 2}


def test_setup_optimizers_groups_every_parameter_once() -> None:
    model = _make_model()
    optim = OptimConfig()
    adam, muon = setup_optimizers(model, optim)
    assert isinstance(adam, torch.optim.Adam) and isinstance(muon, Muon)
    names = {id(p): name for name, p in model.named_parameters()}
    muon_names = {names[id(p)] for group in muon.param_groups for p in group["params"]}
    assert muon_names == _hidden_names(model), "Muon must get exactly the 2-D+ block matrices"
    head, embeds, scalars = ({names[id(p)] for p in group["params"]} for group in adam.param_groups)
    assert head == {"lm_head.weight"}
    assert embeds == {"embed.weight", "value_embeds.0.weight", "value_embeds.1.weight"}
    assert scalars == {name for name, p in model.named_parameters() if p.ndim < 2}
    assert [g["lr"] for g in adam.param_groups] == [optim.adam_head_lr, optim.adam_embed_lr, optim.adam_scalar_lr]
    assert adam.defaults["betas"] == (optim.adam_beta1, optim.adam_beta2) and adam.defaults["eps"] == optim.adam_eps
    assert all(g["lr"] == optim.muon_lr and g["momentum"] == optim.muon_momentum for g in muon.param_groups)
    for optimizer in (adam, muon):
        assert all(g["initial_lr"] == g["lr"] for g in optimizer.param_groups), "every group needs initial_lr"


def test_setup_optimizers_on_the_real_gpt(tmp_path: Path) -> None:
    model_module = pytest.importorskip("engine.model")
    from engine.config import ModelConfig

    config = ModelConfig(vocab_size=64, num_layers=2, num_heads=2, head_dim=16, model_dim=32, num_value_embeds=1,
                         no_attention_layers=(), window_pattern="LS", max_window_tokens=32, attn_block_size=16,
                         bos_id=0)
    torch.manual_seed(0)
    model = model_module.GPT(config, max_seq_len=64)
    optimizers = setup_optimizers(model, OptimConfig())
    names = {id(p): name for name, p in model.named_parameters()}
    muon_names = {names[id(p)] for group in optimizers[1].param_groups for p in group["params"]}
    assert muon_names == _hidden_names(model), "Muon must get exactly the GPT's block matrices"
    tokens = torch.randint(0, 64, (2, 33), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(5):
        model.zero_grad(set_to_none=True)
        loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        losses.append(loss.item())
        for optimizer in optimizers:
            optimizer.step()
    assert losses[-1] < losses[0], f"loss should drop on a repeated batch: {losses}"
    torch.save([o.state_dict() for o in optimizers], tmp_path / "optim.pt")
    for optimizer, state in zip(optimizers, torch.load(tmp_path / "optim.pt", weights_only=True)):
        optimizer.load_state_dict(state)


def test_muon_step_changes_only_hidden_matrices() -> None:
    model = _make_model()
    _adam, muon = setup_optimizers(model, OptimConfig())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    tokens = torch.randint(0, VOCAB, (17,), generator=torch.Generator().manual_seed(0))
    model(tokens[:-1], tokens[1:]).backward()
    model.blocks[0].c_fc.weight.grad = None  # a matrix without a gradient is left alone
    muon.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == _hidden_names(model) - {"blocks.0.c_fc.weight"}, f"Muon changed {sorted(changed)}"


def test_muon_update_is_scaled_orthogonal_momentum() -> None:
    weight = nn.Parameter(torch.zeros(32, 8))  # tall: the step is scaled by sqrt(32 / 8) = 2
    grad = torch.randn(32, 8, generator=torch.Generator().manual_seed(2))
    weight.grad = grad.clone()
    Muon([weight], lr=0.1, momentum=0.95).step()
    # first step: buf = 0.05 g, nesterov direction = g.lerp(buf, 0.95); NS is scale-invariant
    expected = -0.1 * 2 * zeropower_via_newtonschulz5(grad.lerp(0.05 * grad, 0.95))
    assert_close_scaled(weight.detach(), expected, rel=1e-4)
    assert torch.equal(weight.grad, grad), "step must not modify .grad in place"


def test_batched_step_equals_one_matrix_at_a_time() -> None:
    # same-shaped matrices are orthogonalised in one batched call; each must get its own update
    gen = torch.Generator().manual_seed(3)
    shapes = [(24, 8), (24, 8), (8, 24), (3, 8, 8), (3, 8, 8), (24, 8)]  # (8, 24) shares the numel group
    weights = [nn.Parameter(torch.zeros(shape)) for shape in shapes]
    grads = [torch.randn(shape, generator=gen) for shape in shapes]
    for weight, grad in zip(weights, grads):
        weight.grad = grad.clone()
    weights[1].grad = None  # no gradient: left alone, and the others still line up
    Muon(weights, lr=0.1, momentum=0.95).step()
    for index, (weight, grad) in enumerate(zip(weights, grads)):
        if index == 1:
            assert torch.equal(weight, torch.zeros_like(weight))
            continue
        scale = max(1.0, weight.size(-2) / weight.size(-1)) ** 0.5
        expected = -0.1 * scale * zeropower_via_newtonschulz5(grad.lerp(0.05 * grad, 0.95))
        assert_close_scaled(weight.detach(), expected, rel=1e-4)


def test_muon_keeps_bf16_weights_and_state_in_bf16() -> None:
    weight = nn.Parameter(torch.randn(16, 16).bfloat16())
    weight.grad = torch.randn(16, 16).bfloat16()
    optimizer = Muon([weight], lr=0.05)
    optimizer.step()
    assert weight.dtype == torch.bfloat16
    assert optimizer.state[weight]["momentum_buffer"].dtype == torch.bfloat16


def test_state_dict_round_trip_resumes_exactly(tmp_path: Path) -> None:
    total = 6
    reference = _make_model()
    _train(reference, setup_optimizers(reference, OptimConfig()), range(total), total)

    first = _make_model()
    optimizers = setup_optimizers(first, OptimConfig())
    _train(first, optimizers, range(3), total)
    path = tmp_path / "state.pt"
    torch.save({"model": first.state_dict(), "optimizers": [o.state_dict() for o in optimizers]}, path)

    loaded = torch.load(path, weights_only=True)
    resumed = _make_model(seed=1)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(loaded["model"])
    resumed_optimizers = setup_optimizers(resumed, OptimConfig())
    for optimizer, state in zip(resumed_optimizers, loaded["optimizers"]):
        optimizer.load_state_dict(state)
    _train(resumed, resumed_optimizers, range(3, total), total)

    for (name, expected), actual in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), f"{name} differs after resuming from the optimiser state"


# --------------------------------------------------------------------------- schedules


def test_get_lr_matches_the_original() -> None:
    assert get_lr(0, 4000) == 1.0
    assert get_lr(2000, 4000) == 1.0
    assert get_lr(2400, 4000) == pytest.approx(1.0)  # cooldown starts at 60 %
    assert get_lr(3000, 4000) == pytest.approx(0.6625)  # w = 0.625: 0.625 + 0.375 * 0.1
    assert get_lr(4000, 4000) == pytest.approx(0.1), "the last step lands exactly on progress 1"
    assert lr_multiplier(1.3) == pytest.approx(0.1) and lr_multiplier(-0.2) == 1.0, "progress is clamped"
    assert lr_multiplier(1.0, cooldown_frac=0.0) == 1.0
    # a cooldown to zero instead of the original's 0.1: halfway through it the multiplier is 0.5
    assert lr_multiplier(0.75, 0.5, final_frac=0.0) == pytest.approx(0.5)
    assert lr_multiplier(1.0, 0.5, final_frac=0.0) == 0.0


def test_muon_momentum_warms_up_from_the_speedruns_start() -> None:
    assert muon_momentum(0, 0.95) == pytest.approx(0.85)
    assert muon_momentum(150, 0.95) == pytest.approx(0.90)
    assert muon_momentum(300, 0.95) == pytest.approx(0.95) and muon_momentum(5000, 0.95) == pytest.approx(0.95)


def test_window_schedule_matches_the_original() -> None:
    assert get_window_size_blocks(0, 4000) == 1
    assert get_window_size_blocks(2000, 4000) == 7  # 864 tokens -> 896
    assert get_window_size_blocks(4000, 4000) == 14  # 1728 -> 1792 tokens
    assert isinstance(get_window_size_blocks(4000, 4000), int)
    assert window_blocks_for_progress(0.5, max_window_tokens=256, block_size=64) == 2
    assert window_blocks_for_progress(1.5, max_window_tokens=256, block_size=64) == 4


# --------------------------------------------------------------------------- sharded Muon

# same numel, different shapes (2048, 1024 and 384 elements); odd counts leave a rank idle
SHARD_SHAPES = [(64, 32), (32, 64), (16, 128), (32, 32), (3, 8, 16), (24, 16)]
SHARD_STEPS = 3


def sharded_case() -> tuple[list[Tensor], list[list[Tensor]]]:
    """Initial params and the per-step grads, identical in every process."""
    generator = torch.Generator().manual_seed(7)
    params = [torch.randn(shape, generator=generator) for shape in SHARD_SHAPES]
    grads = [[torch.randn(shape, generator=generator) for shape in SHARD_SHAPES] for _ in range(SHARD_STEPS)]
    return params, grads


def _owners(world_size: int) -> list[int]:
    """The rank that owns each of SHARD_SHAPES: Muon groups by size, then deals each group round robin."""
    numels = [torch.Size(shape).numel() for shape in SHARD_SHAPES]
    owners = [0] * len(numels)
    for size in dict.fromkeys(numels):
        for position, index in enumerate(i for i, n in enumerate(numels) if n == size):
            owners[index] = position % world_size
    return owners


def _bf16_newton_schulz(G: Tensor, steps: int) -> Tensor:
    return zeropower_via_newtonschulz5(G, steps, dtype=torch.bfloat16)  # what CUDA runs


def run_muon(rank: int, world_size: int, bf16_updates: bool = False) -> dict[str, list]:
    """Params after the steps, their momentum buffers (complete on every rank after consolidate_state),
    which momentum buffers this rank advanced itself, and the dtype of the gathered updates."""
    initial, grads = sharded_case()
    params = [nn.Parameter(p.clone()) for p in initial]
    kwargs = {"orthogonalize": _bf16_newton_schulz} if bf16_updates else {}
    optimizer = Muon(params, lr=0.05, momentum=0.95, rank=rank, world_size=world_size, **kwargs)
    for step_grads in grads:
        for param, grad in zip(params, step_grads):
            param.grad = grad.clone()
        optimizer.step()
    advanced = [("momentum_buffer" in optimizer.state[p]) for p in params]
    optimizer.consolidate_state()
    return {"params": [p.detach() for p in params],
            "momentum": [optimizer.state[p]["momentum_buffer"] for p in params],
            "advanced": advanced, "update_dtype": [str(optimizer._update_dtype(params[0]))]}


def all_reduce_gradients(rank: int) -> dict[str, list]:
    """all_reduce_mean_ on fp32 and bf16 gradients of rank-dependent values; records each collective's dtype."""
    import torch.distributed as dist

    from engine.train.distributed import all_reduce_mean_

    grads = [torch.full((5,), float(rank + 1)), torch.full((3, 2), 2.0 * (rank + 1), dtype=torch.bfloat16),
             torch.full((4,), 4.0 * (rank + 1))]
    sent: list[str] = []
    original = dist.all_reduce

    def recording(tensor: Tensor, *args: object, **kwargs: object) -> object:
        sent.append(f"{tensor.dtype}:{tensor.numel()}")
        return original(tensor, *args, **kwargs)

    dist.all_reduce = recording
    try:
        all_reduce_mean_(grads, world_size=2)
    finally:
        dist.all_reduce = original
    return {"grads": grads, "sent": sent}


def agree_across_ranks(rank: int) -> tuple[bool, float]:
    """engine.train.distributed.agree with rank 1 asking to stop and having trained longer."""
    from engine.train.distributed import DistContext, agree

    ctx = DistContext(rank, 2, rank, torch.device("cpu"))
    return agree(rank == 1, 10.0 + 2.5 * rank, ctx)


_WORKER = """
import sys
import torch.distributed as dist
import torch
from engine.train.distributed import exit_worker
from tests.engine.test_muon import agree_across_ranks, all_reduce_gradients, run_muon

dist.init_process_group("gloo")
results = {bf16: run_muon(dist.get_rank(), dist.get_world_size(), bf16) for bf16 in (False, True)}
results["all_reduce"] = all_reduce_gradients(dist.get_rank())
results["agree"] = agree_across_ranks(dist.get_rank())
torch.save(results, f"{sys.argv[1]}/rank{dist.get_rank()}.pt")
dist.destroy_process_group()
exit_worker(0)  # as the entry points leave a rank: past gloo's teardown at finalization
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_sharded_muon_over_two_gloo_ranks_equals_single_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout}\n{result.stderr}"
    for rank in range(2):
        # the stop flag and the training time the schedule goes by are the same on every rank
        assert torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)["agree"] == (True, 12.5)
        reduced = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)["all_reduce"]
        # one collective per dtype: the bf16 gradients travel as bf16, not promoted into the fp32 buffer
        assert sorted(reduced["sent"]) == ["torch.bfloat16:6", "torch.float32:9"], reduced["sent"]
        for grad, mean in zip(reduced["grads"], (1.5, 3.0, 6.0)):
            assert torch.equal(grad, torch.full_like(grad, mean)), f"rank {rank}: {grad} is not the mean {mean}"
    for bf16 in (False, True):
        expected = run_muon(rank=0, world_size=1, bf16_updates=bf16)
        for rank in range(2):
            got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)[bf16]
            # each rank advances only the momentum of its own shard (within each size group,
            # positions rank, rank + 2, ...) ...
            assert got["advanced"] == [owner == rank for owner in _owners(world_size=2)], got["advanced"]
            # ... gathers the updates in the dtype Newton-Schulz made them (bf16 on CUDA) ...
            assert got["update_dtype"] == [str(torch.bfloat16 if bf16 else torch.float32)]
            # ... and after consolidate_state holds every param and momentum buffer of one process
            for what in ("params", "momentum"):
                for index, (want, have) in enumerate(zip(expected[what], got[what], strict=True)):
                    torch.testing.assert_close(have, want, atol=1e-6, rtol=0,
                                               msg=lambda m, w=what, i=index, r=rank: f"rank {r}, {w} {i}: {m}")
