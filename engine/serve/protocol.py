"""OpenAI API requests as checked dataclasses, and the response objects; no web framework in here.

Every problem with a request becomes an `ApiError` with the status and the OpenAI error body
(`{"error": {"message", "type", "param", "code"}}`), never a traceback.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from engine.inference.generate import LENGTH
from engine.sampling_params import SamplingParams

MAX_STOP_STRINGS = 4
# OpenAI's own reply ends: "stop" (a stop token or string) and "length" (max_tokens)
FINISH_REASONS = {LENGTH: "length"}
# roles a client may send; "developer" is what newer OpenAI clients call the system message
ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """A request the server refuses: HTTP status plus OpenAI's error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# max_tokens when a request leaves it out: chat's (the engine's default) and OpenAI's completions default;
# every other sampling field defaults to engine.sampling_params.SamplingParams(), as in the CLI and the app
CHAT_MAX_TOKENS = SamplingParams().max_new_tokens
COMPLETION_MAX_TOKENS = 16


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]  # roles system/user/assistant, text content; the last one is the user's
    params: SamplingParams
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompt: str
    params: SamplingParams
    stream: bool
    include_usage: bool
    echo: bool


def _number(body: dict[str, Any], key: str, default: float, *, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"{key} must be a number, got {type(value).__name__}", param=key, code="invalid_type")
    if not math.isfinite(value):  # Python's JSON reads NaN and Infinity
        raise ApiError(400, f"{key} must be a finite number, got {value}", param=key, code="invalid_value")
    if low is not None and (value <= low if low_open else value < low) or high is not None and value > high:
        bounds = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ApiError(400, f"{key} must be {bounds}, got {value}", param=key, code="invalid_value")
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int, *, low: int, high: int | None = None) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{key} must be an integer, got {type(value).__name__}", param=key, code="invalid_type")
    if value < low or high is not None and value > high:
        bounds = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise ApiError(400, f"{key} must be {bounds}, got {value}", param=key, code="invalid_value")
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{key} must be true or false, got {type(value).__name__}", param=key, code="invalid_type")
    return value


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "stop must be a non-empty string or a list of them", param="stop", code="invalid_type")
    if len(stops) > MAX_STOP_STRINGS:
        raise ApiError(400, f"stop takes at most {MAX_STOP_STRINGS} strings, got {len(stops)}", param="stop")
    return tuple(stops)


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options", code="invalid_type")
    return _flag(options, "include_usage")


def _model(body: dict[str, Any], served: str) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required: a string naming the model", param="model", code="missing_model")
    if model != served:
        raise ApiError(404, f"the model {model!r} does not exist; this server serves {served!r}", param="model",
                       code="model_not_found")
    return model


def sampling_params(body: dict[str, Any], default_max_tokens: int, max_context: int) -> SamplingParams:
    """The sampling fields of a request (OpenAI's, plus top_k and repetition_penalty as extra fields)."""
    n = _integer(body, "n", 1, low=1)
    if n != 1:
        raise ApiError(400, f"n must be 1 (one reply per request), got {n}", param="n", code="invalid_value")
    max_tokens = _integer(body, "max_completion_tokens", default_max_tokens, low=0, high=max_context)
    max_tokens = _integer(body, "max_tokens", max_tokens, low=0, high=max_context)
    defaults = SamplingParams()
    return SamplingParams(
        temperature=_number(body, "temperature", defaults.temperature, low=0, high=2),
        top_p=_number(body, "top_p", defaults.top_p, low=0, high=1, low_open=True),
        top_k=_integer(body, "top_k", defaults.top_k, low=0),
        repetition_penalty=_number(body, "repetition_penalty", defaults.repetition_penalty, low=0, low_open=True),
        max_new_tokens=max_tokens,
        seed=_integer(body, "seed", defaults.seed, low=-(2**63), high=2**63 - 1) % (2**63),
        stop_strings=_stops(body),
    )


def _content(index: int, message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": "…"}, …]
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if len(texts) == len(content) and all(isinstance(text, str) for text in texts):
            return "".join(texts)
        raise ApiError(400, f"messages[{index}].content: only text parts are supported", param=f"messages[{index}]")
    raise ApiError(400, f"messages[{index}].content must be a string", param=f"messages[{index}].content",
                   code="invalid_type")


def parse_chat(body: Any, served: str, max_context: int) -> ChatRequest:
    body = _object(body)
    model = _model(body, served)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages", code="invalid_type")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ApiError(400, f"messages[{index}] must be an object with role and content", param=f"messages[{index}]")
        role = ROLE_ALIASES.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise ApiError(400, f"messages[{index}].role must be one of system, user, assistant, got "
                           f"{message.get('role')!r}", param=f"messages[{index}].role", code="invalid_value")
        checked.append({"role": role, "content": _content(index, message)})
    if checked[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's", param="messages", code="invalid_value")
    params = sampling_params(body, CHAT_MAX_TOKENS, max_context)
    return ChatRequest(model, checked, params, _flag(body, "stream"), _include_usage(body))


def parse_completion(body: Any, served: str, max_context: int) -> CompletionRequest:
    body = _object(body)
    model = _model(body, served)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string (one prompt per request)", param="prompt", code="invalid_type")
    params = sampling_params(body, COMPLETION_MAX_TOKENS, max_context)
    return CompletionRequest(model, prompt, params, _flag(body, "stream"), _include_usage(body), _flag(body, "echo"))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def finish_reason(reason: str | None) -> str | None:
    """Our finish reason in OpenAI's words: length stays, every kind of stop is "stop"."""
    return None if reason is None else FINISH_REASONS.get(reason, "stop")


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_response(request_id: str, model: str, text: str, reason: str | None, prompt_tokens: int,
                  completion_tokens: int) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish_reason(reason)}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(request_id: str, model: str, delta: dict[str, str], reason: str | None) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason(reason)}]}


def completion_response(request_id: str, model: str, text: str, reason: str | None, prompt_tokens: int,
                        completion_tokens: int) -> dict[str, Any]:
    return {"id": request_id, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason(reason)}],
            "usage": usage(prompt_tokens, completion_tokens)}


def completion_chunk(request_id: str, model: str, text: str, reason: str | None) -> dict[str, Any]:
    return {"id": request_id, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason(reason)}]}


def usage_chunk(request_id: str, model: str, kind: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last streamed chunk when stream_options.include_usage is set: no choices, the usage."""
    return {"id": request_id, "object": kind, "created": int(time.time()), "model": model, "choices": [],
            "usage": usage(prompt_tokens, completion_tokens)}
