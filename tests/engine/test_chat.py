"""ChatSession: commands, templates, stop at end of turn, cancel keeps the reply, 50 turns in a small context."""

from __future__ import annotations

import threading

import pytest

from engine.data.tokenizer import BPETokenizer, train_bpe
from engine.errors import ConfigError
from engine.inference.chat import ChatSession, ContextTrimmed, ReplyFinished, parse_command
from engine.inference.generate import CANCELLED, STOP_STRING, STOP_TOKEN, Generator, SamplingParams, TokenChunk
from tests.engine.test_generate import TEXT, one_thread, scripted, tiny_model  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return train_bpe([TEXT], 300)


def reply_of(events: list) -> ReplyFinished:
    finished = [e for e in events if isinstance(e, ReplyFinished)]
    assert len(finished) == 1 and events[-1] is finished[0], "send must end with exactly one ReplyFinished"
    return finished[0]


def test_commands_with_or_without_slash() -> None:
    assert [parse_command(s) for s in ("quit", "EXIT", " /quit ", "/exit", "clear", "/clear", "new", "/new")] == [
        "quit", "quit", "quit", "quit", "clear", "clear", "new", "new"]
    assert parse_command("hello") is None and parse_command("/help me") is None and parse_command("") is None


def test_special_template_stops_at_end_of_turn(tokenizer: BPETokenizer) -> None:
    assistant_end = tokenizer.special_tokens["<|assistant_end|>"]
    generator, _ = scripted(tokenizer, [*tokenizer.encode("hello there"), assistant_end, *tokenizer.encode("junk")])
    session = ChatSession(generator, SamplingParams(temperature=0, max_new_tokens=30), system="Be brief.")
    assert session.template == "special"
    events = list(session.send("hi"))
    reply = reply_of(events)
    assert (reply.text, reply.finish_reason) == ("hello there", STOP_TOKEN)
    assert "".join(e.text for e in events if isinstance(e, TokenChunk)) == "hello there"
    assert session.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "hello there"}]
    session.new()
    assert session.messages == [{"role": "system", "content": "Be brief."}]


def test_plain_template_stops_at_the_next_human_line(tokenizer: BPETokenizer) -> None:
    generator, _ = scripted(tokenizer, tokenizer.encode("fine, thanks\nHuman: and you"))
    session = ChatSession(generator, SamplingParams(temperature=0, max_new_tokens=30), template="plain")
    reply = reply_of(list(session.send("how are you?")))
    assert (reply.text, reply.finish_reason) == ("fine, thanks", STOP_STRING)
    assert session.messages[-1] == {"role": "assistant", "content": "fine, thanks"}


def test_cancel_keeps_the_partial_reply(tokenizer: BPETokenizer) -> None:
    generator, _ = scripted(tokenizer, tokenizer.encode("one two three four five six"))
    session = ChatSession(generator, SamplingParams(temperature=0, max_new_tokens=30))
    cancel = threading.Event()
    shown = []
    for event in session.send("count", cancel):
        if isinstance(event, TokenChunk):
            shown.append(event.text)
            if len(shown) == 2:
                cancel.set()
    reply = session.messages[-1]
    assert reply["role"] == "assistant" and reply["content"] == "".join(shown) != ""
    assert session.trims == []


def test_fifty_turns_overflow_drops_oldest_turns_and_keeps_the_system_message(tokenizer: BPETokenizer) -> None:
    model = tiny_model(tokenizer.vocab_size)
    generator = Generator(model, tokenizer, max_context=96)
    params = SamplingParams(temperature=0.9, max_new_tokens=16)
    session = ChatSession(generator, params, system="You are a fox.")
    trims: list[ContextTrimmed] = []
    for turn in range(50):
        events = list(session.send(f"turn {turn}: the quick brown fox jumps over the lazy dog"))
        trims += [e for e in events if isinstance(e, ContextTrimmed)]
        reply = reply_of(events)
        assert reply.finish_reason in (STOP_TOKEN, "length", STOP_STRING)
        assert session.messages[0] == {"role": "system", "content": "You are a fox."}, "the system message must stay"
        assert session.messages[-2]["content"].startswith(f"turn {turn}:"), "the newest message must never be dropped"
    assert trims, "50 turns in a 96-token context must drop old turns"
    assert all(t.fits and t.prompt_tokens <= session.prompt_budget(params) for t in trims)
    assert session.dropped_messages == trims[-1].total_dropped == sum(t.dropped_messages for t in trims)
    assert session.trims == trims
    assert len(session.messages) < 20


def test_a_message_longer_than_the_context_still_gets_a_reply(tokenizer: BPETokenizer) -> None:
    generator = Generator(tiny_model(tokenizer.vocab_size), tokenizer, max_context=48)
    session = ChatSession(generator, SamplingParams(temperature=0, max_new_tokens=8))
    events = list(session.send("the quick brown fox " * 30))
    trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
    assert len(trimmed) == 1 and not trimmed[0].fits, "an oversized message must be reported, not hidden"
    assert reply_of(events).finish_reason != CANCELLED


def test_the_special_template_needs_its_tokens(tokenizer: BPETokenizer) -> None:
    generator, _ = scripted(tokenizer, [1])
    with pytest.raises(ConfigError, match="unknown chat template"):
        ChatSession(generator, template="chatml")
