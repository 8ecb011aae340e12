"""Tokenizers behind one interface: a byte-level BPE trained on the corpus, or tiktoken's GPT-2.

Both encode any string and decode it back exactly. Encoding text never yields a special token,
even for text that spells one ("<|bos|>"): special tokens are placed by code (BOS before every
document, the chat template's role markers), never by what a user types.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import tiktoken
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from engine import paths
from engine.atomic import atomic_write_text
from engine.config import DataConfig, check_choice
from engine.data.corpus import corpus_hash
from engine.errors import ConfigError, DataError
from engine.text_input import check_text

logger = logging.getLogger(__name__)

BOS = "<|bos|>"
USER_START = "<|user_start|>"
USER_END = "<|user_end|>"
ASSISTANT_START = "<|assistant_start|>"
ASSISTANT_END = "<|assistant_end|>"
SYSTEM_START = "<|system_start|>"
SYSTEM_END = "<|system_end|>"
PAD = "<|pad|>"
# a trained BPE has these at ids 0..7, so its bos_id is 0
SPECIAL_TOKENS: tuple[str, ...] = (
    BOS, USER_START, USER_END, ASSISTANT_START, ASSISTANT_END, SYSTEM_START, SYSTEM_END, PAD
)
GPT2_EOT = "<|endoftext|>"

# GPT-4's split pattern with numbers in runs of up to three digits, as in nanochat
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
# bump when the training recipe changes, so cached tokenizers from the old recipe are not reused
BPE_RECIPE_VERSION = 1
BPE_FILE = "tokenizer.json"
GPT2_FILE = "gpt2.json"
# no piece of SPLIT_PATTERN spans a newline followed by a non-space character, so a long text
# cut there encodes to exactly the same ids; `tokenizers` encodes one huge string much more
# slowly than many ~4 KB ones (which it also spreads over the cores)
_LINE_BREAK_RE = re.compile(r"\n(?=\S)")
_CHUNK_CHARS = 4096


@runtime_checkable
class Tokenizer(Protocol):
    """What training, evaluation and chat need from a tokenizer."""

    kind: str  # "bpe" | "gpt2"
    vocab_size: int
    bos_id: int  # the document separator
    special_tokens: dict[str, int]
    identifier: str  # stable across save/load; part of cache keys and checkpoint metadata

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added or recognised."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids; bytes that are not valid UTF-8 become U+FFFD."""
        ...

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Raw UTF-8 bytes of the ids, so a streaming decoder can hold back a split character."""
        ...

    def to_payload(self) -> dict[str, str]:
        """JSON-able description stored in checkpoints; `tokenizer_from_payload` inverts it."""
        ...

    def save(self, directory: Path) -> None:
        """Write the tokenizer into `directory`; `load_tokenizer` reads it back."""
        ...


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet inverted: each of the 256 printable stand-ins to its byte."""
    # printable Latin-1 bytes stand for themselves; the others (spaces, controls) move to 256 and up
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    code_point = {byte: byte for byte in printable}
    for byte in range(256):
        if byte not in code_point:
            code_point[byte] = 256 + len(code_point) - len(printable)
    return {chr(code): byte for byte, code in code_point.items()}


def _new_bpe() -> HFTokenizer:
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


@functools.cache
def _our_pre_tokenizer_json() -> str:
    return json.dumps(json.loads(_new_bpe().to_str())["pre_tokenizer"], sort_keys=True)


def _chunks(text: str) -> list[str]:
    """`text` cut into pieces of about _CHUNK_CHARS, each ending with a newline followed by a non-space."""
    pieces: list[str] = []
    start = 0
    while match := _LINE_BREAK_RE.search(text, start + _CHUNK_CHARS):
        pieces.append(text[start : match.end()])
        start = match.end()
    pieces.append(text[start:])
    return pieces


# a 64K-token BPE is ~5 MB of JSON; anything far larger is damaged or hostile
MAX_TOKENIZER_CHARS = 64_000_000
MAX_VOCAB_SIZE = 65535


class BPETokenizer:
    """A byte-level BPE (HF `tokenizers`) with SPECIAL_TOKENS at ids 0..7; no unknown token."""

    kind = "bpe"

    def __init__(self, json_text: str) -> None:
        if len(json_text) > MAX_TOKENIZER_CHARS:
            raise DataError(
                f"the BPE tokenizer JSON is {len(json_text) / 1e6:.0f} MB, more than any real tokenizer needs",
                hint="refusing to load it; retrain the tokenizer",
            )
        try:
            tokenizer = HFTokenizer.from_str(json_text)
        except Exception as err:  # tokenizers raises a bare Exception for any malformed JSON
            raise DataError(
                f"the BPE tokenizer JSON is malformed: {err}", hint="retrain it, or use the run's own tokenizer/ folder"
            ) from err
        for index, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != index:
                raise DataError(
                    f"the BPE tokenizer does not have {token} at id {index}",
                    hint="only tokenizers trained by nanogpt-tui can be loaded",
                )
        if tokenizer.get_vocab_size() > MAX_VOCAB_SIZE:
            raise DataError(
                f"the BPE tokenizer has {tokenizer.get_vocab_size()} tokens, more than uint16 shards hold ({MAX_VOCAB_SIZE})",
                hint="retrain it with data.bpe_vocab_size of at most 65535",
            )
        # make text that spells "<|bos|>" encode as ordinary characters, never the special id
        tokenizer.encode_special_tokens = True
        self._tokenizer = tokenizer
        self._json = json_text
        self.vocab_size: int = tokenizer.get_vocab_size()
        self.bos_id: int = 0
        self.special_tokens: dict[str, int] = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
        self.identifier: str = "bpe-" + hashlib.sha256(json_text.encode("utf-8")).hexdigest()[:16]
        self._token_bytes = self._build_token_bytes()
        pre_tokenizer = json.loads(json_text).get("pre_tokenizer")
        self._can_chunk = json.dumps(pre_tokenizer, sort_keys=True) == _our_pre_tokenizer_json()

    def _build_token_bytes(self) -> list[bytes]:
        decoder = _byte_decoder()
        table = [b""] * self.vocab_size
        for token, index in self._tokenizer.get_vocab(with_added_tokens=True).items():
            if index in self.special_tokens.values():
                table[index] = token.encode("utf-8")
                continue
            try:
                table[index] = bytes(decoder[char] for char in token)
            except KeyError as err:
                raise DataError(
                    f"token {index} ({token!r}) is not byte-level",
                    hint="only tokenizers trained by nanogpt-tui can be loaded",
                ) from err
        return table

    def encode(self, text: str) -> list[int]:
        text = check_text(text, "the text to encode")
        if self._can_chunk and len(text) > 2 * _CHUNK_CHARS:
            encodings = self._tokenizer.encode_batch(_chunks(text), add_special_tokens=False)
            return [token for encoding in encodings for token in encoding.ids]
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        try:
            return b"".join(self._token_bytes[index] for index in ids)
        except IndexError:
            bad = next(index for index in ids if not 0 <= index < self.vocab_size)
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})") from None

    def decode(self, ids: Sequence[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_payload(self) -> dict[str, str]:
        return {"kind": "bpe", "json": self._json}

    def save(self, directory: Path) -> None:
        atomic_write_text(Path(directory) / BPE_FILE, self._json)


class GPT2Tokenizer:
    """tiktoken's GPT-2 encoding; `<|endoftext|>` (50256) is the document separator."""

    kind = "gpt2"

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding
        self.vocab_size: int = encoding.n_vocab
        self.bos_id: int = encoding.eot_token
        self.special_tokens: dict[str, int] = {GPT2_EOT: encoding.eot_token}
        self.identifier: str = "gpt2"

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(check_text(text, "the text to encode"))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self._encoding.decode_bytes(list(ids))

    def decode(self, ids: Sequence[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_payload(self) -> dict[str, str]:
        return {"kind": "gpt2"}

    def save(self, directory: Path) -> None:
        atomic_write_text(Path(directory) / GPT2_FILE, json.dumps(self.to_payload()) + "\n")


def gpt2_tokenizer() -> GPT2Tokenizer:
    """The GPT-2 tokenizer; tiktoken downloads its files on first use and caches them."""
    try:
        encoding = tiktoken.get_encoding("gpt2")
    except (OSError, ValueError, ImportError) as err:  # requests' errors are OSErrors; ValueError: bad hash
        raise DataError(
            f"the GPT-2 tokenizer could not be loaded: {err} (it is downloaded on first use)",
            hint="connect to the internet once, or set TIKTOKEN_CACHE_DIR to a folder holding the cached file, "
            "or use the trained 'bpe' tokenizer",
        ) from err
    return GPT2Tokenizer(encoding)


def train_bpe(documents: Sequence[str], vocab_size: int) -> BPETokenizer:
    """Train a byte-level BPE on the documents; the vocabulary may come out smaller on a tiny corpus."""
    minimum = 256 + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ConfigError(f"data.bpe_vocab_size must be at least {minimum}, got {vocab_size}")
    tokenizer = _new_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        # a pair seen once is memorisation, not a useful token
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    started = time.perf_counter()
    tokenizer.train_from_iterator(documents, trainer=trainer, length=len(documents))
    elapsed = time.perf_counter() - started
    logger.info("trained a BPE tokenizer (vocab %d) in %.1fs", tokenizer.get_vocab_size(), elapsed)
    return BPETokenizer(tokenizer.to_str())


def get_or_train_bpe(documents: Sequence[str], vocab_size: int, cache_dir: Path | None = None) -> BPETokenizer:
    """`train_bpe`, cached under `cache_dir` (default: the app's cache) by corpus hash and vocab size."""
    directory = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    path = directory / "tokenizers" / f"bpe-v{BPE_RECIPE_VERSION}-{corpus_hash(documents)}-{vocab_size}.json"
    if path.is_file():
        try:
            return BPETokenizer(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, DataError) as err:
            logger.warning("retraining: the cached tokenizer %s is unreadable (%s)", path, err)
    tokenizer = train_bpe(documents, vocab_size)
    atomic_write_text(path, tokenizer.to_payload()["json"])
    return tokenizer


def tokenizer_for(data_config: DataConfig, documents: Sequence[str]) -> Tokenizer:
    """The tokenizer a data config asks for; a BPE is trained on (or cached for) `documents`."""
    check_choice("data.tokenizer", data_config.tokenizer)
    if data_config.tokenizer == "bpe":
        return get_or_train_bpe(documents, data_config.bpe_vocab_size)
    if data_config.tokenizer == "gpt2":
        return gpt2_tokenizer()
    raise AssertionError(f"data.tokenizer {data_config.tokenizer!r} is a choice without a tokenizer here")


def tokenizer_from_payload(payload: Mapping[str, object]) -> Tokenizer:
    """Rebuild a tokenizer from `Tokenizer.to_payload()` (as stored in checkpoints)."""
    kind = payload.get("kind")
    if kind == "bpe":
        json_text = payload.get("json")
        if not isinstance(json_text, str):
            raise DataError("the stored BPE tokenizer has no JSON", hint="the checkpoint may be damaged")
        return BPETokenizer(json_text)
    if kind == "gpt2":
        return gpt2_tokenizer()
    raise DataError(
        f"unknown tokenizer kind {kind!r}", hint="expected 'bpe' or 'gpt2'; was it saved by a newer nanogpt-tui?"
    )


def load_tokenizer(directory: Path) -> Tokenizer:
    """Read a tokenizer written by `Tokenizer.save(directory)`."""
    directory = Path(directory)
    bpe_path, gpt2_path = directory / BPE_FILE, directory / GPT2_FILE
    try:
        if bpe_path.is_file():
            if bpe_path.stat().st_size > MAX_TOKENIZER_CHARS:
                raise DataError(f"{bpe_path} is {bpe_path.stat().st_size / 1e6:.0f} MB, too large for a tokenizer",
                                hint="refusing to load it; retrain the tokenizer")
            return BPETokenizer(bpe_path.read_text(encoding="utf-8"))
        if gpt2_path.is_file():
            payload = json.loads(gpt2_path.read_text(encoding="utf-8"))
            if not isinstance(payload, dict):
                raise DataError(f"{gpt2_path} does not hold a JSON object")
            return tokenizer_from_payload(payload)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DataError(
            f"cannot read the tokenizer in {directory}: {err}", hint="the run directory may be damaged"
        ) from err
    raise DataError(f"no tokenizer in {directory}", hint=f"expected {BPE_FILE} (trained BPE) or {GPT2_FILE} (GPT-2)")


def encode_documents(tokenizer: Tokenizer, documents: Sequence[str]) -> list[int]:
    """All documents as one token stream, each prefixed with BOS so attention can mask at it."""
    ids: list[int] = []
    for doc in documents:
        ids.append(tokenizer.bos_id)
        ids.extend(tokenizer.encode(doc))
    return ids
