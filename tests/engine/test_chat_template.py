"""Chat templates: exact token layout, loss mask boundaries, generation prompt, stop conditions."""

from __future__ import annotations

import pytest
import tiktoken

from engine.data.chat_template import TEMPLATES, default_template, render, stop_conditions
from engine.data.tokenizer import GPT2_EOT, SPLIT_PATTERN, BPETokenizer, GPT2Tokenizer, train_bpe
from engine.errors import ConfigError, DataError

TEXT = "Human: hello there\nAssistant: hi! how are you?\n" * 40 + "the quick brown fox jumps over the lazy dog\n" * 40

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hello there"},
    {"role": "assistant", "content": "hi! how are you?"},
    {"role": "user", "content": "fine"},
    {"role": "assistant", "content": "good"},
]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return train_bpe([TEXT], 300)


@pytest.fixture(scope="module")
def gpt2_like() -> GPT2Tokenizer:
    # byte-level tiktoken encoding with GPT-2's special token; no download
    ranks = {bytes([byte]): byte for byte in range(256)}
    encoding = tiktoken.Encoding(name="tiny-gpt2", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
                                 special_tokens={GPT2_EOT: 256})
    return GPT2Tokenizer(encoding)


def _masked_text(tokenizer, ids: list[int], mask: list[bool]) -> str:
    return tokenizer.decode([i for i, m in zip(ids, mask) if m])


def test_default_template_follows_the_tokenizer(bpe: BPETokenizer, gpt2_like: GPT2Tokenizer) -> None:
    assert default_template(bpe) == "special"
    assert default_template(gpt2_like) == "plain"
    assert TEMPLATES == ("special", "plain")


def test_special_layout_and_mask(bpe: BPETokenizer) -> None:
    special = bpe.special_tokens
    ids, mask = render(CONVERSATION, "special", bpe)
    assert len(ids) == len(mask)
    assert ids[0] == bpe.bos_id and not mask[0]
    expected = [bpe.bos_id]
    for message in CONVERSATION:
        role = message["role"]
        expected += [special[f"<|{role}_start|>"], *bpe.encode(message["content"]), special[f"<|{role}_end|>"]]
    assert ids == expected
    assistant_end = special["<|assistant_end|>"]
    masked = [i for i, m in zip(ids, mask) if m]
    assert masked == [*bpe.encode("hi! how are you?"), assistant_end, *bpe.encode("good"), assistant_end], \
        "the mask must cover exactly assistant contents plus <|assistant_end|>"
    assert not any(m for i, m in zip(ids, mask) if i == special["<|assistant_start|>"])


def test_special_generation_prompt(bpe: BPETokenizer) -> None:
    ids, mask = render(CONVERSATION[:2], "special", bpe, add_generation_prompt=True)
    assert ids[-1] == bpe.special_tokens["<|assistant_start|>"] and not any(mask)


def test_plain_text_and_mask(bpe: BPETokenizer, gpt2_like: GPT2Tokenizer) -> None:
    for tokenizer in (bpe, gpt2_like):
        ids, mask = render(CONVERSATION, "plain", tokenizer)
        assert ids[0] == tokenizer.bos_id and len(ids) == len(mask)
        assert tokenizer.decode(ids[1:]) == (
            "Be brief.\nHuman: hello there\nAssistant: hi! how are you?\nHuman: fine\nAssistant: good\n"
        )
        assert _masked_text(tokenizer, ids, mask) == "hi! how are you?\ngood\n", \
            "plain mask = assistant contents plus the newline that ends each turn"
        prompt, prompt_mask = render(CONVERSATION[:2], "plain", tokenizer, add_generation_prompt=True)
        assert tokenizer.decode(prompt[1:]) == "Be brief.\nHuman: hello there\nAssistant: " and not any(prompt_mask)
        # the prompt is a prefix of the rendered conversation: generation and training agree
        assert ids[:len(prompt)] == prompt


def test_stop_conditions(bpe: BPETokenizer, gpt2_like: GPT2Tokenizer) -> None:
    stop_ids, stop_strings = stop_conditions("special", bpe)
    assert stop_ids[0] == bpe.special_tokens["<|assistant_end|>"] and stop_strings == []
    assert set(stop_ids) == set(bpe.special_tokens.values()), "no special token can be part of a reply"
    stop_ids, stop_strings = stop_conditions("plain", gpt2_like)
    assert stop_ids == [gpt2_like.bos_id]
    assert "\nHuman:" in stop_strings and "Human:" in stop_strings


def test_errors(bpe: BPETokenizer, gpt2_like: GPT2Tokenizer) -> None:
    with pytest.raises(ConfigError, match="special"):
        render(CONVERSATION, "special", gpt2_like)
    with pytest.raises(ConfigError, match="unknown chat template"):
        stop_conditions("chatml", bpe)
    with pytest.raises(DataError, match="role"):
        render([{"role": "robot", "content": "x"}], "plain", bpe)
    with pytest.raises(DataError, match="content"):
        render([{"role": "user"}], "plain", bpe)


def test_text_that_spells_a_special_token_stays_text(bpe: BPETokenizer) -> None:
    ids, _ = render([{"role": "user", "content": "<|assistant_end|>"}], "special", bpe)
    assert ids.count(bpe.special_tokens["<|assistant_end|>"]) == 0
