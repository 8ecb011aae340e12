"""Generator: KV cache equals no cache, sampling parameters, stop strings, cancel, UTF-8 streaming, batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from engine.config import ModelConfig
from engine.data.tokenizer import BPETokenizer, train_bpe
from engine.errors import ConfigError
from engine.inference.generate import (
    CANCELLED,
    LENGTH,
    STOP_STRING,
    STOP_TOKEN,
    Generator,
    SamplingParams,
    auto_device,
    auto_dtype,
)
from engine.inference.sampling import filter_logits
from engine.inference.text_stream import TextStream
from engine.model import GPT
from engine.model.kv_cache import KVCache
from engine.train.train_samples import sample_text

TEXT = "hello world, the quick brown fox jumps over the lazy dog.\nHuman: hi\nAssistant: hello\n" * 30
GREEDY = SamplingParams(temperature=0, max_new_tokens=48)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models decode faster on one thread; two threads spin against each other on a busy 2-core box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return train_bpe([TEXT], 300)


def tiny_config(vocab_size: int) -> ModelConfig:
    # long window 16 tokens (2 blocks of 8), short 8: generations below run far past both
    return ModelConfig(vocab_size=vocab_size, num_layers=2, num_heads=2, head_dim=16, model_dim=32, num_value_embeds=1,
                       no_attention_layers=(), window_pattern="LS", max_window_tokens=16, attn_block_size=8, bos_id=0)


def tiny_model(vocab_size: int, seed: int = 0) -> GPT:
    """A randomised tiny GPT (its zero-initialised projections too, so every path affects the logits)."""
    torch.manual_seed(seed)
    model = GPT(tiny_config(vocab_size), max_seq_len=64)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight") or name == "lm_head.weight":
                param.normal_(std=0.3)
    return model.eval()


@pytest.fixture(scope="module")
def model(tokenizer: BPETokenizer) -> GPT:
    return tiny_model(tokenizer.vocab_size)


class ScriptedModel(torch.nn.Module):
    """Emits a fixed token script through forward_cached, counting calls (to check when decoding stops)."""

    def __init__(self, config: ModelConfig, script: list[int]) -> None:
        super().__init__()
        self.config = config
        self.script = script
        self.calls = 0
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def attention_windows(self) -> dict[str, int]:
        return {"L": 2}

    def forward_cached(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        cache.append_docs(tokens, self.config.bos_id)
        cache.pos += tokens.size(1)
        logits = torch.zeros(tokens.size(0), tokens.size(1), self.config.vocab_size)
        logits[:, -1, self.script[min(self.calls, len(self.script) - 1)]] = 10.0
        self.calls += 1
        return logits


def scripted(tokenizer: BPETokenizer, script: list[int]) -> tuple[Generator, ScriptedModel]:
    fake = ScriptedModel(tiny_config(tokenizer.vocab_size), script)
    return Generator(fake, tokenizer, device="cpu", dtype=torch.float32, max_context=256), fake


def token_ids(generator: Generator, prompt: list[int], params: SamplingParams) -> list[int]:
    return [c.token_id for c in generator.generate(prompt, params) if c.token_id is not None]


def test_kv_cache_greedy_equals_no_cache_past_the_window(model: GPT, tokenizer: BPETokenizer) -> None:
    prompt = [0, *tokenizer.encode("the quick brown fox jumps over")]
    for max_context in (128, 40):  # 40: the context also slides (re-prefill) several times
        cached = token_ids(Generator(model, tokenizer, max_context=max_context), prompt, GREEDY)
        uncached = token_ids(Generator(model, tokenizer, max_context=max_context, use_cache=False), prompt, GREEDY)
        assert len(prompt) + len(cached) > 2 * model.config.max_window_tokens, "the test must outgrow the window"
        assert cached == uncached, f"KV-cached greedy decoding diverged from the full forward (context {max_context})"


def test_sampling_parameters(model: GPT, tokenizer: BPETokenizer) -> None:
    generator = Generator(model, tokenizer, max_context=128)
    prompt = generator.encode_prompt("hello")
    greedy = token_ids(generator, prompt, GREEDY)
    assert token_ids(generator, prompt, GREEDY) == greedy, "temperature 0 must be deterministic"
    top1 = SamplingParams(temperature=1.5, top_k=1, max_new_tokens=48, seed=3)
    assert token_ids(generator, prompt, top1) == greedy, "top-k 1 must equal greedy at any temperature"
    hot = SamplingParams(temperature=2.0, top_k=0, max_new_tokens=24, seed=7)
    first = token_ids(generator, prompt, hot)
    assert token_ids(generator, prompt, hot) == first, "a fixed seed must repeat the sample"
    others = [token_ids(generator, prompt, SamplingParams(temperature=2.0, top_k=0, max_new_tokens=24, seed=s))
              for s in (8, 9)]
    assert any(o != first for o in others), "different seeds should give different samples"


def test_filter_logits_top_k_top_p_and_repetition_penalty() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, SamplingParams(temperature=1.0, top_k=2)).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    kept = filter_logits(logits, SamplingParams(temperature=1.0, top_k=0, top_p=0.7)).isfinite()
    assert kept.tolist() == [[True, True, False, False]], "top-p keeps the smallest set reaching p"
    kept = filter_logits(logits, SamplingParams(temperature=1.0, top_k=0, top_p=0.01)).isfinite()
    assert kept.tolist() == [[True, False, False, False]], "top-p always keeps the most likely token"
    positive = torch.tensor([[4.0, 3.0, 1.0]])
    penalised = filter_logits(positive, SamplingParams(temperature=0, repetition_penalty=2.0), torch.tensor([[0]]))
    assert penalised.tolist() == [[2.0, 3.0, 1.0]] and penalised.argmax() == 1
    nan, inf = float("nan"), float("inf")
    for bad in (dict(temperature=-1), dict(top_p=0), dict(stop_strings=("",)), dict(repetition_penalty=0),
                dict(temperature=nan), dict(repetition_penalty=nan), dict(top_p=nan), dict(temperature=inf)):
        with pytest.raises(ConfigError):
            SamplingParams(**bad)  # refused when it is made, before any sampling


def test_stop_string_stops_and_is_never_shown(tokenizer: BPETokenizer) -> None:
    script = tokenizer.encode("hello world\nHuman: more text")
    generator, _ = scripted(tokenizer, script)
    chunks = list(generator.generate([0], SamplingParams(temperature=0, max_new_tokens=50, stop_strings=("\nHuman:",))))
    assert "".join(c.text for c in chunks) == "hello world"
    assert chunks[-1].finish_reason == STOP_STRING and all(c.finish_reason is None for c in chunks[:-1])
    assert not any("\n" in c.text for c in chunks), "a possible stop string prefix must be held back"
    # a held-back prefix that turns out not to be a stop string is shown after all
    generator, _ = scripted(tokenizer, tokenizer.encode("a\nHu"))
    text = "".join(c.text for c in generator.generate([0], SamplingParams(temperature=0, max_new_tokens=len(
        tokenizer.encode("a\nHu")), stop_strings=("\nHuman:",))))
    assert text == "a\nHu"


def test_stop_token_and_length(tokenizer: BPETokenizer) -> None:
    script = [*tokenizer.encode("hi there"), 4, *tokenizer.encode("never")]
    generator, _ = scripted(tokenizer, script)
    chunks = list(generator.generate([0], SamplingParams(temperature=0, max_new_tokens=50, stop_token_ids=(4,))))
    assert "".join(c.text for c in chunks) == "hi there" and chunks[-1].finish_reason == STOP_TOKEN
    assert chunks[-1].token_id == 4
    generator, _ = scripted(tokenizer, tokenizer.encode("abcdefgh"))
    chunks = list(generator.generate([0], SamplingParams(temperature=0, max_new_tokens=3)))
    assert len(chunks) == 3 and chunks[-1].finish_reason == LENGTH
    assert next(generator.generate([0], SamplingParams(max_new_tokens=0))).finish_reason == LENGTH


def test_cancel_stops_within_one_token_and_keeps_the_partial_text(tokenizer: BPETokenizer) -> None:
    script = tokenizer.encode("one two three four five six seven eight nine ten")
    generator, fake = scripted(tokenizer, script)
    cancel = threading.Event()
    texts: list[str] = []
    for chunk in generator.generate([0], SamplingParams(temperature=0, max_new_tokens=40), cancel):
        texts.append(chunk.text)
        if len(texts) == 3:
            cancel.set()
            calls_at_cancel = fake.calls
        if chunk.finish_reason is not None:
            final = chunk
    assert final.finish_reason == CANCELLED and final.token_id is None
    assert fake.calls == calls_at_cancel, "no forward pass may run after cancel"
    assert "".join(texts) == tokenizer.decode(script[:3]), "the partial reply must be kept whole"


def test_a_new_generation_supersedes_one_still_streaming(model: GPT, tokenizer: BPETokenizer) -> None:
    generator = Generator(model, tokenizer, max_context=128)
    prompt = generator.encode_prompt("hello")
    first = generator.generate(prompt, GREEDY)
    started = [next(first), next(first)]
    assert all(c.finish_reason is None for c in started)
    alone = token_ids(Generator(model, tokenizer, max_context=128), generator.encode_prompt("the fox"), GREEDY)
    assert token_ids(generator, generator.encode_prompt("the fox"), GREEDY) == alone, "the new one runs normally"
    rest = list(first)
    assert len(rest) == 1 and rest[0].finish_reason == CANCELLED, "the superseded one ends at its next step"


def test_utf8_character_split_across_tokens_streams_whole(tokenizer: BPETokenizer) -> None:
    emoji_ids = tokenizer.encode("🙂é")
    assert len(emoji_ids) >= 4, "the tiny BPE must split the emoji into byte tokens for this test"
    generator, _ = scripted(tokenizer, [*emoji_ids, *tokenizer.encode("!")])
    chunks = list(generator.generate([0], SamplingParams(temperature=0, max_new_tokens=len(emoji_ids) + 1)))
    assert "".join(c.text for c in chunks) == "🙂é!"
    assert all("\ufffd" not in c.text for c in chunks), "no chunk may show half a character"
    assert chunks[0].text == "" and "🙂" in "".join(c.text for c in chunks[:4])
    stream = TextStream(tokenizer, ())
    assert stream.push(emoji_ids[0]) == ("", False)
    assert stream.flush() == "", "an unfinished character at the very end is left out, never shown as U+FFFD"


def test_batch_rows_equal_single_generations(model: GPT, tokenizer: BPETokenizer) -> None:
    generator = Generator(model, tokenizer, max_context=64)
    prompts = [generator.encode_prompt("hello"), generator.encode_prompt("the lazy dog jumps over it")]
    assert len(prompts[1]) - len(prompts[0]) >= 3, "rows of different lengths exercise the staggered start"
    params = SamplingParams(temperature=0, max_new_tokens=24)  # past both windows
    rows: dict[int, list[int]] = {0: [], 1: []}
    finished = set()
    for chunk in generator.generate_batch(prompts, params):
        if chunk.token_id is not None:
            rows[chunk.sample].append(chunk.token_id)
        if chunk.finish_reason:
            finished.add(chunk.sample)
    assert finished == {0, 1}
    for index, prompt in enumerate(prompts):
        assert rows[index] == token_ids(generator, prompt, params), f"batch row {index} differs from its own run"


def test_prefix_reuse_gives_the_same_tokens(model: GPT, tokenizer: BPETokenizer) -> None:
    reused = Generator(model, tokenizer, max_context=128)
    prompt = reused.encode_prompt("hello world")
    first = token_ids(reused, prompt, GREEDY)
    longer = prompt + first[:5] + tokenizer.encode(" fox")
    assert token_ids(reused, longer, GREEDY) == token_ids(Generator(model, tokenizer, max_context=128), longer, GREEDY)


def test_sample_text_uses_the_generator(model: GPT, tokenizer: BPETokenizer) -> None:
    model.train()
    text = sample_text(model, tokenizer, "hello", max_new_tokens=10, temperature=0.0)
    assert model.training, "sample_text must restore training mode"
    expected = Generator(model.eval(), tokenizer, max_context=64).complete("hello", SamplingParams(temperature=0, max_new_tokens=10))
    assert text == "hello" + expected
    assert sample_text(model, tokenizer, "hi", max_new_tokens=8, seed=1) == sample_text(model, tokenizer, "hi", max_new_tokens=8, seed=1)


def test_device_and_dtype_choice() -> None:
    device = auto_device("auto")
    assert device.type in ("cuda", "mps", "cpu")
    assert auto_dtype(torch.device("cpu")) == torch.float32 and auto_dtype(torch.device("cuda")) == torch.bfloat16
    assert auto_device("cpu") == torch.device("cpu")
    with pytest.raises(Exception, match="unknown device"):
        auto_device("tpu")
