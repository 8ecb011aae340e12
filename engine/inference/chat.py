"""A chat conversation with one model: messages, the chat template, streaming replies, a bounded context.

When the rendered conversation plus room for a reply no longer fits the generator's context, the
oldest turns are dropped (a system message is kept) and a `ContextTrimmed` event says so; nothing
overflows silently and nothing crashes.

The context is not the model's training length: attention never reaches farther back than that
(`Generator.attention_span`), so the conversation can be much longer; the model reads its newest
`attention_span` tokens at every step and the KV cache keeps only those.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.data.chat_template import default_template, render, stop_conditions
from engine.inference.generate import CANCELLED, STOP_TOKEN, Generator, SamplingParams, TokenChunk

COMMANDS = {"quit": "quit", "exit": "quit", "clear": "clear", "new": "new"}


def parse_command(line: str) -> str | None:
    """"quit", "clear" or "new" when the line is one of the chat commands (optionally with a leading /)."""
    return COMMANDS.get(line.strip().lower().removeprefix("/"))


def context_statement(tokens: int, context: int, attention_span: int) -> str:
    """The conversation's size against what is kept before turns are dropped, and how far back the model reads."""
    return f"context {tokens}/{context} tokens, reads the last {attention_span}"


@dataclass(frozen=True, slots=True)
class ContextTrimmed:
    """The oldest messages were dropped so the conversation fits the context."""

    dropped_messages: int  # in this turn
    total_dropped: int  # since the conversation started
    prompt_tokens: int  # the rendered prompt after dropping
    fits: bool  # False: even the newest message alone is too long, so the generator keeps its tail


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    """The assistant's reply as stored in the conversation."""

    text: str
    finish_reason: str
    tokens: int


@dataclass
class ChatSession:
    """The conversation as messages; `send` streams the reply and records it (partial if cancelled)."""

    generator: Generator
    params: SamplingParams = field(default_factory=SamplingParams)
    template: str = ""  # "" = the tokenizer's default ("special" for our BPE, "plain" for GPT-2)
    system: str = ""
    messages: list[dict] = field(default_factory=list)
    dropped_messages: int = 0
    trims: list[ContextTrimmed] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.template:
            self.template = default_template(self.generator.tokenizer)
        # fail now, not on the first message, when the template does not suit the tokenizer
        stop_conditions(self.template, self.generator.tokenizer)
        self.new()

    def new(self) -> None:
        """Start a new conversation (the system message stays)."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.dropped_messages = 0
        self.trims = []

    def prompt_budget(self, params: SamplingParams) -> int:
        """Tokens the prompt may use: the context minus room for the reply (at most half the context)."""
        context = self.generator.max_context
        return context - min(params.max_new_tokens, context // 2)

    def context_tokens(self) -> int:
        """Tokens of the conversation as it stands (rendered, without a generation prompt)."""
        prompt, _ = render(self.messages, self.template, self.generator.tokenizer)
        return len(prompt)

    def context_statement(self) -> str:
        """What the chat keeps and what the model reads, for a status line: "context 312/4096 tokens, reads the last 128"."""
        return context_statement(self.context_tokens(), self.generator.max_context, self.generator.attention_span)

    def send(self, text: str, cancel: threading.Event | None = None,
             params: SamplingParams | None = None) -> Iterator[TokenChunk | ContextTrimmed | ReplyFinished]:
        """Add a user message and stream the reply: maybe a ContextTrimmed, TokenChunks, then ReplyFinished."""
        prompt, params, trimmed = self.begin_turn(text, params)
        if trimmed is not None:
            yield trimmed
        pieces: list[str] = []
        tokens = 0
        reason = CANCELLED  # if the consumer abandons the stream, what was shown is what is kept
        try:
            for chunk in self.generator.generate(prompt, params, cancel):
                pieces.append(chunk.text)
                if chunk.token_id is not None and chunk.finish_reason != STOP_TOKEN:
                    tokens += 1
                if chunk.finish_reason is not None:
                    reason = chunk.finish_reason
                yield chunk
        finally:
            # the plain template ends a turn with a newline; the stored content never includes it
            reply = "".join(pieces).strip() if self.template == "plain" else "".join(pieces)
            self.messages.append({"role": "assistant", "content": reply})
        yield ReplyFinished(reply, reason, tokens)

    def begin_turn(self, text: str, params: SamplingParams | None = None,
                   ) -> tuple[list[int], SamplingParams, ContextTrimmed | None]:
        """Add a user message; the prompt and the settings its reply is sampled with (the template's
        stops added, the seed offset by the turn), and the trim that made it fit, if any.

        `send` generates from these; a server batching several conversations does the same.
        """
        params = params or self.params
        self.messages.append({"role": "user", "content": text})
        prompt, trimmed = self._fit(params)
        stop_ids, stop_strings = stop_conditions(self.template, self.generator.tokenizer)
        params = SamplingParams(
            temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
            max_new_tokens=params.max_new_tokens, seed=params.seed + len(self.messages),
            stop_strings=(*params.stop_strings, *stop_strings), stop_token_ids=(*params.stop_token_ids, *stop_ids),
            repetition_penalty=params.repetition_penalty,
        )
        return prompt, params, trimmed

    def _fit(self, params: SamplingParams) -> tuple[list[int], ContextTrimmed | None]:
        """The rendered prompt, after dropping the oldest turns (never a system message) until it fits."""
        budget = self.prompt_budget(params)
        tokenizer = self.generator.tokenizer
        dropped = 0
        while True:
            prompt, _ = render(self.messages, self.template, tokenizer, add_generation_prompt=True)
            droppable = [i for i, m in enumerate(self.messages[:-1]) if m["role"] != "system"]
            if len(prompt) <= budget or not droppable:
                break
            # drop a whole exchange: the oldest message and any assistant replies right after it
            first = droppable[0]
            end = first + 1
            while end < len(self.messages) - 1 and self.messages[end]["role"] == "assistant":
                end += 1
            dropped += end - first
            del self.messages[first:end]
        fits = len(prompt) <= budget
        if not dropped and fits:
            return prompt, None
        if not fits:
            # even the newest message alone is too long: BOS and the prompt's end, which holds the reply's opening
            prompt = [prompt[0], *prompt[len(prompt) - budget + 1:]]
        self.dropped_messages += dropped
        trimmed = ContextTrimmed(dropped, self.dropped_messages, len(prompt), fits=fits)
        self.trims.append(trimmed)
        return prompt, trimmed
