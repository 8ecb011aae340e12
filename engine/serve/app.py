"""The Starlette application: OpenAI's /v1/models, /v1/chat/completions, /v1/completions, and /health.

Streaming replies are server-sent events (`data: {json}` … `data: [DONE]`). A client that
disconnects cancels its generation: the streaming response is cancelled, and the `finally` below
sets the job's cancel event, which the generator checks before every token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.errors import EngineError
from engine.serve import protocol
from engine.serve.protocol import ApiError
from engine.serve.service import Delta, Done, ServedModel
from engine.serve.worker import END, Job, JobFailed

log = logging.getLogger(__name__)

# how often a non-streaming request checks whether its client is still there
DISCONNECT_POLL_S = 0.25
# a stream sends what was generated in this interval as one event (the first token goes out at once)
STREAM_INTERVAL_S = 0.02
# far more than any conversation that fits a context; a larger body is refused before it is all read
MAX_BODY_BYTES = 4 * 2**20
# requests allowed to wait for the model at once; more are refused with 429 instead of piling up
MAX_QUEUED = 64


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


class ApiKeyMiddleware:
    """401 for /v1/* without `Authorization: Bearer <key>` when the server has a key; /health stays open."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key and scope["type"] == "http" and scope["path"].startswith("/v1"):
            headers = dict(scope["headers"])
            given = headers.get(b"authorization", b"").decode("latin-1")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                message = "invalid API key" if token else "an API key is required (Authorization: Bearer KEY)"
                await error_response(ApiError(401, message, code="invalid_api_key"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _json_body(request: Request) -> Any:
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES // 2**20} MiB",
                           code="request_too_large")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from err


class JobStream(StreamingResponse):
    """Server-sent events of a job; however the response ends (done, client gone, error), the job is cancelled."""

    def __init__(self, content: AsyncIterator[bytes], job: Job) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel.set()


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def _failure(failed: JobFailed) -> ApiError:
    if isinstance(failed.error, EngineError):
        hint = f" ({failed.error.hint})" if failed.error.hint else ""
        return ApiError(400, failed.error.message + hint)
    return ApiError(500, f"generation failed: {type(failed.error).__name__}: {failed.error}", kind="server_error")


def build_app(served: ServedModel, api_key: str | None = None) -> Starlette:
    """The ASGI app serving `served`; with `api_key`, every /v1 route needs it."""

    def submit(work: Any) -> Job:
        if served.worker.stats.queued >= MAX_QUEUED:
            raise ApiError(429, f"{MAX_QUEUED} requests are already waiting for the model; try again later",
                           kind="rate_limit_error", code="queue_full")
        return served.worker.submit(work)

    async def stream(job: Job, first: Callable[[], list[dict[str, Any]]], piece: Callable[[str], dict[str, Any]],
                     last: Callable[[Done], list[dict[str, Any]]]) -> AsyncIterator[bytes]:
        """SSE bytes of a job (JobStream cancels the job when the response ends early)."""
        for chunk in first():
            yield _sse(chunk)
        while (event := await job.next_event()) is not END:
            if isinstance(event, Delta):
                # tokens that arrived while the previous chunk was being written go out together
                yield _sse(piece(event.text + "".join(delta.text for delta in job.take_waiting(Delta))))
                # let tokens gather: one event per interval, not per token, is far less work for
                # this loop (which shares the GIL with the generating thread) and for the client;
                # the end of the reply goes out at once
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(job.ended.wait(), STREAM_INTERVAL_S)
            elif isinstance(event, Done):
                for chunk in last(event):
                    yield _sse(chunk)
            elif isinstance(event, JobFailed):
                yield _sse(_failure(event).body())
        yield _sse("[DONE]")

    async def collect(request: Request, job: Job) -> tuple[str, Done]:
        """The whole reply of a job; gives up (and cancels it) if the client disconnects while waiting."""
        pieces: list[str] = []
        done: Done | None = None
        loop = asyncio.get_running_loop()
        checked = loop.time()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(job.next_event(), DISCONNECT_POLL_S)
                except asyncio.TimeoutError:
                    event = None
                # checked on a clock, not only when waiting: events may come faster than the poll interval
                if loop.time() - checked >= DISCONNECT_POLL_S:
                    checked = loop.time()
                    if await request.is_disconnected():
                        raise ApiError(499, "the client disconnected")
                if event is None:
                    continue
                if event is END:
                    break
                if isinstance(event, Delta):
                    pieces.append(event.text)
                elif isinstance(event, Done):
                    done = event
                elif isinstance(event, JobFailed):
                    raise _failure(event)
        finally:
            job.cancel.set()
        assert done is not None, "a job ended without its Done event"
        return "".join(pieces), done

    async def answer(request: Request, job: Job, parsed: protocol.ChatRequest | protocol.CompletionRequest,
                     request_id: str, kind: str, whole: Callable[[str, Done], dict[str, Any]],
                     first: list[dict[str, Any]], piece: Callable[[str, str | None], dict[str, Any]]) -> Response:
        """The whole reply as JSON, or (stream) its chunks as server-sent events, usage last if asked for."""
        if not parsed.stream:
            text, done = await collect(request, job)
            return JSONResponse(whole(text, done))

        def last(done: Done) -> list[dict[str, Any]]:
            chunks = [piece("", done.reason)]
            if parsed.include_usage:
                chunks.append(protocol.usage_chunk(request_id, served.name, kind, done.prompt_tokens,
                                                   done.completion_tokens))
            return chunks

        return JobStream(stream(job, lambda: first, lambda text: piece(text, None), last), job)

    async def chat_completions(request: Request) -> Response:
        parsed = protocol.parse_chat(await _json_body(request), served.name, served.max_context)
        request_id = protocol.new_id("chatcmpl")
        job = submit(served.chat_work(parsed))
        return await answer(
            request, job, parsed, request_id, "chat.completion.chunk",
            lambda text, done: protocol.chat_response(request_id, served.name, text, done.reason,
                                                      done.prompt_tokens, done.completion_tokens),
            [protocol.chat_chunk(request_id, served.name, {"role": "assistant", "content": ""}, None)],
            lambda text, reason: protocol.chat_chunk(request_id, served.name, {"content": text} if text else {},
                                                     reason))

    async def completions(request: Request) -> Response:
        parsed = protocol.parse_completion(await _json_body(request), served.name, served.max_context)
        request_id = protocol.new_id("cmpl")
        job = submit(served.completion_work(parsed))
        return await answer(
            request, job, parsed, request_id, "text_completion",
            lambda text, done: protocol.completion_response(request_id, served.name, text, done.reason,
                                                            done.prompt_tokens, done.completion_tokens),
            [], lambda text, reason: protocol.completion_chunk(request_id, served.name, text, reason))

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": served.name, "object": "model", "created": started, "owned_by": "nanogpt-tui"}]})

    async def health(request: Request) -> Response:
        return JSONResponse(served.health())

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404
                                       else None))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error answering %s", request.url.path)
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        served.worker.close()

    started = int(time.time())
    routes = [
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(ApiKeyMiddleware, api_key=api_key)],
                     exception_handlers={ApiError: api_error, HTTPException: http_error, 500: server_error},
                     lifespan=lifespan)
