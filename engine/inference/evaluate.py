"""Validation loss and bits per byte, and samples; the same numbers for pretraining, fine-tuning and `eval`.

Bits per byte = total cross-entropy in nats over the targets / (ln 2 x the targets' UTF-8 bytes),
so models with different vocabularies compare fairly.
"""

from __future__ import annotations

import glob
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from engine.errors import DataError
from engine.limits import OPTION_LIMITS, check_number
from engine.text_input import decode_utf8
from engine.train.distributed import DistContext, all_reduce_sum

if TYPE_CHECKING:
    from engine.model import GPT


@dataclass(frozen=True)
class LossResult:
    loss: float  # mean nats per token
    bpb: float  # bits per UTF-8 byte
    tokens: int
    bytes: int


def loss_and_bpb(total_nats: float, total_tokens: int, total_bytes: int) -> LossResult:
    loss = total_nats / max(total_tokens, 1)
    bpb = total_nats / (math.log(2) * total_bytes) if total_bytes else float("nan")
    return LossResult(loss, bpb, total_tokens, total_bytes)


# one batch to score: inputs and targets (B, T) on the model's device, and a loss mask (B, T) or None
Batch = tuple[Tensor, Tensor, Tensor | None]


@torch.inference_mode()
def evaluate_batches(model: Callable[..., Tensor], batches: Iterable[Batch], token_bytes: Tensor, *,
                     window_blocks: int | Tensor | None = None, ctx: DistContext | None = None,
                     cancel: threading.Event | None = None) -> LossResult:
    """The one validation loop: summed loss, tokens and UTF-8 bytes over `batches`, added up over the ranks.

    `model` is the GPT (or the module the training steps call) and is called with reduction="sum";
    with a loss mask only its True targets count. token_bytes: (V,) byte length per token id.
    A set `cancel` (single process only) stops early: the result covers the batches done so far.
    """
    module = model if isinstance(model, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    total_nats = total_bytes = total_tokens = 0.0
    try:
        for inputs, targets, mask in batches:
            if cancel is not None and cancel.is_set():
                break
            extra = {} if mask is None else {"loss_mask": mask}
            total_nats += float(model(inputs, targets, window_blocks, reduction="sum", **extra))
            counted = targets if mask is None else targets[mask]  # the target ids the loss covers
            token_bytes = token_bytes.to(counted.device)  # moved once: a no-op from the second batch on
            total_tokens += counted.numel()
            total_bytes += float(token_bytes[counted].sum())
    finally:
        if module is not None:
            module.train(was_training)
    if ctx is not None:
        total_nats, total_tokens, total_bytes = all_reduce_sum([total_nats, total_tokens, total_bytes], ctx)
    return loss_and_bpb(total_nats, int(total_tokens), int(total_bytes))


def evaluate_tokens(
    model: torch.nn.Module,
    tokens: Tensor,
    seq_len: int,
    token_bytes: Tensor,
    *,
    batch_size: int = 1,
    window_blocks: int | Tensor | None = None,
    max_tokens: int = 0,
    ctx: DistContext | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
) -> LossResult:
    """Summed loss over `tokens` (1-D) cut into rows of seq_len; rows are split across ranks.

    Targets that are special tokens count 0 bytes (token_bytes). `progress` gets the fraction done.
    """
    usable = tokens.numel() - 1
    if max_tokens:
        usable = min(usable, max_tokens)
    num_rows = usable // seq_len
    if num_rows == 0:
        # a short text: evaluate it as one row, which the model accepts when padded to a block
        num_rows, seq_len = 1, usable
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    my_rows = list(range(rank, num_rows, world))

    def batches() -> Iterator[Batch]:
        for start in range(0, len(my_rows), batch_size):
            rows = my_rows[start:start + batch_size]
            inputs = torch.stack([tokens[r * seq_len:(r + 1) * seq_len] for r in rows])  # (B, T)
            targets = torch.stack([tokens[r * seq_len + 1:(r + 1) * seq_len + 1] for r in rows])  # (B, T)
            yield inputs.to(device, torch.int64), targets.to(device, torch.int64), None
            # resumed once the batch is scored
            if progress is not None:
                progress(min(1.0, (start + len(rows)) / max(len(my_rows), 1)))

    return evaluate_batches(model, batches(), token_bytes, window_blocks=window_blocks, ctx=ctx, cancel=cancel)


# --------------------------------------------------------------------------- checkpoints on any data

# rows longer than this make the dense CPU attention mask and scores needlessly large
MAX_EVAL_SEQ_LEN = 2048


@dataclass(frozen=True)
class EvalData:
    """Tokens to evaluate on (1-D, documents each starting with BOS) and where they came from."""

    tokens: Tensor
    description: str


@dataclass(frozen=True)
class EvalReport:
    loss: float
    bpb: float
    tokens: int
    bytes: int
    seq_len: int
    data: str
    seconds: float
    cancelled: bool = False  # stopped early: the figures cover the part evaluated


@dataclass(frozen=True)
class Sample:
    prompt: str
    text: str
    finish_reason: str


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    return decode_utf8(raw, str(path), hint="evaluate on UTF-8 text, .bin shards, or the run's own held-out split"
                       ).replace("\r\n", "\n")


def _documents_tokens(tokenizer, documents: list[str]) -> Tensor:
    from engine.data.tokenizer import encode_documents

    return torch.tensor(encode_documents(tokenizer, documents), dtype=torch.int64)


def eval_data(spec: str | None, tokenizer, hyperparameters: dict[str, Any] | None) -> EvalData:
    """The tokens behind `spec`: None = the checkpoint's own held-out split; a .bin shard, a glob of
    shards, a folder of shards, a text file, a folder of .txt files, or "shakespeare" (its held-out split)."""
    from engine.data.corpus import SHAKESPEARE, load_corpus, split_train_val
    from engine.data.shards import _load_data_shard

    data_config = (hyperparameters or {}).get("data") or {}
    if spec is None:
        corpus = data_config.get("corpus")
        if not corpus:
            raise DataError("this checkpoint does not say which data it was trained on",
                            hint="pass --data: a text file, .bin shards, or 'shakespeare'")
        if corpus == "shards":
            spec = data_config.get("val_files") or ""
            if not spec:
                raise DataError("the run has no validation shards (data.val_files)", hint="pass --data")
        else:
            fraction = float(data_config.get("val_fraction", 0.1))
            _, val = split_train_val(load_corpus(corpus), fraction)
            return EvalData(_documents_tokens(tokenizer, val), f"held-out {fraction:.0%} of {corpus}")
    if spec == SHAKESPEARE:
        fraction = float(data_config.get("val_fraction", 0.1))
        _, val = split_train_val(load_corpus(SHAKESPEARE), fraction)
        return EvalData(_documents_tokens(tokenizer, val), f"held-out {fraction:.0%} of the embedded Shakespeare")
    path = Path(spec).expanduser()
    shard_files = sorted(path.glob("*.bin")) if path.is_dir() else (
        [path] if path.suffix == ".bin" and path.is_file() else [Path(f) for f in sorted(glob.glob(str(path)))])
    if shard_files and all(f.suffix == ".bin" for f in shard_files):
        tokens = torch.cat([_load_data_shard(f).to(torch.int64) for f in shard_files])
        return EvalData(tokens, f"{len(shard_files)} shard(s) {spec}")
    if path.is_file():
        return EvalData(_documents_tokens(tokenizer, [_read_text(path)]), str(path))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{path} holds neither .bin shards nor .txt files")
        return EvalData(_documents_tokens(tokenizer, [_read_text(f) for f in files]), f"{len(files)} text file(s) in {path}")
    raise DataError(f"evaluation data {spec!r} does not exist",
                    hint="give a text file, a folder, .bin shards (a glob is fine) or 'shakespeare'")


def evaluate_model(model: GPT, tokenizer: Any, data: EvalData, *, seq_len: int, batch_size: int = 1,
                   max_tokens: int = 0, device: torch.device | str = "cpu",
                   progress: Callable[[float], None] | None = None,
                   cancel: threading.Event | None = None) -> EvalReport:
    """Val loss and bits per byte of `model` on `data`; progress gets the fraction done (0..1)."""
    from engine.data.prepare import token_byte_lengths

    check_number("max eval tokens", max_tokens, OPTION_LIMITS["max_eval_tokens"])
    check_number("rows per batch", batch_size, OPTION_LIMITS["batch_size"])
    check_number("row length", seq_len, OPTION_LIMITS["seq_len"])
    if data.tokens.numel() < 2:
        raise DataError(f"{data.description} has fewer than 2 tokens: nothing to evaluate")
    vocab = model.config.vocab_size
    if int(data.tokens.max()) >= vocab:
        raise DataError(f"{data.description} has token ids up to {int(data.tokens.max())}, "
                        f"beyond the model's vocabulary of {vocab}", hint="it was tokenised for another model")
    token_bytes = torch.tensor(token_byte_lengths(tokenizer) + [0] * max(0, vocab - tokenizer.vocab_size),
                               dtype=torch.float64)
    started = time.perf_counter()
    result = evaluate_tokens(model, data.tokens, seq_len, token_bytes, batch_size=batch_size,
                             max_tokens=max_tokens, device=device, progress=progress, cancel=cancel)
    if result.tokens == 0 and not (cancel is not None and cancel.is_set()):
        raise DataError(f"no token of {data.description} was evaluated", hint="evaluate at least one row of tokens")
    return EvalReport(result.loss, result.bpb, result.tokens, result.bytes, min(seq_len, data.tokens.numel() - 1),
                      data.description, time.perf_counter() - started, cancelled=cancel is not None and cancel.is_set())


def default_eval_seq_len(hyperparameters: dict[str, Any] | None, context_length: int) -> int:
    """The run's validation row length when known, else the generation context; capped for CPU memory."""
    train = (hyperparameters or {}).get("train") or {}
    val_seq_len = train.get("val_seq_len")
    seq_len = val_seq_len if isinstance(val_seq_len, int) else context_length
    return max(2, min(seq_len, MAX_EVAL_SEQ_LEN))


def generate_samples(generator, prompts: list[str], params, cancel: threading.Event | None = None) -> list[Sample]:
    """One completion per prompt, generated as one batch (engine.inference.generate.Generator, SamplingParams)."""
    pieces: list[list[str]] = [[] for _ in prompts]
    reasons = [""] * len(prompts)
    encoded = [generator.encode_prompt(prompt) for prompt in prompts]
    for chunk in generator.generate_batch(encoded, params, cancel):
        pieces[chunk.sample].append(chunk.text)
        if chunk.finish_reason is not None:
            reasons[chunk.sample] = chunk.finish_reason
    return [Sample(prompt, "".join(parts), reason) for prompt, parts, reason in zip(prompts, pieces, reasons)]
