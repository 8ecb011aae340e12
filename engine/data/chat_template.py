"""Chat templates: a conversation as token ids plus the loss mask fine-tuning trains on.

Two templates:
- "special": `<|bos|>` then `<|system_start|>…<|system_end|>`, `<|user_start|>…<|user_end|>`,
  `<|assistant_start|>…<|assistant_end|>` per message (our trained BPE has these tokens).
- "plain": the original's text format, `Human: {user}\\nAssistant: {assistant}\\n` per exchange with an
  optional `{system}\\n` first line; works with any tokenizer, GPT-2 included.

Every piece is tokenised on its own, so the mask covers exactly the assistant's tokens and its
end-of-turn token, and training and generation see the same ids for the same conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from engine.config import ChatTemplate
from engine.data.tokenizer import (
    ASSISTANT_END,
    ASSISTANT_START,
    SYSTEM_END,
    SYSTEM_START,
    USER_END,
    USER_START,
)
from engine.errors import ConfigError, DataError

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}
TEMPLATES: tuple[str, ...] = get_args(ChatTemplate)
ROLES = ("system", "user", "assistant")

# the plain template's pieces; the assistant's turn ends with the newline, which it learns to emit
PLAIN_USER_PREFIX = "Human: "
PLAIN_ASSISTANT_PREFIX = "Assistant: "
PLAIN_TURN_END = "\n"
# a base model continues the transcript with the next human line; "Human:" anywhere also stops,
# as in the original's chat.py, which covers a reply that starts with it
PLAIN_STOP_STRINGS = ("\nHuman:", "Human:")

_SPECIAL_MARKERS = {
    "system": (SYSTEM_START, SYSTEM_END),
    "user": (USER_START, USER_END),
    "assistant": (ASSISTANT_START, ASSISTANT_END),
}


def default_template(tokenizer: Any) -> str:
    """"special" when the tokenizer has the chat role tokens, else "plain" (e.g. GPT-2)."""
    return "special" if ASSISTANT_START in tokenizer.special_tokens else "plain"


def _check_template(template: str, tokenizer: Any) -> None:
    if template not in TEMPLATES:
        raise ConfigError(f"unknown chat template {template!r}", hint=f"choose one of: {', '.join(TEMPLATES)}")
    if template == "special":
        missing = [token for pair in _SPECIAL_MARKERS.values() for token in pair if token not in tokenizer.special_tokens]
        if missing:
            raise ConfigError(
                f"the {tokenizer.kind} tokenizer has no {missing[0]} token, which the 'special' template needs",
                hint="use the 'plain' template with this model",
            )


def _check_message(index: int, message: Any) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise DataError(f"message {index} is a {type(message).__name__}, expected an object with role and content")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise DataError(f"message {index} has role {role!r}", hint=f"roles are: {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise DataError(f"message {index} ({role}) has no text content")
    return role, content


def render(messages: Sequence[Message], template: str, tokenizer: Any, *,
           add_generation_prompt: bool = False) -> tuple[list[int], list[bool]]:
    """(token ids starting with BOS, loss mask): True exactly on assistant contents and their end-of-turn.

    add_generation_prompt appends the opening of an assistant turn, ready for the model to reply.
    """
    _check_template(template, tokenizer)
    ids: list[int] = [tokenizer.bos_id]
    mask: list[bool] = [False]

    def add(piece_ids: list[int], trained: bool) -> None:
        ids.extend(piece_ids)
        mask.extend([trained] * len(piece_ids))

    special = tokenizer.special_tokens
    for index, message in enumerate(messages):
        role, content = _check_message(index, message)
        is_assistant = role == "assistant"
        if template == "special":
            start, end = _SPECIAL_MARKERS[role]
            add([special[start]], False)
            add(tokenizer.encode(content), is_assistant)
            add([special[end]], is_assistant)
        elif role == "system":
            add(tokenizer.encode(content + PLAIN_TURN_END), False)
        elif role == "user":
            add(tokenizer.encode(PLAIN_USER_PREFIX + content + PLAIN_TURN_END), False)
        else:
            add(tokenizer.encode(PLAIN_ASSISTANT_PREFIX), False)
            add(tokenizer.encode(content), True)
            add(tokenizer.encode(PLAIN_TURN_END), True)
    if add_generation_prompt:
        if template == "special":
            add([special[ASSISTANT_START]], False)
        else:
            add(tokenizer.encode(PLAIN_ASSISTANT_PREFIX), False)
    return ids, mask


def stop_conditions(template: str, tokenizer: Any) -> tuple[list[int], list[str]]:
    """(stop token ids, stop strings) that end an assistant reply under `template`."""
    _check_template(template, tokenizer)
    if template == "special":
        # the end of turn first; any other special token (a model that skips the end and opens the
        # next turn or document, or emits padding) cannot belong to a reply either
        stop_ids = [tokenizer.special_tokens[ASSISTANT_END], *tokenizer.special_tokens.values(), tokenizer.bos_id]
        return list(dict.fromkeys(stop_ids)), []
    return [tokenizer.bos_id], list(PLAIN_STOP_STRINGS)
