"""What the server does with a checked request: the chat session or the completion, as a stream of Delta/Done.

A chat request runs through `engine.chat.ChatSession` with the conversation the client sent, so
the template, the stop conditions, the dropping of old turns and the seed per turn are the same as
in `nanogpt-tui chat` and the app: the same messages and seed give the same reply everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.chat import ChatSession, ContextTrimmed, ReplyFinished
from engine.data.chat_template import default_template, render
from engine.generate import STOP_TOKEN, Generator, TokenChunk
from engine.serve.protocol import ChatRequest, CompletionRequest
from engine.serve.worker import ModelWorker, Work


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    reason: str | None
    prompt_tokens: int
    completion_tokens: int
    dropped_messages: int = 0  # old turns left out so the conversation fits the context


class ServedModel:
    """One generator behind the worker queue, under one model name."""

    def __init__(self, generator: Generator, name: str, *, template: str = "", description: str = "") -> None:
        self.generator = generator
        self.name = name
        self.template = template or default_template(generator.tokenizer)
        self.description = description
        self.worker = ModelWorker()
        self.tokens_generated = 0  # across all requests; /health reports it

    @property
    def max_context(self) -> int:
        return self.generator.max_context

    def chat_work(self, request: ChatRequest) -> Work:
        def work(cancel: threading.Event) -> Iterator[Any]:
            *history, last = request.messages
            session = ChatSession(self.generator, request.params, template=self.template)
            session.messages = list(history)
            dropped = 0
            for event in session.send(last["content"], cancel, request.params):
                if isinstance(event, ContextTrimmed):
                    dropped = event.total_dropped
                elif isinstance(event, TokenChunk):
                    self._count(event)
                    if event.text:
                        yield Delta(event.text)
                elif isinstance(event, ReplyFinished):
                    prompt, _ = render(session.messages[:-1], self.template, self.generator.tokenizer,
                                       add_generation_prompt=True)
                    yield Done(event.finish_reason, len(prompt), event.tokens, dropped)
        return work

    def completion_work(self, request: CompletionRequest) -> Work:
        def work(cancel: threading.Event) -> Iterator[Any]:
            prompt = self.generator.encode_prompt(request.prompt)
            if request.echo:
                yield Delta(request.prompt)
            produced, reason = 0, None
            for chunk in self.generator.generate(prompt, request.params, cancel):
                self._count(chunk)
                if chunk.token_id is not None and chunk.finish_reason != STOP_TOKEN:
                    produced += 1
                if chunk.text:
                    yield Delta(chunk.text)
                reason = chunk.finish_reason or reason
            yield Done(reason, len(prompt), produced)
        return work

    def _count(self, chunk: TokenChunk) -> None:
        if chunk.token_id is not None:
            self.tokens_generated += 1

    def health(self) -> dict[str, Any]:
        stats = self.worker.stats
        return {"status": "ok", "model": self.name, "queued": stats.queued, "busy": stats.busy,
                "completed": stats.completed, "cancelled": stats.cancelled, "failed": stats.failed,
                "tokens_generated": self.tokens_generated, "context": self.max_context}
