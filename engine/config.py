"""Hyperparameters as typed, frozen dataclasses; presets; TOML load/save with strict validation.

A run's whole configuration is one `Hyperparameters` made of six sections, saved as
`config.toml` in the run directory and inside every checkpoint, so a run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import json
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

from engine.errors import ConfigError
from engine.limits import FIELD_LIMITS, check_number
from engine.text_input import text_problem


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


def _shakespeare_cpu() -> Hyperparameters:
    # Tuned with benchmarks/cpu_shakespeare.py for the best held-out bits per byte in 180 s on
    # 2 cores (single runs vary by about +-0.015 bpb): a narrow model seeing more tokens beats a
    # wider one (dim 192: 2.23 bpb, dim 128: 2.16); 128-token rows beat 256 (2.10 vs 2.16);
    # 6 layers beat 8 (2.18) and match 4; vocab 2048 beats 1024 (2.15), 4096 is no better and
    # slower; 32 rows per step beat 16 (2.07-2.10 vs 2.10) and match 48 or 64; a third value
    # embedding (every layer gets one) helps (2.066 twice vs 2.075 on average); cooling down to
    # 0 instead of 0.1 helps most (2.04 twice), over the last 85 % of the time (2.035) rather
    # than 70 %; towards 0.1 a cooldown over 70 % beat 50 % and 85 %. Rows in a shuffled order
    # beat the original's front-to-back stream (2.038-2.043 in three runs vs 2.052 and 2.060), and
    # with shuffled rows 48 per step beat 32 (2.027, 2.027, 2.032 vs 2.038-2.044 in six runs),
    # 40 (2.044) and 64 (2.036). Muon momentum 0.9, Muon lr 0.07, embedding lr 0.45 at 48 rows
    # and an all-long window pattern were no better.
    # The speedrun's Muon rate holds (0.03 and 0.08 are no better) with a halved embedding rate.
    return Hyperparameters(
        preset="shakespeare-cpu",
        model=ModelConfig(
            vocab_size=2048,
            num_layers=6,
            num_heads=2,
            head_dim=64,
            model_dim=128,
            num_value_embeds=3,
            no_attention_layers=(),
            window_pattern="LSSLSL",
            max_window_tokens=256,
            attn_block_size=64,
            bos_id=0,
        ),
        data=DataConfig(corpus="shakespeare", tokenizer="bpe", bpe_vocab_size=2048, val_tokens=0, sampling="shuffled"),
        optim=OptimConfig(adam_embed_lr=0.3),
        train=TrainConfig(
            num_iterations=1000,
            cooldown_frac=0.85,
            final_lr_frac=0.0,
            train_seq_len=128,
            batch_size=48,
            micro_batch_size=48,
            # evaluated at the length it trained on (longer rows score slightly worse)
            val_seq_len=128,
            time_budget_s=180.0,
        ),
        run=RunConfig(device="auto", val_every=100, checkpoint_every=300, sample_every=300,
                      sample_prompt="ROMEO:\n"),
        # a few-minute CPU model learns the chat format in a few epochs only at a higher rate than
        # the original's 5e-5 for the 124M model (benchmarks/finetune_cpu.py)
        finetune=FinetuneConfig(lr=2e-3),
    )


def _speedrun_124m() -> Hyperparameters:
    # exactly the original's Hyperparameters and create_model(); 8 GPUs x 1 sequence of 48Ki tokens.
    # The shards are where `nanogpt-tui data fineweb` puts them.
    from engine.paths import data_dir

    fineweb = data_dir() / "fineweb10B"
    return Hyperparameters(
        preset="speedrun-124m",
        data=DataConfig(
            corpus="shards",
            train_files=str(fineweb / "fineweb_train_*.bin"),
            val_files=str(fineweb / "fineweb_val_*.bin"),
            tokenizer="gpt2",
        ),
    )


def _medium() -> Hyperparameters:
    base = _speedrun_124m()
    return dataclasses.replace(
        base,
        preset="medium",
        model=dataclasses.replace(
            base.model,
            num_layers=16,
            num_heads=8,
            model_dim=1024,
            no_attention_layers=(),
            window_pattern="LSSSLSSSLSSSLSSL",
        ),
        train=dataclasses.replace(base.train, num_iterations=5960, cooldown_frac=0.7, train_seq_len=64 * 1024),
        optim=dataclasses.replace(base.optim, muon_lr=0.025, adam_head_lr=1 / 320, adam_embed_lr=0.3, adam_scalar_lr=0.015),
    )


PRESETS: dict[str, typing.Callable[[], Hyperparameters]] = {
    "shakespeare-cpu": _shakespeare_cpu,
    "speedrun-124m": _speedrun_124m,
    "medium": _medium,
}
DEFAULT_PRESET = "shakespeare-cpu"


def preset(name: str) -> Hyperparameters:
    """The named preset; raises ConfigError listing the known presets."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}", hint=f"choose one of: {', '.join(PRESETS)}"
        ) from None
    return factory()


# --------------------------------------------------------------------------- conversion


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def choice_fields() -> Mapping[str, tuple[str, ...]]:
    """Every fixed-choice field's dotted key and its choices, in the order its Literal lists them."""
    return MappingProxyType({f"{section}.{key}": typing.get_args(expected)
                             for section, cls in SECTIONS.items() for key, expected in _field_types(cls).items()
                             if typing.get_origin(expected) is Literal})


def choices(key: str) -> tuple[str, ...]:
    """The values a fixed-choice field accepts, e.g. choices("data.sampling") == ("sequential", "shuffled")."""
    return choice_fields()[key]


def check_choice(key: str, value: object, source: str = "config") -> None:
    """ConfigError (with `key` and a hint listing the choices) unless `value` is one of the field's choices."""
    allowed = choices(key)
    if value not in allowed:
        quoted = [repr(choice) for choice in allowed]
        either = ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]
        raise ConfigError(f"{source}: {key}: expected {either}, got {value!r}",
                          hint=f"choose one of: {', '.join(allowed)}", key=key)


def _coerce(value: Any, expected: Any, where: str, key: str | None = None) -> Any:
    """Check a TOML value against a field's type; ints widen to float, lists become tuples."""
    try:
        return _coerce_value(value, expected, where)
    except ConfigError as err:
        err.key = key
        raise


def _coerce_value(value: Any, expected: Any, where: str) -> Any:
    origin = typing.get_origin(expected)
    if origin is Literal:
        expected = str  # which strings: check_choice, run by validate
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(expected)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {item_type.__name__}, got {type(value).__name__} {value!r}")
        return tuple(_coerce_value(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise AssertionError(f"unsupported config field type {expected!r} at {where}")


def to_dict(hp: Hyperparameters) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for TOML and JSON."""
    out: dict[str, Any] = {"preset": hp.preset}
    for section in SECTIONS:
        values = dataclasses.asdict(getattr(hp, section))
        out[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return out


def from_dict(data: dict[str, Any], source: str = "config", base: Hyperparameters | None = None) -> Hyperparameters:
    """Build Hyperparameters from a nested dict, on top of `base` (default: the preset named in it)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table, got {type(data).__name__}")
    unknown = set(data) - set(SECTIONS) - {"preset"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {sorted(unknown)[0]!r}",
            hint=f"top-level keys are: preset, {', '.join(SECTIONS)}",
        )
    if base is None:
        preset_name = data.get("preset", DEFAULT_PRESET)
        if not isinstance(preset_name, str):
            raise ConfigError(f"{source}: preset: expected a string, got {preset_name!r}")
        base = preset(preset_name)
    elif "preset" in data:
        base = dataclasses.replace(base, preset=_coerce(data["preset"], str, f"{source}: preset"))
    changes: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        if section not in data:
            continue
        table = data[section]
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table, got {type(table).__name__}")
        types = _field_types(cls)
        for key in table:
            if key not in types:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}",
                    hint=f"keys of [{section}]: {', '.join(types)}", key=f"{section}.{key}",
                )
        updates = {k: _coerce(v, types[k], f"{source}: {section}.{k}", key=f"{section}.{k}") for k, v in table.items()}
        changes[section] = dataclasses.replace(getattr(base, section), **updates)
    hp = dataclasses.replace(base, **changes)
    validate(hp, source)
    return hp


def validate(hp: Hyperparameters, source: str = "config") -> None:
    """Reject values that would crash or silently misbehave later, naming the key."""
    m, t, d = hp.model, hp.train, hp.data

    def bad(key: str, why: str, hint: str = "") -> ConfigError:
        return ConfigError(f"{source}: {key}: {why}", hint=hint, key=key)

    _check_fields(hp, source)
    if m.num_layers % 2:
        raise bad("model.num_layers", f"must be even for the U-net skip connections, got {m.num_layers}")
    if m.head_dim % 4:
        raise bad("model.head_dim", f"must be a multiple of 4 for the rotary embedding, got {m.head_dim}")
    if len(m.window_pattern) != m.num_layers or set(m.window_pattern) - {"L", "S"}:
        raise bad("model.window_pattern", f"needs one letter L or S per layer ({m.num_layers}), got {m.window_pattern!r}")
    if not 0 <= m.num_value_embeds <= m.num_layers // 2:
        raise bad("model.num_value_embeds", f"must be between 0 and num_layers/2 ({m.num_layers // 2}), got {m.num_value_embeds}")
    for layer in m.no_attention_layers:
        if not 0 <= layer < m.num_layers:
            raise bad("model.no_attention_layers", f"layer {layer} does not exist (0..{m.num_layers - 1})")
    if m.vocab_size > 65536 and d.corpus != "shards":
        raise bad("model.vocab_size", f"{m.vocab_size} does not fit uint16 token shards (max 65536)")
    if not 0 <= m.bos_id < m.vocab_size:
        raise bad("model.bos_id", f"must be a token id below vocab_size ({m.vocab_size}), got {m.bos_id}")
    for key, seq_len in [("train.train_seq_len", t.train_seq_len), ("train.val_seq_len", t.val_seq_len)]:
        if seq_len % m.attn_block_size:
            raise bad(key, f"must be a multiple of the attention block ({m.attn_block_size}), got {seq_len}",
                      hint=f"try {next_multiple_of_n(seq_len, n=m.attn_block_size)}")
    if t.batch_size % t.micro_batch_size:
        raise bad("train.batch_size", f"must be a multiple of micro_batch_size ({t.micro_batch_size}), got {t.batch_size}")
    if d.tokenizer == "bpe" and not 256 + 8 <= d.bpe_vocab_size <= 65535:
        raise bad("data.bpe_vocab_size", f"must be between 264 and 65535, got {d.bpe_vocab_size}")
    if d.corpus == "shards" and not d.train_files:
        raise bad("data.train_files", "is empty but data.corpus is 'shards'", hint="set it to a glob such as data/fineweb10B/fineweb_train_*.bin")


def _check_fields(hp: Hyperparameters, source: str) -> None:
    """Every int and float field (each item of a tuple) against its range in engine.limits.FIELD_LIMITS,
    every fixed-choice field against its Literal, and every string against the text policy (a --set
    value with undecodable bytes cannot be saved)."""
    fixed = choice_fields()
    for section in SECTIONS:
        values = getattr(hp, section)
        for key in _field_types(SECTIONS[section]):
            value, dotted = getattr(values, key), f"{section}.{key}"
            if isinstance(value, str) and (problem := text_problem(value)) is not None:
                raise ConfigError(f"{source}: {dotted} {problem}", hint="give the value as UTF-8 text")
            if dotted in fixed:
                check_choice(dotted, value, source)
            limit = FIELD_LIMITS.get(dotted)
            if limit is None:
                continue  # other strings and booleans: checked by name in validate
            for item in value if isinstance(value, tuple) else (value,):
                check_number(dotted, item, limit, source)


def load_toml(path: str | Path) -> Hyperparameters:
    """Read a config file; malformed TOML, unknown keys and wrong types raise ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}", hint="check quotes, brackets and '=' signs") from err
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config file", hint="check its brackets") from None
    return from_dict(data, source=str(path))


def dumps_toml(hp: Hyperparameters) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(hp))


def save_toml(hp: Hyperparameters, path: str | Path) -> None:
    from engine.atomic import atomic_write_text

    atomic_write_text(Path(path), dumps_toml(hp))


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split 'section.key=value' and parse the value as a TOML value (bare words become strings)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"bad override {text!r}", hint="write it as section.key=value, e.g. train.num_iterations=200")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = raw.strip()
    return section, key, value


def apply_overrides(hp: Hyperparameters, overrides: list[str]) -> Hyperparameters:
    """Apply `--set section.key=value` overrides with the same checks as a config file."""
    data: dict[str, Any] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        if section == "preset":
            raise ConfigError("the preset cannot be changed with --set", hint="use --preset NAME")
        data.setdefault(section, {})[key] = value
    return from_dict(data, source="--set", base=hp) if data else hp


GPT2_VOCAB_SIZE = 50257
GPT2_EOT_ID = 50256


def resolve_paths(hp: Hyperparameters, base: Path) -> Hyperparameters:
    """Make relative corpus and shard paths absolute: the training process runs in the run folder."""

    def absolute(value: str) -> str:
        return value if not value or Path(value).is_absolute() else str(base / value)

    d = hp.data
    corpus = d.corpus if d.corpus in ("shakespeare", "shards") else absolute(d.corpus)
    updated = dataclasses.replace(d, corpus=corpus, train_files=absolute(d.train_files), val_files=absolute(d.val_files))
    return hp if updated == d else dataclasses.replace(hp, data=updated)


def align_vocab(hp: Hyperparameters) -> Hyperparameters:
    """Make the model's vocabulary and document separator follow the tokenizer the data uses."""
    if hp.data.tokenizer == "bpe":
        vocab, bos = hp.data.bpe_vocab_size, 0  # trained BPE reserves id 0 for <|bos|>
    else:
        vocab, bos = GPT2_VOCAB_SIZE, GPT2_EOT_ID
    if (hp.model.vocab_size, hp.model.bos_id) == (vocab, bos):
        return hp
    return dataclasses.replace(hp, model=dataclasses.replace(hp.model, vocab_size=vocab, bos_id=bos))


def config_hash(hp: Hyperparameters) -> str:
    """Short stable hash of the model shape, used to refuse resuming into a different model."""
    text = json.dumps(to_dict(hp)["model"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
