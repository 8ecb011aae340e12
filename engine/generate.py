"""Streaming generation: one model held in the process, a KV cache, sampling parameters, cancel.

`Generator.generate` yields one `TokenChunk` per sampled token. Text is decoded incrementally from
the tokens' UTF-8 bytes, so a character split across tokens is emitted whole once complete, and text
that could be the start of a stop string is held back until it is clear it is not. Cancelling
(a `threading.Event`) stops before the next token and ends the stream with the partial text intact.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from engine.errors import ConfigError, DeviceError
from engine.kv_cache import KVCache

if TYPE_CHECKING:
    from engine.model import GPT

# finish reasons of the last chunk of a sample
STOP_TOKEN, STOP_STRING, LENGTH, CANCELLED = "stop_token", "stop_string", "length", "cancelled"
# when the context outgrows the cache, keep this fraction of it (newest tokens) and re-prefill
SLIDE_KEEP_FRACTION = 0.75


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens. temperature 0 = greedy; top_k 0 and top_p 1 = no filtering."""

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    stop_strings: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    # > 1 makes tokens already in the context less likely (CTRL-style: positive logits divided)
    repetition_penalty: float = 1.0

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}", hint="0 means greedy")
        if self.top_k < 0:
            raise ConfigError(f"top-k must be >= 0, got {self.top_k}", hint="0 turns top-k filtering off")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top-p must be in (0, 1], got {self.top_p}", hint="1 turns nucleus filtering off")
        if self.max_new_tokens < 0:
            raise ConfigError(f"max new tokens must be >= 0, got {self.max_new_tokens}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition penalty must be > 0, got {self.repetition_penalty}", hint="1 = no penalty")
        if any(not stop for stop in self.stop_strings):
            raise ConfigError("a stop string is empty", hint="remove it, or give at least one character")


@dataclass(frozen=True, slots=True)
class TokenChunk:
    """New text of one sample. The last chunk of each sample has finish_reason set."""

    text: str  # text since the previous chunk ("" while a split character or a possible stop string is held back)
    token_id: int | None  # the sampled token; None when the chunk only ends the sample (length reached, cancel)
    sample: int = 0  # row of the batch this chunk belongs to
    finish_reason: str | None = None  # stop_token | stop_string | length | cancelled


def auto_device(spec: str = "auto") -> torch.device:
    """cuda, then mps, then cpu for "auto"; an explicit device is checked to exist."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec not in ("cpu", "cuda", "mps") and not spec.startswith("cuda:"):
        raise DeviceError(f"unknown device {spec!r}", hint="use auto, cpu, cuda or mps")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("no CUDA GPU is available", hint="use --device cpu or auto")
    if spec == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("Apple's MPS backend is not available", hint="use --device cpu or auto")
    return torch.device(spec)


def auto_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (the speedrun's inference dtype), fp32 elsewhere (CPU bf16 matmuls are slow)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def filter_logits(logits: Tensor, params: SamplingParams, context: Tensor | None = None) -> Tensor:
    """Scaled and filtered logits (B, V); -inf marks tokens that cannot be sampled. temperature must be > 0."""
    logits = logits.float().clone()
    if params.repetition_penalty != 1.0 and context is not None:
        seen = logits.gather(1, context)  # (B, T): the logits of tokens already in each row's context
        penalised = torch.where(seen > 0, seen / params.repetition_penalty, seen * params.repetition_penalty)
        logits.scatter_(1, context, penalised)
    if params.temperature == 0:
        return logits
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.size(-1):
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p; the first token always stays
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= params.top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, -float("inf"))
    return logits


def sample_next(logits: Tensor, params: SamplingParams, generator: torch.Generator,
                context: Tensor | None = None) -> Tensor:
    """Next token ids (B,) from logits (B, V); greedy at temperature 0, else seeded multinomial."""
    filtered = filter_logits(logits, params, context)
    if params.temperature == 0:
        return filtered.argmax(dim=-1)
    probs = torch.softmax(filtered, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class TextStream:
    """Turns one sample's token ids into text chunks: UTF-8 safe, holding back possible stop strings."""

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = tuple(stop_strings)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.emitted = 0  # characters of self.text already handed out

    def push(self, token_id: int) -> tuple[str, bool]:
        """(text that is now safe to show, whether a stop string was completed); after a stop, text ends before it."""
        self.text += self.decoder.decode(self.tokenizer.decode_bytes([token_id]))
        # a stop string cannot start before `emitted`: a text that might begin one is never emitted
        hits = [index for stop in self.stop_strings if (index := self.text.find(stop, self.emitted)) >= 0]
        if hits:
            self.text = self.text[:min(hits)]
            return self._take(len(self.text)), True
        return self._take(len(self.text) - self._held_back()), False

    def flush(self) -> str:
        """Everything not yet shown (an incomplete character becomes U+FFFD)."""
        self.text += self.decoder.decode(b"", final=True)
        return self._take(len(self.text))

    def _held_back(self) -> int:
        """Length of the longest unshown suffix of the text that begins some stop string."""
        tail = self.text[self.emitted:]
        for length in range(min(len(tail), max((len(s) for s in self.stop_strings), default=0)), 0, -1):
            if any(stop.startswith(tail[-length:]) for stop in self.stop_strings):
                return length
        return 0

    def _take(self, end: int) -> str:
        piece = self.text[self.emitted:end]
        self.emitted = max(self.emitted, end)
        return piece


class Generator:
    """A model and its tokenizer on one device, ready to stream completions.

    One generation runs at a time: starting one (from any thread) supersedes a generation still
    streaming, which then ends with finish_reason "cancelled" before its next forward pass.
    """

    def __init__(self, model: GPT, tokenizer: Any, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, max_context: int = 1024, use_cache: bool = True) -> None:
        """max_context: tokens the cache holds; a longer context slides (the newest part is re-prefilled)."""
        if max_context < 2:
            raise ConfigError(f"the context must hold at least 2 tokens, got {max_context}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.dtype = dtype if dtype is not None else next(model.parameters()).dtype
        self.model = model
        self.tokenizer = tokenizer
        self.config = model.config
        self.max_context = max_context
        self.use_cache = use_cache
        self.vocab_size = min(tokenizer.vocab_size, self.config.vocab_size)
        self._cache: KVCache | None = None
        self._cached_tokens: list[int] = []  # what the single-row cache holds, for prefix reuse
        self._lock = threading.Lock()  # one forward pass at a time on the shared cache
        self._current: object | None = None  # the generation allowed to use the cache

    @classmethod
    def from_checkpoint(cls, loaded: Any, *, device: str = "auto", tokenizer: Any = None,
                        max_context: int | None = None, use_cache: bool = True) -> Generator:
        """A generator for a `LoadedCheckpoint` (engine.importer) on the automatic or given device."""
        from engine.data.tokenizer import tokenizer_from_payload

        target = auto_device(device)
        dtype = auto_dtype(target)
        model = loaded.model.to(device=target, dtype=dtype)
        # dense masks serve any length; FlexAttention would recompile for every uncached step
        model.attention_backend = "sdpa"
        model.eval()
        tokenizer = tokenizer if tokenizer is not None else tokenizer_from_payload(loaded.tokenizer_payload)
        return cls(model, tokenizer, device=target, dtype=dtype, use_cache=use_cache,
                   max_context=max_context if max_context is not None else loaded.context_length)

    def reset(self) -> None:
        """Forget the cached prefix, so the next generation prefills its whole prompt."""
        with self._lock:
            self._cached_tokens = []
            if self._cache is not None:
                self._cache.reset()

    def encode_prompt(self, text: str) -> list[int]:
        """BOS followed by the text's tokens: a prompt that starts a document, as in training."""
        return [self.tokenizer.bos_id, *self.tokenizer.encode(text)]

    def generate(self, prompt_tokens: Sequence[int], params: SamplingParams,
                 cancel: threading.Event | None = None) -> Iterator[TokenChunk]:
        """Stream the completion of one prompt (token ids, usually starting with BOS)."""
        return self.generate_batch([prompt_tokens], params, cancel)

    def complete(self, prompt: str, params: SamplingParams, cancel: threading.Event | None = None) -> str:
        """The whole completion text of a text prompt (BOS is prepended)."""
        return "".join(chunk.text for chunk in self.generate(self.encode_prompt(prompt), params, cancel))

    def generate_batch(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                       cancel: threading.Event | None = None) -> Iterator[TokenChunk]:
        """Stream several completions at once; chunks of the rows interleave, `sample` says whose.

        Every row starts at position 0, exactly as if generated alone: the shared part of the
        prompts' lengths is prefilled at once, then a shorter row starts sampling while the longer
        ones are still fed their remaining prompt tokens, one per step.
        """
        params.validate()
        rows = [list(prompt) or [self.tokenizer.bos_id] for prompt in prompts]
        for row in rows:
            bad = next((t for t in row if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise ConfigError(f"prompt token {bad} is outside the model's vocabulary (0..{self.vocab_size - 1})")
        stop_ids = {*params.stop_token_ids, self.tokenizer.bos_id}  # BOS means the document ended
        streams = [TextStream(self.tokenizer, params.stop_strings) for _ in rows]
        active = list(range(len(rows)))
        if not rows:
            return
        if params.max_new_tokens == 0 or (cancel is not None and cancel.is_set()):
            yield from self._finish_all(streams, active, LENGTH if params.max_new_tokens == 0 else CANCELLED)
            return
        generator = torch.Generator(device=self.device).manual_seed(params.seed)
        lengths = [len(row) for row in rows]
        width = max(lengths)
        with torch.inference_mode():
            # right-padded prompts (B, width); padding is never fed, only rows' own tokens are
            padded = torch.tensor([row + [self.tokenizer.bos_id] * (width - len(row)) for row in rows],
                                  dtype=torch.int64, device=self.device)
            position = min(lengths)  # tokens of each sequence consumed so far
            context = padded[:, :position]  # (B, position)
            ticket = object()
            with self._lock:
                self._current = ticket
                logits = self._prefill(context)
            produced = [0] * len(rows)
            while True:
                next_ids = sample_next(logits, params, generator, context)  # (B,)
                chosen = next_ids.tolist()
                for sample in list(active):
                    if position < lengths[sample]:
                        continue  # still reading its prompt
                    token = chosen[sample]
                    produced[sample] += 1
                    if token in stop_ids:
                        active.remove(sample)
                        yield TokenChunk(streams[sample].flush(), token, sample, STOP_TOKEN)
                        continue
                    text, stopped = streams[sample].push(token)
                    if stopped or produced[sample] == params.max_new_tokens:
                        active.remove(sample)
                        if not stopped:
                            text += streams[sample].flush()
                        yield TokenChunk(text, token, sample, STOP_STRING if stopped else LENGTH)
                    else:
                        yield TokenChunk(text, token, sample)
                if not active:
                    return
                if cancel is not None and cancel.is_set():
                    yield from self._finish_all(streams, active, CANCELLED)
                    return
                if position < width:
                    reading = torch.tensor([position < length for length in lengths], device=self.device)
                    next_ids = torch.where(reading, padded[:, position], next_ids)
                # finished rows keep decoding a BOS (a new empty document) so the batch stays rectangular
                next_ids[[row for row in range(len(rows)) if row not in active]] = self.tokenizer.bos_id
                with self._lock:
                    superseded = self._current is not ticket
                    if not superseded:
                        context, logits = self._step(context, next_ids)
                if superseded:
                    yield from self._finish_all(streams, active, CANCELLED)
                    return
                position += 1

    @staticmethod
    def _finish_all(streams: list[TextStream], active: list[int], reason: str) -> Iterator[TokenChunk]:
        for sample in active:
            yield TokenChunk(streams[sample].flush(), None, sample, reason)

    def _prefill(self, context: Tensor) -> Tensor:
        """Logits (B, V) after the context (B, T); fills the cache, reusing a shared single-row prefix."""
        if context.size(1) > self.max_context:
            context = self._slid(context)
        if not self.use_cache:
            return self._uncached_logits(context)
        cache = self._cache
        if cache is None or cache.batch_size != context.size(0) or cache.max_len != self.max_context:
            cache = self._cache = KVCache.allocate(self.config, context.size(0), self.max_context,
                                                   device=self.device, dtype=self.dtype)
            self._cached_tokens = []
        # a chat turn re-sends the conversation: keep the cached positions it shares, feed the rest
        # (at least one token is fed, for its logits); batches start afresh
        tokens = context[0].tolist() if context.size(0) == 1 else []
        shared = _common_prefix(self._cached_tokens, tokens, limit=len(tokens) - 1)
        cache.crop(shared)
        self._cached_tokens = tokens[:shared]  # stays true if the forward pass below fails
        logits = self.model.forward_cached(context[:, shared:], cache)[:, -1, :self.vocab_size]
        self._cached_tokens = tokens
        return logits

    def _step(self, context: Tensor, next_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Append next_ids (B,) to the context; returns the new context and the logits after it."""
        context = torch.cat([context, next_ids[:, None]], dim=1)  # (B, T + 1)
        if context.size(1) > self.max_context:
            context = self._slid(context)
            return context, self._prefill(context)
        if not self.use_cache:
            return context, self._uncached_logits(context)
        assert self._cache is not None, "decoding a step before prefill"
        logits = self.model.forward_cached(next_ids[:, None], self._cache)[:, -1, :self.vocab_size]
        if context.size(0) == 1:
            self._cached_tokens.append(int(next_ids[0]))
        return context, logits

    def _slid(self, context: Tensor) -> Tensor:
        """BOS plus the newest tokens of the context, short enough to leave room to generate."""
        keep = max(1, int(self.max_context * SLIDE_KEEP_FRACTION) - 1)
        bos = torch.full_like(context[:, :1], self.tokenizer.bos_id)
        return torch.cat([bos, context[:, -keep:]], dim=1)  # (B, keep + 1)

    def _uncached_logits(self, context: Tensor) -> Tensor:
        return self.model(context)[:, -1, :self.vocab_size]  # the whole context again, as the seed does


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    length = 0
    for x, y in zip(a, b):
        if length >= limit or x != y:
            break
        length += 1
    return length
