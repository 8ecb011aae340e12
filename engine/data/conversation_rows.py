"""Checked conversations into training rows: render with a chat template, split, pack into rows of tokens.

The rows carry a mask of the tokens trained on (assistant replies); padding is never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.data.conversations import Conversation, Issue, format_issues
from engine.errors import DataError

if TYPE_CHECKING:  # torch is imported where rows are built, so reading this module stays light
    from torch import Tensor


@dataclass(frozen=True)
class RenderedConversation:
    """Token ids (starting with BOS) and, per token, whether it is trained on as a target."""

    tokens: list[int]
    mask: list[bool]
    conversation: Conversation


@dataclass(frozen=True)
class PackedRows:
    """Rows of seq_len + 1 tokens: inputs are row[:-1], targets row[1:], trained where mask[1:]."""

    tokens: Tensor  # (rows, seq_len + 1) int32
    mask: Tensor  # (rows, seq_len + 1) bool

    def __len__(self) -> int:
        return self.tokens.size(0)


def render_conversations(conversations: list[Conversation], template: str, tokenizer: Any, *, max_tokens: int,
                         overflow: str) -> tuple[list[RenderedConversation], list[Issue], list[str]]:
    """(rendered, problems, warnings): a conversation over max_tokens is an error or is truncated."""
    from engine.data.chat_template import render

    rendered: list[RenderedConversation] = []
    issues: list[Issue] = []
    warnings: list[str] = []
    for conversation in conversations:
        tokens, mask = render(conversation.messages, template, tokenizer)
        length = len(tokens)
        if length > max_tokens:
            if overflow == "error":
                issues.append(Issue(conversation.source, f"is {length} tokens, longer than the context "
                                                         f"({max_tokens}, train.train_seq_len)"))
                continue
            tokens, mask = tokens[:max_tokens], mask[:max_tokens]
            if not any(mask):
                warnings.append(f"{conversation.source}: dropped: no assistant token is left after truncating "
                                f"to {max_tokens} tokens")
                continue
            warnings.append(f"{conversation.source}: truncated from {length} to {max_tokens} tokens")
        rendered.append(RenderedConversation(tokens, mask, conversation))
    return rendered, issues, warnings


def pack_rows(items: list[RenderedConversation], seq_len: int, pad_id: int) -> PackedRows:
    """Pack conversations in order into rows of seq_len + 1 tokens, padding each row's end with pad_id.

    Every conversation starts with BOS, so document masking keeps attention inside it; padding is
    never trained on (mask off).
    """
    import torch

    width = seq_len + 1
    rows: list[tuple[list[int], list[bool]]] = []
    tokens: list[int] = []
    mask: list[bool] = []
    for item in items:
        assert len(item.tokens) <= width, f"{item.conversation.source} was not truncated to {width} tokens"
        if len(tokens) + len(item.tokens) > width:
            rows.append((tokens, mask))
            tokens, mask = [], []
        tokens.extend(item.tokens)
        mask.extend(item.mask)
    if tokens:
        rows.append((tokens, mask))
    token_rows = torch.full((len(rows), width), pad_id, dtype=torch.int32)
    mask_rows = torch.zeros((len(rows), width), dtype=torch.bool)
    for index, (row_tokens, row_mask) in enumerate(rows):
        token_rows[index, : len(row_tokens)] = torch.tensor(row_tokens, dtype=torch.int32)
        mask_rows[index, : len(row_mask)] = torch.tensor(row_mask, dtype=torch.bool)
    return PackedRows(token_rows, mask_rows)


def split_conversations(items: list[RenderedConversation], val_fraction: float,
                        seed: int) -> tuple[list[RenderedConversation], list[RenderedConversation]]:
    """A seeded shuffle, then (train, validation); both keep at least one conversation."""
    import torch

    if len(items) < 2:
        raise DataError(f"fine-tuning needs at least 2 conversations (one to train on, one to validate), "
                        f"got {len(items)}")
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [items[i] for i in order]
    num_val = min(len(items) - 1, max(1, round(len(items) * val_fraction)))
    return shuffled[num_val:], shuffled[:num_val]


@dataclass
class ConversationDataset:
    """Packed train and validation rows, with the counts a user checks before training."""

    train: PackedRows
    val: PackedRows
    template: str
    train_conversations: int
    val_conversations: int
    num_tokens: int  # rendered tokens, BOS included, padding excluded
    warnings: list[str]
    # the first held-out conversation up to its first reply: what run samples answer
    sample_prompt: list[dict[str, str]]

    def summary_lines(self) -> list[str]:
        width = self.train.tokens.size(1)
        trained = int(self.train.mask.sum()) + int(self.val.mask.sum())
        slots = (len(self.train) + len(self.val)) * width
        return [f"template: {self.template}",
                f"split: {self.train_conversations} train, {self.val_conversations} validation conversations",
                f"tokens: {self.num_tokens}, {trained} ({100 * trained / max(self.num_tokens, 1):.1f}%) "
                "trained on (assistant replies)",
                f"rows: {len(self.train)} train + {len(self.val)} validation of {width} tokens "
                f"({100 * (slots - self.num_tokens) / max(slots, 1):.1f}% padding)"]


def build_dataset(conversations: list[Conversation], tokenizer: Any, *, template: str, seq_len: int,
                  val_fraction: float, seed: int, overflow: str, skip_invalid: bool) -> ConversationDataset:
    """Render, check lengths, split and pack; too-long conversations follow `overflow`."""
    rendered, issues, warnings = render_conversations(conversations, template, tokenizer, max_tokens=seq_len + 1,
                                                      overflow=overflow)
    if issues and not skip_invalid:
        raise DataError(f"{len(issues)} conversation(s) do not fit the context:\n{format_issues(issues)}",
                        hint="shorten them, raise train.train_seq_len, set finetune.overflow=truncate, "
                             "or skip them with --skip-invalid")
    warnings = [str(issue) + " (skipped)" for issue in issues] + warnings
    train, val = split_conversations(rendered, val_fraction, seed)
    num_tokens = sum(len(item.tokens) for item in rendered)
    messages = val[0].conversation.messages
    prompt = messages[: next(i for i, m in enumerate(messages) if m["role"] == "assistant")]
    return ConversationDataset(pack_rows(train, seq_len, tokenizer.bos_id), pack_rows(val, seq_len, tokenizer.bos_id),
                               template, len(train), len(val), num_tokens, warnings, prompt)
