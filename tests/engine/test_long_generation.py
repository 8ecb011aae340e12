"""Generation far past the trained length: attention capped at it, a rolling cache, never a re-prefill."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from engine.checkpoint import save_checkpoint
from engine.config import ModelConfig, config_hash, preset, to_dict
from engine.data.tokenizer import BPETokenizer, train_bpe
from engine.importer import load_model
from engine.inference.chat import ChatSession, ContextTrimmed, ReplyFinished
from engine.inference.generate import LENGTH, PREFILL_CHUNK, Generator, SamplingParams
from engine.model import GPT
from tests.engine.test_generate import TEXT, one_thread, token_ids  # noqa: F401 (fixture)

# 16-token blocks, long window 256 tokens (16 blocks), short 128: far past the 64 it is trained on
WIDE = dict(num_layers=2, num_heads=2, head_dim=16, model_dim=32, num_value_embeds=1, no_attention_layers=(),
            window_pattern="LS", max_window_tokens=256, attn_block_size=16, bos_id=0)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return train_bpe([TEXT], 300)


def wide_model(tokenizer: BPETokenizer, seed: int = 0) -> GPT:
    """A random tiny GPT that never writes a special token (each would end a sample early)."""
    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, **WIDE), max_seq_len=64)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight"):
                param.normal_(std=0.3)
        model.lm_head.weight.normal_(std=10.0)
        model.lm_head.weight[list(tokenizer.special_tokens.values())] = 0.0  # logit 15, about half the others' 30
    return model.eval()


def trained_at_64(folder: Path, tokenizer: BPETokenizer) -> Path:
    """A checkpoint whose config says it trained on 64-token rows."""
    model = wide_model(tokenizer)
    base = preset("shakespeare-cpu")
    hp = dataclasses.replace(base, model=model.config, train=dataclasses.replace(base.train, train_seq_len=64,
                                                                                   val_seq_len=64))
    payload = {"model": model.state_dict(), "optimizers": [], "config": to_dict(hp), "tokenizer": tokenizer.to_payload(),
               "data_position": None, "tokens_seen": 0}
    return save_checkpoint(folder, 5, payload, {"config_hash": config_hash(hp), "run": "t64", "kind": "pretrain"})


def test_greedy_with_the_cap_equals_uncached_generation_with_the_cap(tokenizer: BPETokenizer) -> None:
    model = wide_model(tokenizer)
    model.attention_limit = 32
    greedy = SamplingParams(temperature=0, max_new_tokens=150)
    long_prompt = [0, *tokenizer.encode(TEXT)][:PREFILL_CHUNK + 40]  # prefilled in two chunks
    for prompt in ([0, *tokenizer.encode("the quick brown fox jumps over")], long_prompt):
        cached = token_ids(Generator(model, tokenizer), prompt, greedy)
        uncached = token_ids(Generator(model, tokenizer, use_cache=False), prompt, greedy)
        assert len(cached) == 150 and cached == uncached
    model.attention_limit = None
    assert token_ids(Generator(model, tokenizer), prompt, greedy) != cached, "the cap must change what is generated"


def test_two_thousand_tokens_from_a_model_trained_at_64_stay_finite_without_re_prefill(
        tmp_path: Path, tokenizer: BPETokenizer) -> None:
    loaded = load_model(trained_at_64(tmp_path, tokenizer))
    assert loaded.model.attention_limit == 64
    generator = Generator.from_checkpoint(loaded, device="cpu")
    assert generator.attention_span == 64, "every window is capped at the 64 trained tokens"
    fed: list[int] = []
    forward_cached = generator.model.forward_cached

    def recording(tokens: torch.Tensor, cache, *args):
        fed.append(tokens.size(1))
        logits = forward_cached(tokens, cache, *args)
        assert torch.isfinite(logits).all(), f"non-finite logits at position {cache.pos}"
        return logits

    generator.model.forward_cached = recording
    prompt = generator.encode_prompt("hello world")
    chunks = list(generator.generate(prompt, SamplingParams(temperature=0.9, top_k=40, max_new_tokens=2000, seed=2)))
    assert sum(c.token_id is not None for c in chunks) == 2000 and chunks[-1].finish_reason == LENGTH
    assert fed[0] == len(prompt) and fed[1:] == [1] * 1999, "after the prompt every step feeds one token"
    assert generator.prefilled_tokens == len(prompt)
    cache = generator._cache
    assert cache is not None and cache.max_len == 64 + PREFILL_CHUNK, "the cache holds the window plus a chunk"
    assert cache.pos == len(prompt) + 1999 and cache.offset > 1900
    assert "\ufffd" not in "".join(c.text for c in chunks)


def test_chat_context_is_what_the_model_can_use_and_drops_are_counted(tmp_path: Path, tokenizer: BPETokenizer) -> None:
    loaded = load_model(trained_at_64(tmp_path, tokenizer))
    generator = Generator.from_checkpoint(loaded, device="cpu")
    params = SamplingParams(temperature=0.8, max_new_tokens=40)
    session = ChatSession(generator, params, template="plain")
    assert generator.max_context > 20 * 64, "the conversation is not limited to the 64 trained tokens"
    for turn in range(8):
        events = list(session.send(f"turn {turn}: tell me of the quick brown fox and the lazy dog"))
        assert not any(isinstance(e, ContextTrimmed) for e in events), f"turn {turn + 1} dropped old turns"
        assert isinstance(events[-1], ReplyFinished)
    assert len(session.messages) == 16 and session.dropped_messages == 0
    assert session.context_tokens() > 4 * 64, "eight turns run far past the trained length"
    statement = session.context_statement()
    assert statement == f"context {session.context_tokens()}/{generator.max_context} tokens, reads the last 64"
    before = generator.prefilled_tokens
    list(session.send("one more"))
    assert generator.prefilled_tokens - before < 40, "a new turn reuses the cached conversation"
    # a small context drops whole exchanges, and says how many in total
    small = ChatSession(Generator(loaded.model, tokenizer, max_context=160), params, template="plain")
    trims = [e for turn in range(8) for e in small.send(f"turn {turn}: the quick brown fox") if isinstance(e, ContextTrimmed)]
    assert trims and all(t.fits and t.prompt_tokens <= small.prompt_budget(params) for t in trims)
    assert small.dropped_messages == trims[-1].total_dropped == sum(t.dropped_messages for t in trims)
    assert all(t.dropped_messages % 2 == 0 for t in trims), "a user message goes with its reply"


def test_evaluation_reads_within_the_same_limit(tmp_path: Path, tokenizer: BPETokenizer) -> None:
    from engine.inference.evaluate import EvalData, evaluate_model

    loaded = load_model(trained_at_64(tmp_path, tokenizer))
    data = EvalData(torch.tensor([0, *tokenizer.encode(TEXT)][:1025]), "text")
    capped = evaluate_model(loaded.model, tokenizer, data, seq_len=256)
    loaded.model.attention_limit = None
    uncapped = evaluate_model(loaded.model, tokenizer, data, seq_len=256)
    assert abs(capped.loss - uncapped.loss) > 1e-4, "rows past the trained length are scored with the cap"
    short = [evaluate_model(loaded.model, tokenizer, data, seq_len=64).loss]
    loaded.model.attention_limit = 64
    short.append(evaluate_model(loaded.model, tokenizer, data, seq_len=64).loss)
    assert short[0] == pytest.approx(short[1], rel=1e-5), "within the trained length the cap changes nothing"


def test_a_fine_tune_cut_to_the_longest_fine_tuning_rows_claims_no_trained_length(tmp_path: Path,
                                                                                   tokenizer: BPETokenizer) -> None:
    from engine.train.finetune import MAX_FINETUNE_SEQ_LEN

    loaded = load_model(trained_at_64(tmp_path, tokenizer))
    assert loaded.trained_length == 64
    hp = loaded.hyperparameters
    short = {**hp, "finetune": {**hp["finetune"], "from_checkpoint": "/parent.pt"}}
    assert dataclasses.replace(loaded, hyperparameters=short).trained_length == 64, "its parent's rows were as short"
    cut = {**short, "train": {**hp["train"], "train_seq_len": MAX_FINETUNE_SEQ_LEN}}
    assert dataclasses.replace(loaded, hyperparameters=cut).trained_length is None, \
        "a speedrun parent trained on far longer rows than the fine-tune's"
