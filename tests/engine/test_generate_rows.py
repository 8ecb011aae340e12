"""Generator.generate_rows: rows with their own prompts, settings, seeds and cancel events, decoded as one batch."""

from __future__ import annotations

import threading

import pytest

from engine.data.tokenizer import BPETokenizer
from engine.errors import ConfigError
from engine.inference.generate import CANCELLED, FAILED, Generator, Row, SamplingParams, TokenChunk
from engine.model import GPT

# the tiny model and tokenizer of the Generator's tests, on one torch thread
from tests.engine.test_generate import model, one_thread, tokenizer  # noqa: F401 - fixtures


def outcome(chunks: list[TokenChunk], sample: int = 0) -> tuple[list[int], str, str | None]:
    """(token ids, text, finish reason) of one row's chunks."""
    mine = [chunk for chunk in chunks if chunk.sample == sample]
    return ([c.token_id for c in mine if c.token_id is not None], "".join(c.text for c in mine), mine[-1].finish_reason)


def test_rows_with_their_own_settings_equal_each_alone(model: GPT, tokenizer: BPETokenizer) -> None:
    generator = Generator(model, tokenizer, max_context=64)
    rows = [
        Row(generator.encode_prompt("hello"), SamplingParams(temperature=0.9, top_k=20, seed=1, max_new_tokens=30)),
        Row(generator.encode_prompt("the lazy dog jumps over"), SamplingParams(temperature=0, max_new_tokens=12)),
        Row(generator.encode_prompt("hello"), SamplingParams(temperature=1.3, top_k=0, top_p=0.8, seed=2,
                                                             max_new_tokens=40, repetition_penalty=1.3)),
        Row(generator.encode_prompt("fox"), SamplingParams(temperature=1.0, seed=1, max_new_tokens=25,
                                                           stop_strings=("o",))),
        # the first row's settings with another seed and prompt: filtered together with it, drawn apart
        Row(generator.encode_prompt("the quick brown"), SamplingParams(temperature=0.9, top_k=20, seed=3,
                                                                       max_new_tokens=30)),
    ]
    together = list(generator.generate_rows(rows))
    for index, row in enumerate(rows):
        alone = outcome(list(generator.generate(row.prompt, row.params)))
        assert outcome(together, index) == alone, f"row {index} differs from its reply alone"
    assert outcome(together, 0) != outcome(together, 2), "the same prompt with other settings samples differently"


def test_a_cancelled_row_ends_alone_and_the_others_go_on(model: GPT, tokenizer: BPETokenizer) -> None:
    generator = Generator(model, tokenizer, max_context=64)
    cancel = threading.Event()
    params = SamplingParams(temperature=1.0, seed=5, max_new_tokens=30, stop_token_ids=(), top_k=0)
    rows = [Row(generator.encode_prompt("hello"), params, cancel), Row(generator.encode_prompt("hello world"), params)]
    chunks = []
    for chunk in generator.generate_rows(rows):
        chunks.append(chunk)
        if chunk.sample == 0 and chunk.token_id is not None and len(outcome(chunks)[0]) == 3:
            cancel.set()
    assert outcome(chunks, 0)[2] == CANCELLED and len(outcome(chunks, 0)[0]) == 3
    assert outcome(chunks, 1) == outcome(list(generator.generate(rows[1].prompt, params)))


def test_a_row_whose_sampling_fails_ends_with_its_error(model: GPT, tokenizer: BPETokenizer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.inference.generate as generate

    generator = Generator(model, tokenizer, max_context=64)
    broken = SamplingParams(temperature=0.5, seed=99, max_new_tokens=10)
    good = SamplingParams(temperature=0.5, seed=1, max_new_tokens=10)
    alone = outcome(list(generator.generate([0, 5], good)))
    real = generate.checked_scores

    def checked_scores(logits, params, context=None):  # noqa: ANN001 - the real signature
        if params is broken:
            raise ConfigError("the sampling settings turn the model's scores into NaN or infinity")
        return real(logits, params, context)

    monkeypatch.setattr(generate, "checked_scores", checked_scores)
    rows = [Row([0, 5], broken), Row([0, 5], good)]
    chunks = list(generator.generate_rows(rows))
    assert outcome(chunks, 0)[2] == FAILED and isinstance(rows[0].error, ConfigError)
    assert outcome(chunks, 1) == alone, "a failing row must not change the others"
