"""What a configuration costs, computed from its shape alone: parameters, tokens, memory, FLOPs.

Counting follows the modded-nanogpt GPT parameter by parameter, so `num_params` equals the real
model's count without building it. Memory and FLOPs are estimates for planning, not measurements.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

from engine.config import Hyperparameters, ModelConfig
from engine.errors import ConfigError

# fraction of the measured matmul throughput a training step reaches (attention, norms, optimiser)
TRAINING_EFFICIENCY = 0.35


@dataclass(frozen=True, slots=True)
class Estimate:
    """Size and cost of one configuration."""

    num_params: int
    tokens_per_step: int
    # micro-batches each rank accumulates per optimiser step
    accum_steps: int
    # saved activations of one micro-batch on one rank, plus the logits
    activation_bytes_per_rank: int
    # fp32 weights only (optimiser state adds about twice this)
    param_bytes: int
    # forward + backward FLOPs of one optimiser step over all ranks
    flops_per_step: float


def count_params(model: ModelConfig) -> int:
    """Parameters of GPT(model), counted from the shapes in the state_dict."""
    dim, attn_dim = model.model_dim, model.num_heads * model.head_dim
    embed = model.vocab_size * dim
    value_embeds = model.num_value_embeds * model.vocab_size * attn_dim
    attention_layers = model.num_layers - len(set(model.no_attention_layers))
    # qkv_w (3, H*hd, D) + c_proj (D, H*hd) + attn.lambdas (2)
    attention = attention_layers * (3 * attn_dim * dim + dim * attn_dim + 2)
    # c_fc (4D, D) + c_proj (D, 4D) + block lambdas (2)
    blocks = model.num_layers * (8 * dim * dim + 2)
    lm_head = model.padded_vocab_size * dim
    skip_weights = model.num_layers // 2
    return embed + value_embeds + attention + blocks + lm_head + skip_weights


def _matmul_params(model: ModelConfig) -> int:
    """Parameters that take part in a matmul per token (embeddings are lookups)."""
    embeddings = (1 + model.num_value_embeds) * model.vocab_size * model.model_dim
    return count_params(model) - embeddings


def _bytes_per_element(hp: Hyperparameters) -> int:
    return 4 if hp.run.device == "cpu" or hp.run.dtype == "float32" else 2


def estimate(hp: Hyperparameters, nproc: int = 1) -> Estimate:
    """Size and cost of `hp` trained on `nproc` ranks; ConfigError when the batch does not split over them."""
    model, train = hp.model, hp.train
    per_pass = nproc * train.micro_batch_size
    if train.batch_size % per_pass:
        raise ConfigError(
            f"train.batch_size: must be a multiple of processes x micro_batch_size ({per_pass}), got {train.batch_size}",
            key="train.batch_size",
        )
    num_params = count_params(model)
    tokens_per_step = train.batch_size * train.train_seq_len
    micro_tokens = train.micro_batch_size * train.train_seq_len
    attn_dim = model.num_heads * model.head_dim
    # per token and layer: residual and norms (4D), q k v y and normed q k (6 H*hd), ReLU² MLP (12D)
    per_token_layer = 16 * model.model_dim + 6 * attn_dim
    activation_elements = micro_tokens * model.num_layers * per_token_layer
    # fp32 logits: the soft-capped copy and its gradient
    logits_bytes = 2 * micro_tokens * model.padded_vocab_size * 4
    activation_bytes = activation_elements * _bytes_per_element(hp) + logits_bytes
    context = min(train.train_seq_len, model.max_window_tokens) / 2
    attention_layers = model.num_layers - len(set(model.no_attention_layers))
    # QK^T and AV: 4*H*hd*context per token forward, three times that with the backward
    attention_flops = 12 * attention_layers * attn_dim * context
    flops_per_step = tokens_per_step * (6 * _matmul_params(model) + attention_flops)
    return Estimate(
        num_params=num_params,
        tokens_per_step=tokens_per_step,
        accum_steps=train.batch_size // per_pass,
        activation_bytes_per_rank=int(activation_bytes),
        param_bytes=num_params * 4,
        flops_per_step=float(flops_per_step),
    )


def measure_matmul_flops(device: str = "cpu", seconds: float = 0.3) -> float:
    """FLOP/s of square matmuls on `device` (imports torch; call it off the UI thread)."""
    import torch

    size, dtype = (4096, torch.bfloat16) if device == "cuda" else (512, torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    (a @ b).sum().item()  # warm-up, and a sync on CUDA
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        c = a @ b
        count += 1
    c.sum().item()
    elapsed = time.perf_counter() - start
    return 2 * size**3 * count / elapsed


def training_seconds(est: Estimate, hp: Hyperparameters, flops_per_s: float, devices: int = 1) -> float:
    """Rough wall time of the whole run on `devices` devices of the measured speed; a time budget caps it."""
    seconds = est.flops_per_step * hp.train.num_iterations / (flops_per_s * TRAINING_EFFICIENCY * devices)
    if hp.train.time_budget_s > 0:
        seconds = min(seconds, hp.train.time_budget_s)
    return seconds


@dataclass(frozen=True, slots=True)
class MemoryPerRank:
    """Bytes one rank holds while training: what engine.train.device's fast paths store, plus the activations."""

    weights: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations


def memory_per_rank(hp: Hyperparameters, nproc: int = 1) -> MemoryPerRank:
    """Training memory of one of `nproc` ranks (allocator overhead and fragmentation not included).

    On a GPU run (any run.device but cpu, run.dtype not float32) the embedding tables, their
    gradients and Adam moments are bf16 and everything else fp32, as engine.train.device stores them.
    Muon keeps a momentum buffer only for the matrices its rank orthogonalises, about 1/nproc of them.
    """
    model = hp.model
    est = estimate(hp, nproc)
    attn_dim = model.num_heads * model.head_dim
    embeddings = model.vocab_size * (model.model_dim + model.num_value_embeds * attn_dim)
    head = model.padded_vocab_size * model.model_dim
    scalars = 2 * model.num_layers + 2 * (model.num_layers - len(set(model.no_attention_layers))) + model.num_layers // 2
    matrices = est.num_params - embeddings - head - scalars
    embed_bytes = _bytes_per_element(hp)
    weights = embeddings * embed_bytes + (est.num_params - embeddings) * 4
    # Adam: two moments in the parameter's dtype; Muon: one fp32 momentum per owned matrix
    adam = 2 * (embeddings * embed_bytes + (head + scalars) * 4)
    muon = -(-matrices // nproc) * 4
    return MemoryPerRank(weights=weights, gradients=weights, optimizer_state=adam + muon,
                         activations=est.activation_bytes_per_rank)


GIB = 1 << 30


def device_memory(kind: str) -> tuple[int, str] | None:
    """(bytes, name) of the memory one rank of this kind can use: a GPU's own, or this machine's RAM."""
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():  # a plan made for another machine's GPUs: nothing to compare
            return None
        props = torch.cuda.get_device_properties(0)
        return props.total_memory, f"the {props.name}"
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's RAM"
    except (OSError, ValueError, AttributeError):  # a platform without these sysconf names
        return None


def fit_problem(hp: Hyperparameters, nproc: int, kind: str) -> str | None:
    """Why the run cannot fit the memory of this node's devices (estimated), or None when it may fit.

    The weights, gradients and optimiser state are counted exactly and must fit on every device. The
    activations are an upper bound (torch.compile saves part of them on a GPU), so on a GPU they only
    count for CPU runs, whose ranks also share one machine's RAM.
    """
    available = device_memory(kind)
    if available is None:
        return None
    capacity, where = available
    try:
        memory = memory_per_rank(dataclasses.replace(hp, run=dataclasses.replace(hp.run, device=kind)), nproc)
    except ConfigError:
        return None  # a batch that does not split over the ranks is refused where the batch is planned
    state = memory.weights + memory.gradients + memory.optimizer_state
    ranks_sharing = nproc if kind == "cpu" else 1
    need = (memory.total if kind == "cpu" else state) * ranks_sharing
    if need <= capacity:
        return None
    per = f" x {nproc} ranks" if ranks_sharing > 1 else ""
    needs = "the run needs about" if kind == "cpu" else "its weights, gradients and optimiser state alone need"
    return (f"{needs} {need / GIB:,.1f} GiB ({memory.total / GIB:,.1f} GiB per rank{per}: weights "
            f"{memory.weights / GIB:,.1f} + gradients {memory.gradients / GIB:,.1f} + optimiser "
            f"{memory.optimizer_state / GIB:,.1f} + activations {memory.activations / GIB:,.1f}), "
            f"more than the {capacity / GIB:,.1f} GiB of {where}")
