"""The configuration's shape: six frozen dataclass sections, one Hyperparameters, the fixed choices.

A run's whole configuration is one `Hyperparameters`, saved as `config.toml` in the run directory
and inside every checkpoint, so a run can be reproduced. Presets are in `presets.py`, checks in
`validation.py`, dicts, TOML and `--set` overrides in `convert.py`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


# Fields with a fixed set of string choices are typed with these; validation, the forms and the CLI read
# the choices from them (`choices`, typing.get_args), so a choice is added or removed here only.
TokenizerKind = Literal["bpe", "gpt2"]
Sampling = Literal["sequential", "shuffled"]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
DtypeName = Literal["auto", "float32", "bfloat16"]
CompileMode = Literal["auto", "on", "off"]
FinetuneOptimizer = Literal["adamw", "muon"]
Overflow = Literal["truncate", "error"]
ChatTemplate = Literal["special", "plain"]
TemplateChoice = Literal["auto", ChatTemplate]


def next_multiple_of_n(value: float | int, *, n: int) -> int:
    """Smallest multiple of n that is >= value (and >= n)."""
    return max(n, math.ceil(value / n) * n)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Shape of the modded-nanogpt GPT; defaults are the original's 124M speedrun model."""

    vocab_size: int = 50257
    num_layers: int = 12
    num_heads: int = 6
    head_dim: int = 128
    model_dim: int = 768
    # value embeddings are used "012 ... 012": the first and the last num_value_embeds layers
    num_value_embeds: int = 3
    # layers without attention (the original drops it in layer 7)
    no_attention_layers: tuple[int, ...] = (7,)
    # L = long sliding window, S = short (half of long); one letter per layer
    window_pattern: str = "LSSSLSSLSSSL"
    # the long window grows linearly over training to this many tokens (rounded up to a block)
    max_window_tokens: int = 1728
    attn_block_size: int = 128
    # documents are separated by this token; attention never crosses a document boundary
    bos_id: int = 50256

    @property
    def padded_vocab_size(self) -> int:
        return next_multiple_of_n(self.vocab_size, n=128)


@dataclass(frozen=True, slots=True)
class DataConfig:
    """What the model reads: the embedded corpus, a text file/folder, or .bin shards."""

    # "shakespeare" (embedded), a path to a .txt file or a folder of .txt files, or "shards"
    corpus: str = "shakespeare"
    # globs of .bin shards, used when corpus == "shards" (e.g. FineWeb)
    train_files: str = ""
    val_files: str = ""
    # "bpe": trained on the corpus and saved with the run; "gpt2": tiktoken's GPT-2 BPE
    tokenizer: TokenizerKind = "bpe"
    bpe_vocab_size: int = 4096
    # the last val_fraction of a text corpus is held out and never trained on
    val_fraction: float = 0.1
    # tokens evaluated at each validation (0 = the whole held-out split)
    val_tokens: int = 10485760
    # "sequential": the original's front-to-back stream of contiguous batches (for shards whose documents
    # are already shuffled, such as FineWeb); "shuffled": rows of the training split in a new random
    # order every epoch (for small corpora stored in order; holds the split in memory)
    sampling: Sampling = "sequential"


@dataclass(frozen=True, slots=True)
class OptimConfig:
    """Muon for 2-D block weights, Adam for embeddings, head and scalars (the original's rates)."""

    muon_lr: float = 0.05
    muon_momentum: float = 0.95
    ns_steps: int = 5
    adam_head_lr: float = 0.22
    adam_embed_lr: float = 0.6
    adam_scalar_lr: float = 0.04
    adam_beta1: float = 0.8
    adam_beta2: float = 0.95
    adam_eps: float = 1e-10
    weight_decay: float = 0.0


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Batch and schedule. One step sees batch_size sequences of train_seq_len tokens in total."""

    num_iterations: int = 4000
    cooldown_frac: float = 0.4
    # learning-rate multiplier reached at the end of the cooldown (the original's 0.1)
    final_lr_frac: float = 0.1
    train_seq_len: int = 48 * 1024
    # sequences per optimiser step over all ranks; accumulation = batch_size / (ranks * micro_batch_size)
    batch_size: int = 8
    micro_batch_size: int = 1
    val_seq_len: int = 4 * 64 * 1024
    # 0 = no limit; otherwise training stops after this many seconds and the LR schedule
    # follows elapsed time instead of steps (used by the CPU preset and benchmarks)
    time_budget_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Where and how the run executes, and how often it reports."""

    device: DeviceName = "auto"
    dtype: DtypeName = "auto"
    compile: CompileMode = "auto"  # auto: on with CUDA
    seed: int = 1337
    log_every: int = 1
    val_every: int = 125  # 0 = only at the end
    checkpoint_every: int = 0  # 0 = only at the end (and on stop)
    sample_every: int = 0  # 0 = only at the end
    sample_tokens: int = 200
    sample_prompt: str = ""
    stop_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class FinetuneConfig:
    """Supervised fine-tuning on conversations; read only by fine-tune runs (the original's defaults)."""

    # the parent: one of our checkpoints or an original modded-nanogpt state_step*.pt
    from_checkpoint: str = ""
    # a .json ({"conversations": [...]}), a .jsonl (one {"messages": [...]} per line) or a folder of them
    data: str = ""
    epochs: int = 3
    # AdamW's rate; far below pretraining's, so the model keeps what it knows
    lr: float = 5e-5
    weight_decay: float = 0.01
    # "adamw" on every parameter, or "muon": the pretraining split with every [optim] rate x muon_scale
    optimizer: FinetuneOptimizer = "adamw"
    muon_scale: float = 0.1
    # conversations held out for validation (at least one)
    val_fraction: float = 0.1
    # drop invalid conversations (and report them) instead of refusing the whole file
    skip_invalid: bool = False
    # a .json file is parsed whole, so larger ones are refused; .jsonl is read line by line
    max_file_mb: float = 256.0
    # a conversation longer than train.train_seq_len: "truncate" (with a warning) or "error"
    overflow: Overflow = "truncate"
    # "auto": "special" for tokenizers with chat tokens (our BPE), "plain" (Human:/Assistant:) otherwise
    template: TemplateChoice = "auto"


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """The whole configuration of a run."""

    preset: str = "speedrun-124m"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "run": RunConfig,
    "finetune": FinetuneConfig,
}


def field_types(cls: type) -> dict[str, Any]:
    """{field name: resolved type} of a dataclass section (its Literal aliases resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
