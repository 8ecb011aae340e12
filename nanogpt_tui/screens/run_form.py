"""The new-run form's fields and checks, without Textual: text values in, config or reasons per field out."""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from engine.config import SECTIONS, Hyperparameters, align_vocab, apply_overrides
from engine.errors import ConfigError, EngineError
from engine.limits import OPTION_LIMITS
from engine.estimate import (
    Estimate,
    MemoryPerRank,
    estimate,
    memory_per_rank,
    training_seconds,
)
from engine.paths import validate_name
from nanogpt_tui import format as fmt

# keys of the form's own inputs that are not config keys
NAME, DATA_PATH, NPROC, NNODES, NODE_RANK, RDZV = "name", "data.path", "nproc", "nnodes", "node_rank", "rdzv_endpoint"
GENERAL = ""  # errors that belong to no single field
SOURCES = (("Shakespeare (built in)", "shakespeare"), ("Text file or folder", "text"), ("FineWeb shards", "shards"))
# the source name apply_overrides puts in front of its messages
OVERRIDE_SOURCE = "--set"


@dataclass(frozen=True, slots=True)
class FormField:
    """One config value the form edits: the dotted key, its label, its type and its group."""

    key: str
    label: str
    kind: type
    section: str


FIELDS = (
    FormField("model.num_layers", "Layers", int, "Model"),
    FormField("model.num_heads", "Heads", int, "Model"),
    FormField("model.head_dim", "Head dim", int, "Model"),
    FormField("model.model_dim", "Model dim", int, "Model"),
    FormField("model.window_pattern", "Windows (L/S)", str, "Model"),
    FormField("model.no_attention_layers", "No-attention layers", tuple, "Model"),
    FormField("model.num_value_embeds", "Value embeddings", int, "Model"),
    FormField("train.num_iterations", "Steps", int, "Training"),
    FormField("train.time_budget_s", "Time budget s", float, "Training"),
    FormField("train.batch_size", "Batch (sequences)", int, "Training"),
    FormField("train.micro_batch_size", "Micro-batch/rank", int, "Training"),
    FormField("train.train_seq_len", "Sequence length", int, "Training"),
    FormField("optim.muon_lr", "Muon lr", float, "Learning rates"),
    FormField("optim.adam_head_lr", "Adam head lr", float, "Learning rates"),
    FormField("optim.adam_embed_lr", "Adam embed lr", float, "Learning rates"),
    FormField("optim.adam_scalar_lr", "Adam scalar lr", float, "Learning rates"),
    FormField("run.val_every", "Validate every", int, "Intervals (steps, 0 = at the end)"),
    FormField("run.checkpoint_every", "Checkpoint every", int, "Intervals (steps, 0 = at the end)"),
    FormField("run.sample_every", "Sample every", int, "Intervals (steps, 0 = at the end)"),
)
FIELD_KEYS = frozenset(f.key for f in FIELDS)


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """Where and how the run starts, next to its config."""

    name: str | None
    nproc: int
    nnodes: int
    node_rank: int
    rdzv_endpoint: str | None


@dataclass(frozen=True, slots=True)
class FormCheck:
    """The outcome of checking the form: a launchable config, or reasons by field key."""

    errors: dict[str, str]
    hp: Hyperparameters | None = None
    plan: LaunchPlan | None = None
    estimate: Estimate | None = None
    memory: MemoryPerRank | None = None


def config_value(hp: Hyperparameters, key: str) -> str:
    """A config value as the form shows it (layer lists as "3, 7")."""
    section, name = key.split(".")
    value = getattr(getattr(hp, section), name)
    return ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def reason(error: EngineError, keep_key: bool = False) -> str:
    """The message without where it came from (and without its key unless keep_key), then the hint."""
    text = error.message.removeprefix(f"{OVERRIDE_SOURCE}: ")
    key = _config_key(error)
    if not keep_key and key:
        text = text.removeprefix(f"{key}: ")
    return f"{text} ({error.hint})" if error.hint else text


def _config_key(error: EngineError) -> str | None:
    """The config key a ConfigError is about (the error carries it), if it is one of the config's."""
    key = getattr(error, "key", None)
    return key if key and key.split(".")[0] in SECTIONS else None


def shard_files(pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.expanduser(pattern))) if pattern else []


def _typed(raw: str, kind: type) -> tuple[str | None, str]:
    """(TOML literal, reason); the literal is None when `raw` is not a `kind`."""
    if kind is str:
        return (json.dumps(raw), "") if raw else (None, "required")
    if kind is tuple:
        items = [item.strip() for item in raw.split(",") if item.strip()]
        if not all(item.isdigit() for item in items):
            return None, "layer numbers separated by commas"
        return f"[{', '.join(items)}]", ""
    try:
        number = kind(raw)
    except ValueError:
        return None, "must be a whole number" if kind is int else "must be a number"
    if kind is float and not math.isfinite(number):
        return None, "must be a finite number"
    return repr(number), ""


def _data_overrides(source: str, values: dict[str, str], errors: dict[str, str]) -> list[str]:
    if source == "shakespeare":
        return ['data.corpus="shakespeare"']
    if source == "text":
        raw = values.get(DATA_PATH, "")
        path = Path(raw).expanduser().resolve()
        if not raw:
            errors[DATA_PATH] = "required: a .txt file or a folder of .txt files"
        elif not path.exists():
            errors[DATA_PATH] = f"{path} does not exist"
        elif path.is_dir() and not any(path.rglob("*.txt")):
            errors[DATA_PATH] = "the folder has no .txt files"
        return [f"data.corpus={json.dumps(str(path))}"]
    overrides = ['data.corpus="shards"']
    for key in ("data.train_files", "data.val_files"):
        pattern = os.path.abspath(os.path.expanduser(values.get(key, "")))
        if not shard_files(pattern):
            errors[key] = "no .bin shards match (`nanogpt-tui data fineweb` downloads FineWeb's)"
        overrides.append(f"{key}={json.dumps(pattern)}")
    return overrides


def _plan(values: dict[str, str], existing: Collection[str], device_count: int | None, errors: dict[str, str]) -> LaunchPlan:
    name = values.get(NAME, "").strip() or None
    if name is not None:
        try:
            validate_name(name)
        except ConfigError as err:
            errors[NAME] = reason(err)
        if name in existing:
            errors[NAME] = "a run with this name exists"
    numbers = {}
    for key, option, fallback in ((NPROC, "nproc", 1), (NNODES, "nnodes", 1), (NODE_RANK, "node_rank", 0)):
        literal, why = _typed(values.get(key, ""), int)
        # the ranges of the command line's --nproc, --nnodes and --node-rank
        problem = why or (OPTION_LIMITS[option].problem(int(literal)) if literal is not None else None)
        if problem:
            errors[key] = problem
        numbers[key] = int(literal) if literal is not None and not problem else fallback
    if device_count is not None and numbers[NPROC] > device_count:
        errors[NPROC] = f"only {device_count} device(s) here"
    rdzv = values.get(RDZV, "").strip() or None
    if numbers[NNODES] > 1:
        if rdzv is None or not re.fullmatch(r"[\w.\-\[\]:]+:\d+", rdzv):
            errors[RDZV] = "HOST:PORT of the first node, needed for several nodes"
        if numbers[NODE_RANK] >= numbers[NNODES]:
            errors[NODE_RANK] = f"must be below the number of nodes ({numbers[NNODES]})"
    return LaunchPlan(name, numbers[NPROC], numbers[NNODES], numbers[NODE_RANK], rdzv)


def check_form(base: Hyperparameters, source: str, device: str, values: dict[str, str], *,
               existing: Collection[str] = (), device_count: int | None = None) -> FormCheck:
    """Check every value; field errors first, then the config's own validation, then the batch split."""
    errors: dict[str, str] = {}
    overrides = [f"run.device={json.dumps(device)}"]
    for field in FIELDS:
        literal, why = _typed(values.get(field.key, "").strip(), field.kind)
        if literal is None:
            errors[field.key] = why
        else:
            overrides.append(f"{field.key}={literal}")
    overrides += _data_overrides(source, values, errors)
    plan = _plan(values, existing, device_count, errors)
    if errors:
        return FormCheck(errors)
    try:
        # the model's vocabulary follows the tokenizer, as RunManager.create makes it
        hp = align_vocab(apply_overrides(base, overrides))
        ranks = plan.nproc * plan.nnodes
        est, memory = estimate(hp, ranks), memory_per_rank(hp, ranks)
    except ConfigError as err:
        key = _config_key(err)
        if key in FIELD_KEYS:
            return FormCheck({key: reason(err)})
        if key == "data.corpus":
            return FormCheck({DATA_PATH: reason(err)})
        return FormCheck({GENERAL: reason(err, keep_key=True)})
    return FormCheck({}, hp, plan, est, memory)


def summary(check: FormCheck, device: str | None, flops_per_s: float | None) -> str:
    """One line: parameters, tokens per step, memory per rank and, once measured, the time."""
    est, hp, plan, memory = check.estimate, check.hp, check.plan, check.memory
    if est is None or hp is None or plan is None or memory is None:
        return "Fix the marked fields to see the size of the model."
    parts = [
        f"{fmt.count(est.num_params)} parameters",
        f"{fmt.count(est.tokens_per_step)} tokens/step",
        f"{est.accum_steps} micro-batch(es)/rank/step",
        f"memory ≈ {fmt.size(memory.total)}/rank",
    ]
    if flops_per_s is None:
        parts.append("time: measuring…")
    else:
        devices = plan.nproc * plan.nnodes if device == "cuda" else 1
        seconds = training_seconds(est, hp, flops_per_s, devices)
        capped = " (time budget)" if hp.train.time_budget_s and seconds >= hp.train.time_budget_s else ""
        parts.append(f"≈ {fmt.duration(seconds)}{capped} on {device}")
    return " · ".join(parts)
