"""A tiktoken encoding (GPT-2's) as a Hugging Face `tokenizer.json`, so exported GPT-2 models carry their tokenizer.

tiktoken keeps only ranks: token bytes -> id, where merging the lowest-ranked adjacent pair first
reproduces the encoding. A byte-level BPE in `tokenizers` needs the vocabulary in GPT-2's printable
byte alphabet and the merges in rank order; each token's merge is recovered by running the same
lowest-rank-first merging on its bytes with only the ranks below its own, which ends in two parts.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _byte_alphabet() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte (the inverse of engine.data.tokenizer's decoder table)."""
    from engine.data.tokenizer import _byte_decoder

    return {byte: char for char, byte in _byte_decoder().items()}


def _printable(token: bytes) -> str:
    alphabet = _byte_alphabet()
    return "".join(alphabet[byte] for byte in token)


def _last_merge(ranks: dict[bytes, int], token: bytes) -> tuple[bytes, bytes]:
    """The two parts that BPE, using only ranks below the token's own, merges last into `token`."""
    limit = ranks[token]
    parts = [bytes([byte]) for byte in token]
    while len(parts) > 2:
        best = None
        for index in range(len(parts) - 1):
            rank = ranks.get(parts[index] + parts[index + 1])
            if rank is not None and rank < limit and (best is None or rank < best[0]):
                best = (rank, index)
        if best is None:
            break
        index = best[1]
        parts[index:index + 2] = [parts[index] + parts[index + 1]]
    assert len(parts) == 2, f"token {token!r} is not the merge of two lower-ranked tokens"
    return parts[0], parts[1]


def tokenizer_json(encoding: Any, bos: str) -> str:
    """`tokenizer.json` text equal in ids to `encoding` (a tiktoken.Encoding), with `bos` put before every text."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    ranks: dict[bytes, int] = encoding._mergeable_ranks  # tiktoken exposes no public accessor for these
    specials = sorted(encoding._special_tokens.items(), key=lambda item: item[1])
    # special tokens sit in the vocabulary at their own ids, so marking them special keeps those ids
    vocab = {**{_printable(token): rank for token, rank in ranks.items()}, **dict(specials)}
    merges = [tuple(_printable(part) for part in _last_merge(ranks, token))
              for token, _ in sorted(ranks.items(), key=lambda item: item[1]) if len(token) > 1]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(encoding._pat_str), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([name for name, _ in specials])
    for name, index in specials:
        assert tokenizer.token_to_id(name) == index, f"special token {name} landed at another id"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, encoding._special_tokens[bos])])
    return tokenizer.to_str()
