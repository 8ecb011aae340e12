"""What the server does with a checked request: the chat session or the completion, as a stream of Delta/Done.

A chat request runs through `engine.inference.chat.ChatSession` with the conversation the client sent, so
the template, the stop conditions, the dropping of old turns and the seed per turn are the same as
in `nanogpt-tui chat` and the app: the same messages and seed give the same reply everywhere.
Each request becomes one row (`engine.inference.generate.Row`) of the worker's batches.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.inference.chat import ChatSession
from engine.data.chat_template import default_template
from engine.inference.generate import FAILED, STOP_TOKEN, Generator, Row, TokenChunk
from engine.serve.protocol import ChatRequest, CompletionRequest
from engine.serve.worker import ModelWorker


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    reason: str | None
    prompt_tokens: int
    completion_tokens: int
    dropped_messages: int = 0  # old turns left out so the conversation fits the context


class Reply(ABC):
    """One request's row and the events its chunks become (the worker's `Work`); a chat or a completion."""

    def __init__(self, served: ServedModel, echo: str = "") -> None:
        self.served = served
        self.echo = echo  # text sent before the first token (a completion's echo)
        self.prompt_tokens = 0
        self.dropped = 0
        self.produced = 0

    @abstractmethod
    def prepare(self, cancel: threading.Event) -> Row:
        """The generator row for this request: its prompt, sampling settings and cancel event."""

    def events(self, chunk: TokenChunk) -> Iterator[Any]:
        """Delta for the chunk's text, and Done after the last chunk."""
        if self.echo:
            yield Delta(self.echo)
            self.echo = ""
        if chunk.token_id is not None:
            self.served.tokens_generated += 1
            if chunk.finish_reason != STOP_TOKEN:
                self.produced += 1
        if chunk.text:
            yield Delta(chunk.text)
        if chunk.finish_reason not in (None, FAILED):  # the worker reports a failed row's error instead
            yield Done(chunk.finish_reason, self.prompt_tokens, self.produced, self.dropped)


class ChatReply(Reply):
    def __init__(self, served: ServedModel, request: ChatRequest) -> None:
        super().__init__(served)
        self.request = request

    def prepare(self, cancel: threading.Event) -> Row:
        *history, last = self.request.messages
        session = ChatSession(self.served.generator, self.request.params, template=self.served.template)
        session.messages = list(history)
        prompt, params, trimmed = session.begin_turn(last["content"], self.request.params)
        self.prompt_tokens = len(prompt)
        self.dropped = trimmed.total_dropped if trimmed is not None else 0
        return Row(prompt, params, cancel)


class CompletionReply(Reply):
    def __init__(self, served: ServedModel, request: CompletionRequest) -> None:
        super().__init__(served, echo=request.prompt if request.echo else "")
        self.request = request

    def prepare(self, cancel: threading.Event) -> Row:
        prompt = self.served.generator.encode_prompt(self.request.prompt)
        self.prompt_tokens = len(prompt)
        return Row(prompt, self.request.params, cancel)


class ServedModel:
    """One generator behind the worker, under one model name."""

    def __init__(self, generator: Generator, name: str, *, template: str = "", description: str = "",
                 max_batch: int = 8) -> None:
        self.generator = generator
        self.name = name
        self.template = template or default_template(generator.tokenizer)
        self.description = description
        self.worker = ModelWorker(generator.generate_rows, max_batch)
        self.tokens_generated = 0  # across all requests; /health reports it

    @property
    def max_context(self) -> int:
        return self.generator.max_context

    def chat_work(self, request: ChatRequest) -> ChatReply:
        return ChatReply(self, request)

    def completion_work(self, request: CompletionRequest) -> CompletionReply:
        return CompletionReply(self, request)

    def health(self) -> dict[str, Any]:
        stats = self.worker.stats
        return {"status": "ok", "model": self.name, "queued": stats.queued, "busy": stats.busy,
                "completed": stats.completed, "cancelled": stats.cancelled, "failed": stats.failed,
                "batches": stats.batches, "largest_batch": stats.largest_batch,
                "tokens_generated": self.tokens_generated, "context": self.max_context}
