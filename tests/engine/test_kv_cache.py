"""Cached decoding reproduces the full forward pass, across sliding windows and document boundaries."""

from __future__ import annotations

import pytest
import torch

from engine.model import GPT
from engine.model.attention import document_ids
from engine.model.kv_cache import KVCache
from tests.engine.test_model import TINY, multi_document_tokens, randomized_model
from tests.helpers import assert_close_scaled

SEQ_LEN = 64  # twice the long window (32 tokens) and four times the short one


def _cache(batch_size: int = 2, max_len: int = SEQ_LEN) -> KVCache:
    return KVCache.allocate(TINY, batch_size, max_len, device="cpu", dtype=torch.float32)


def _decode(model: GPT, tokens: torch.Tensor, cache: KVCache, cuts: list[int]) -> torch.Tensor:
    """Logits of tokens[:, cuts[0]:cuts[-1]] fed through the cache in the chunks between cuts."""
    chunks = [model.forward_cached(tokens[:, start:end], cache) for start, end in zip(cuts, cuts[1:])]
    return torch.cat(chunks, dim=1)  # (B, cuts[-1] - cuts[0], padded_vocab)


@pytest.fixture
def model_and_reference() -> tuple[GPT, torch.Tensor, torch.Tensor]:
    model = randomized_model()
    tokens = multi_document_tokens(seq_len=SEQ_LEN)
    with torch.no_grad():
        reference = model(tokens)  # the full window is the default of both paths
    return model, tokens, reference


def test_token_by_token_decoding_equals_the_full_forward(model_and_reference) -> None:
    model, tokens, reference = model_and_reference
    cache = _cache()
    logits = _decode(model, tokens, cache, list(range(SEQ_LEN + 1)))
    assert_close_scaled(logits, reference, rel=1e-4)
    assert cache.pos == SEQ_LEN
    assert torch.equal(cache.docs, document_ids(tokens, TINY.bos_id)), "cached document ids must match the full pass"


def test_chunked_decoding_equals_the_full_forward(model_and_reference) -> None:
    model, tokens, reference = model_and_reference
    # chunks that start and end inside blocks, and one spanning more than a window
    logits = _decode(model, tokens, _cache(), [0, 5, 6, 19, 58, 64])
    assert_close_scaled(logits, reference, rel=1e-4)


def test_explicit_window_matches_the_full_forward() -> None:
    model = randomized_model()
    tokens = multi_document_tokens(seq_len=SEQ_LEN)
    with torch.no_grad():
        reference = model(tokens, sliding_window_num_blocks=2)
    cache = _cache()
    chunks = [model.forward_cached(tokens[:, start:start + 3], cache, sliding_window_num_blocks=2)
              for start in range(0, SEQ_LEN, 3)]
    assert_close_scaled(torch.cat(chunks, dim=1), reference, rel=1e-4)


def test_crop_and_reset(model_and_reference) -> None:
    model, tokens, reference = model_and_reference
    cache = _cache()
    _decode(model, tokens, cache, [0, 40])
    cache.crop(20)
    assert cache.pos == 20
    # positions 20..39 are rewritten, with different tokens first to prove they are overwritten
    model.forward_cached(torch.full((2, 20), 7), cache)
    cache.crop(20)
    assert_close_scaled(_decode(model, tokens, cache, [20, 64]), reference[:, 20:], rel=1e-4)
    cache.reset()
    assert cache.pos == 0
    assert_close_scaled(_decode(model, tokens, cache, [0, 64]), reference, rel=1e-4)
    with pytest.raises(AssertionError, match="crop"):
        cache.crop(65)


def test_cache_layout_and_capacity() -> None:
    cache = _cache(batch_size=3, max_len=16)
    assert cache.batch_size == 3 and cache.max_len == 16
    assert cache.keys[2] is None and cache.values[2] is None, "layer 2 has no attention, so no cache"
    assert cache.keys[0] is not None and cache.keys[0].shape == (3, 16, TINY.num_heads, TINY.head_dim)
    model = randomized_model()
    model.forward_cached(torch.ones(3, 10, dtype=torch.long), cache)
    with pytest.raises(AssertionError, match="KV cache holds 16 positions"):
        model.forward_cached(torch.ones(3, 7, dtype=torch.long), cache)


def test_rotary_growth_while_decoding_leaves_training_usable() -> None:
    torch.manual_seed(0)
    model = GPT(TINY, max_seq_len=8)
    tokens = multi_document_tokens(seq_len=SEQ_LEN)
    model.forward_cached(tokens, _cache())  # grows the rotary tables inside inference mode
    loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()  # would fail if the grown tables were inference tensors
    assert model.embed.weight.grad is not None


def test_a_rolling_cache_holds_only_the_window_and_still_equals_the_full_forward() -> None:
    model = randomized_model()
    tokens = multi_document_tokens(seq_len=200, seed=3)
    with torch.no_grad():
        reference = model(tokens)
    window = max(model.attention_windows().values())  # 4 blocks of 8: 32 tokens
    cache = KVCache.allocate(TINY, 2, window * TINY.attn_block_size + 12, device="cpu", dtype=torch.float32,
                             window_blocks=window)
    cuts = [0, 12, 13, 20, 31, *range(40, 200, 9), 200]  # chunks of 1 to 12 tokens, across many roll-overs
    assert_close_scaled(_decode(model, tokens, cache, cuts), reference, rel=1e-4)
    assert cache.max_len == 44 and cache.pos == 200 and cache.offset > 150, "only the window (plus a chunk) is held"
    assert not cache.can_resume_at(100) and cache.can_resume_at(199)
    with pytest.raises(AssertionError, match="rolled out"):
        cache.crop(100)
    cache.crop(195)
    assert_close_scaled(_decode(model, tokens, cache, [195, 200]), reference[:, 195:], rel=1e-4)


def test_the_attention_limit_caps_every_window() -> None:
    model = randomized_model()
    tokens = multi_document_tokens(seq_len=64, seed=4)
    assert model.attention_windows() == {"L": 4, "S": 2}
    model.attention_limit = 16  # trained on 16-token rows: 2 blocks
    assert model.attention_windows() == {"L": 2, "S": 2}, "the short window keeps its 2 blocks"
    with torch.no_grad():
        capped = model(tokens)
        model.attention_limit = None
        uncapped = model(tokens)
    assert not torch.allclose(capped, uncapped, atol=1e-3), "the cap must change what the model reads"
    assert_close_scaled(capped[:, :16], uncapped[:, :16], rel=1e-5)
