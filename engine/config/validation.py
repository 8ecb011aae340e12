"""What a configuration may hold: fixed choices from the Literal types, number ranges, cross-field rules."""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from engine.config.schema import SECTIONS, Hyperparameters, field_types, next_multiple_of_n
from engine.errors import ConfigError
from engine.limits import FIELD_LIMITS, check_number
from engine.text_input import text_problem


@functools.cache
def choice_fields() -> Mapping[str, tuple[str, ...]]:
    """Every fixed-choice field's dotted key and its choices, in the order its Literal lists them."""
    return MappingProxyType({f"{section}.{key}": typing.get_args(expected)
                             for section, cls in SECTIONS.items() for key, expected in field_types(cls).items()
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
        for key in field_types(SECTIONS[section]):
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
