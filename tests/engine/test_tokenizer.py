"""Tokenizers: exact round trips, special tokens never produced from text, payloads, the cache, GPT-2 offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry

from engine.config import DataConfig
from engine.data import tokenizer as tokenizer_module
from engine.data.corpus import DOCUMENT_JOINER, load_corpus
from engine.data.tokenizer import (
    BOS,
    GPT2_EOT,
    SPECIAL_TOKENS,
    BPETokenizer,
    GPT2Tokenizer,
    Tokenizer,
    encode_documents,
    get_or_train_bpe,
    gpt2_tokenizer,
    load_tokenizer,
    tokenizer_for,
    tokenizer_from_payload,
    train_bpe,
)
from engine.errors import ConfigError, DataError

UNICODE_SAMPLES = [
    "",
    "plain ASCII, with  two spaces\tand a tab\n",
    "Grüße, ça va? 東京 🙂👩‍👩‍👧 e\u0301 \u200b",
    "windows\r\nline\rendings\n\n\n   trailing   ",
    "\x00control\x07bytes\x7f",
    "1234567890 3.14159 1,000,000",
]


@pytest.fixture(scope="module")
def plays() -> list[str]:
    return load_corpus("shakespeare")


@pytest.fixture(scope="module")
def bpe(plays: list[str]) -> BPETokenizer:
    # a slice of two plays keeps training well under a second
    return train_bpe(plays[:2], 512)


def test_round_trip_on_the_whole_embedded_corpus(bpe: BPETokenizer, plays: list[str]) -> None:
    text = DOCUMENT_JOINER.join(plays)
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text, "decode(encode(corpus)) must give the corpus back exactly"
    assert bpe.decode_bytes(ids) == text.encode("utf-8")
    assert len(ids) < 0.6 * len(text), "even a 512-token BPE merges most common pairs"


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_any_unicode_round_trips(bpe: BPETokenizer, text: str) -> None:
    assert bpe.decode(bpe.encode(text)) == text


def test_chunked_encoding_equals_plain_encoding(bpe: BPETokenizer, plays: list[str]) -> None:
    text = plays[5][:60_000] + "\n  indented\n\n\n" + plays[6][:20_000] + "x" * 10_000 + "\n" + "".join(UNICODE_SAMPLES)
    pieces = tokenizer_module._chunks(text)
    assert len(pieces) > 10 and "".join(pieces) == text
    plain = bpe._tokenizer.encode(text, add_special_tokens=False).ids
    assert bpe.encode(text) == plain, "cutting long text at line starts must not change the tokens"


def test_special_tokens_come_first_and_are_never_produced_from_text(bpe: BPETokenizer) -> None:
    assert bpe.special_tokens == {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    assert bpe.bos_id == bpe.special_tokens[BOS] == 0
    text = "ROMEO:\n" + " ".join(SPECIAL_TOKENS) + "<|bos|><|pad|>"
    ids = bpe.encode(text)
    assert not set(ids) & set(bpe.special_tokens.values()), "text spelling a special token became the special id"
    assert bpe.decode(ids) == text
    assert bpe.decode([bpe.bos_id]) == BOS


def test_decode_bytes_keeps_split_characters_for_streaming(bpe: BPETokenizer) -> None:
    ids = bpe.encode("🙂")
    assert len(ids) > 1, "a 512-token vocabulary spells an emoji as several byte tokens"
    pieces = [bpe.decode_bytes([index]) for index in ids]
    assert b"".join(pieces) == "🙂".encode()
    assert bpe.decode(ids[:1]) == "\ufffd", "a lone partial character decodes to U+FFFD"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe.decode_bytes([bpe.vocab_size])


def test_payload_and_save_load_give_identical_encodings(bpe: BPETokenizer, tmp_path: Path, plays: list[str]) -> None:
    payload = json.loads(json.dumps(bpe.to_payload()))
    assert payload["kind"] == "bpe" and isinstance(payload["json"], str)
    restored = tokenizer_from_payload(payload)
    bpe.save(tmp_path / "tokenizer")
    loaded = load_tokenizer(tmp_path / "tokenizer")
    sample = plays[10][:20_000] + "".join(UNICODE_SAMPLES)
    for other in (restored, loaded):
        assert isinstance(other, Tokenizer)
        assert other.encode(sample) == bpe.encode(sample)
        assert (other.identifier, other.vocab_size, other.kind) == (bpe.identifier, bpe.vocab_size, "bpe")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="malformed"):
        load_tokenizer(tmp_path)
    with pytest.raises(DataError, match="unknown tokenizer kind"):
        tokenizer_from_payload({"kind": "sentencepiece"})
    with pytest.raises(DataError, match="does not have <\\|bos\\|>"):
        BPETokenizer(tokenizer_module._new_bpe().to_str())


def test_cache_hit_returns_the_same_tokenizer_without_retraining(
    plays: list[str], isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = [plays[0][:30_000]]
    first = get_or_train_bpe(documents, 300)
    cached = list((isolated_home / "cache" / "tokenizers").glob("bpe-*-300.json"))
    assert len(cached) == 1, "the default cache lives under NANOGPT_TUI_HOME/cache"

    def no_training(*args: object) -> BPETokenizer:
        raise AssertionError("train_bpe ran although the tokenizer was cached")

    monkeypatch.setattr(tokenizer_module, "train_bpe", no_training)
    second = get_or_train_bpe(documents, 300)
    assert second.identifier == first.identifier
    assert second.encode(documents[0]) == first.encode(documents[0])
    with pytest.raises(AssertionError, match="cached"):
        get_or_train_bpe(documents, 301)  # another vocabulary size is another cache entry


def test_unreadable_cache_entry_is_retrained(plays: list[str], tmp_path: Path) -> None:
    documents = [plays[0][:30_000]]
    first = get_or_train_bpe(documents, 300, cache_dir=tmp_path)
    (path,) = (tmp_path / "tokenizers").glob("*.json")
    path.write_text("truncated", encoding="utf-8")
    again = get_or_train_bpe(documents, 300, cache_dir=tmp_path)
    assert again.identifier == first.identifier, "training is deterministic"
    assert path.read_text(encoding="utf-8") == first.to_payload()["json"], "the broken entry is replaced"


def test_vocab_size_below_the_byte_alphabet_is_rejected() -> None:
    with pytest.raises(ConfigError, match="at least 264"):
        train_bpe(["some text"], 100)


def test_tokenizer_for_and_encode_documents(plays: list[str]) -> None:
    documents = [plays[0][:20_000], plays[1][:20_000]]
    tokenizer = tokenizer_for(DataConfig(tokenizer="bpe", bpe_vocab_size=300), documents)
    assert tokenizer.kind == "bpe" and tokenizer.vocab_size <= 300
    ids = encode_documents(tokenizer, documents)
    starts = [index for index, token in enumerate(ids) if token == tokenizer.bos_id]
    assert starts == [0, 1 + len(tokenizer.encode(documents[0]))], "exactly one BOS before each document"
    assert tokenizer.decode(ids[1 : starts[1]]) == documents[0]


@pytest.fixture
def offline_tiktoken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken with an empty cache, no loaded encodings and no network."""
    empty_cache = tmp_path / "tiktoken-cache"
    empty_cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty_cache))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})

    def no_network(blobpath: str) -> bytes:
        raise ConnectionError(f"name resolution failed for {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)


@pytest.mark.usefixtures("offline_tiktoken")
def test_gpt2_offline_raises_a_data_error_with_a_hint() -> None:
    with pytest.raises(DataError, match="GPT-2 tokenizer could not be loaded.*downloaded on first use") as info:
        gpt2_tokenizer()
    assert "TIKTOKEN_CACHE_DIR" in info.value.hint and "'bpe'" in info.value.hint
    with pytest.raises(DataError, match="GPT-2"):
        tokenizer_from_payload({"kind": "gpt2"})
    with pytest.raises(DataError, match="GPT-2"):
        tokenizer_for(DataConfig(tokenizer="gpt2"), ["unused"])


def _tiny_gpt2_like_encoding() -> tiktoken.Encoding:
    """A byte-level tiktoken encoding with GPT-2's special token, built without any download."""
    ranks = {bytes([byte]): byte for byte in range(256)}
    ranks[b"th"] = 256
    return tiktoken.Encoding(
        name="tiny-gpt2",
        pat_str=tokenizer_module.SPLIT_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={GPT2_EOT: 257},
    )


def test_gpt2_wrapper_never_encodes_special_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = GPT2Tokenizer(_tiny_gpt2_like_encoding())
    assert (tokenizer.kind, tokenizer.bos_id, tokenizer.vocab_size) == ("gpt2", 257, 258)
    assert tokenizer.special_tokens == {GPT2_EOT: 257}
    text = f"the end {GPT2_EOT} 🙂"
    ids = tokenizer.encode(text)
    assert 257 not in ids and tokenizer.decode(ids) == text
    assert tokenizer.decode_bytes(ids) == text.encode("utf-8")
    assert tokenizer.to_payload() == {"kind": "gpt2"}
    tokenizer.save(tmp_path)
    assert not (tmp_path / "tokenizer.json").exists(), "a GPT-2 run has no tokenizer.json"
    monkeypatch.setattr(tokenizer_module, "gpt2_tokenizer", lambda: tokenizer)
    assert load_tokenizer(tmp_path) is tokenizer
