"""Conversation files for fine-tuning: read and validate them, with exact locations (rows: conversation_rows.py).

Accepted: the original's JSON `{"conversations": [{"messages": [{"role", "content"}, ...]}, ...]}`, JSONL
with one `{"messages": [...]}` per line, or a folder of such files. Every problem is reported with
its file, line (JSONL), conversation index, message index and field; nothing is skipped unless the
caller asks for it. A .json file is parsed whole, so one over the size limit is refused; a .jsonl
file is read line by line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.data.chat_template import ROLES
from engine.errors import DataError
from engine.text_input import text_problem

SUFFIXES = (".json", ".jsonl")
# how many problems an error message lists before "… and N more"
MAX_LISTED = 20
NESTED_TOO_DEEPLY = "is nested too deeply to be conversation data (JSON arrays or objects inside each other)"
_MB = 1024 * 1024


@dataclass(frozen=True)
class Issue:
    """One problem in the data: where (file, line, conversation, message, field) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class Conversation:
    """A valid conversation and where it came from (`chat.json: conversations[3]`, `chat.jsonl:7`)."""

    messages: list[dict[str, str]]
    source: str


@dataclass
class ConversationReport:
    """Everything read from a path: the valid conversations and every problem found."""

    files: list[Path] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    invalid: int = 0  # conversations with at least one problem
    broken_files: int = 0  # files that could not be read as conversations at all

    @property
    def total(self) -> int:
        return len(self.conversations) + self.invalid

    @property
    def ok(self) -> bool:
        return not self.issues and bool(self.conversations)

    def summary_lines(self) -> list[str]:
        """Counts a user checks before training: files, conversations, messages, characters."""
        messages = sum(len(c.messages) for c in self.conversations)
        chars = sum(len(m["content"]) for c in self.conversations for m in c.messages)
        assistant = sum(len(m["content"]) for c in self.conversations for m in c.messages if m["role"] == "assistant")
        lines = [f"files: {len(self.files)}",
                 f"conversations: {len(self.conversations)} valid, {self.invalid} invalid",
                 f"messages: {messages}",
                 f"characters: {chars} ({100 * assistant / max(chars, 1):.1f}% assistant)"]
        if self.broken_files:
            lines.append(f"unreadable files: {self.broken_files}")
        return lines

    def problem_text(self) -> str:
        """The count, then the problems (at most MAX_LISTED), one per line."""
        head = f"{len(self.issues)} problem(s) in {self.invalid} of {self.total} conversation(s)"
        if self.broken_files:
            head += f" and {self.broken_files} unreadable file(s)"
        return f"{head}:\n{format_issues(self.issues)}"


def format_issues(issues: list[Issue]) -> str:
    """One indented line per problem, at most MAX_LISTED of them."""
    return "\n".join(f"  {line}" for line in first_few(issues))


def first_few(items: Sequence[object], limit: int = MAX_LISTED) -> list[str]:
    """The first `limit` items as lines, then one line with how many more there are."""
    more = [f"… and {len(items) - limit:,} more"] if len(items) > limit else []
    return [str(item) for item in items[:limit]] + more


def _got(value: Any) -> str:
    """A JSON value as an error message names it: strings quoted, containers by kind."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 40 else text[:37] + '…"'
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return "a list" if isinstance(value, list) else "an object"


def _at(where: str, field_path: str) -> str:
    return f"{where}: {field_path}" if field_path else where


def check_conversation(value: Any, where: str, field_path: str = "") -> list[Issue]:
    """Problems of one conversation; `where` is the file (and line), `field_path` e.g. "conversations[3]"."""
    dot = f"{field_path}." if field_path else ""
    if not isinstance(value, dict):
        return [Issue(_at(where, field_path), f'expected an object with "messages", got {_got(value)}')]
    if "messages" not in value:
        return [Issue(_at(where, f"{dot}messages"), "missing")]
    messages = value["messages"]
    if not isinstance(messages, list):
        return [Issue(_at(where, f"{dot}messages"), f"expected a list of messages, got {_got(messages)}")]
    if not messages:
        return [Issue(_at(where, f"{dot}messages"), "is empty")]
    issues: list[Issue] = []
    for index, message in enumerate(messages):
        at = _at(where, f"{dot}messages[{index}]")
        if not isinstance(message, dict):
            issues.append(Issue(at, f'expected an object with "role" and "content", got {_got(message)}'))
            continue
        role = message.get("role")
        if "role" not in message:
            issues.append(Issue(f"{at}.role", "missing"))
        elif role not in ROLES:
            issues.append(Issue(f"{at}.role", f"expected one of {'/'.join(ROLES)}, got {_got(role)}"))
        elif role == "system" and index > 0:
            issues.append(Issue(f"{at}.role", '"system" may only be the first message'))
        content = message.get("content")
        if "content" not in message:
            issues.append(Issue(f"{at}.content", "missing"))
        elif not isinstance(content, str):
            issues.append(Issue(f"{at}.content", f"expected a string, got {_got(content)}"))
        elif not content.strip():
            issues.append(Issue(f"{at}.content", "is empty"))
        elif (problem := text_problem(content)) is not None:
            issues.append(Issue(f"{at}.content", problem))
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        issues.append(Issue(_at(where, field_path), "has no assistant message, so nothing to train on"))
    return issues


def _conversation_files(path: Path) -> list[Path]:
    if not path.exists():
        raise DataError(f"conversation data {path} does not exist",
                        hint="give a .json or .jsonl file of conversations, or a folder of them")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataError(f"the folder {path} has no .json or .jsonl files",
                        hint="conversation files end in .json ({\"conversations\": [...]}) or .jsonl")
    return files


def _too_large(path: Path, what: str, limit_mb: float) -> DataError:
    return DataError(
        f"{path}: {what}, over the {limit_mb:g} MB limit (finetune.max_file_mb)",
        hint='split it, convert it to .jsonl (one {"messages": [...]} per line, read line by line), '
             "or raise the limit with --set finetune.max_file_mb=…",
    )


def _add(report: ConversationReport, value: Any, where: str, field_path: str) -> None:
    issues = check_conversation(value, where, field_path)
    if issues:
        report.issues.extend(issues)
        report.invalid += 1
    else:
        messages = [{"role": m["role"], "content": m["content"]} for m in value["messages"]]
        report.conversations.append(Conversation(messages, _at(where, field_path)))


def _json_conversations(path: Path, label: str, max_file_mb: float) -> list[Any] | Issue:
    """The file's "conversations" list, or the one problem that makes the whole file unusable."""
    size = path.stat().st_size
    if size > max_file_mb * _MB:
        raise _too_large(path, f"the file is {size / _MB:.1f} MB", max_file_mb)
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        return Issue(label, f"is not UTF-8 text (byte {err.start})")
    except json.JSONDecodeError as err:
        return Issue(f"{label}:{err.lineno}:{err.colno}", f"not valid JSON: {err.msg}")
    except RecursionError:
        return Issue(label, NESTED_TOO_DEEPLY)
    if not isinstance(data, dict):
        return Issue(label, f'expected an object {{"conversations": [...]}}, got {_got(data)}')
    if "conversations" not in data:
        return Issue(f"{label}: conversations", "missing (expected {\"conversations\": [...]})")
    conversations = data["conversations"]
    if not isinstance(conversations, list):
        return Issue(f"{label}: conversations", f"expected a list, got {_got(conversations)}")
    return conversations or Issue(f"{label}: conversations", "is empty")


def _read_json(path: Path, label: str, report: ConversationReport, max_file_mb: float) -> None:
    conversations = _json_conversations(path, label, max_file_mb)
    if isinstance(conversations, Issue):
        report.issues.append(conversations)
        report.broken_files += 1
        return
    for index, value in enumerate(conversations):
        _add(report, value, label, f"conversations[{index}]")


def _read_jsonl(path: Path, label: str, report: ConversationReport, max_file_mb: float) -> None:
    limit = int(max_file_mb * _MB)
    seen = 0
    with open(path, "rb") as handle:
        # readline with a limit: one huge line is refused without reading it all into memory
        for number, raw in enumerate(iter(lambda: handle.readline(limit + 1), b""), start=1):
            if len(raw) > limit:
                raise _too_large(path, f"line {number} is longer", max_file_mb)
            if not raw.strip():
                continue
            seen += 1
            where = f"{label}:{number}"
            try:
                value = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError as err:
                report.issues.append(Issue(where, f"is not UTF-8 text (byte {err.start})"))
                report.invalid += 1
                continue
            except json.JSONDecodeError as err:
                report.issues.append(Issue(f"{where}:{err.colno}", f"not valid JSON: {err.msg}"))
                report.invalid += 1
                continue
            except RecursionError:
                report.issues.append(Issue(where, NESTED_TOO_DEEPLY))
                report.invalid += 1
                continue
            _add(report, value, where, "")
    if not seen:
        report.issues.append(Issue(label, "has no conversations (every line is blank)"))
        report.broken_files += 1


def read_conversations(path: str | Path, *, max_file_mb: float = 256.0) -> ConversationReport:
    """Read and validate every conversation under `path`; problems are collected, not raised.

    Raises DataError only when there is nothing to read (a missing path, an empty folder) or a file
    is over the size limit.
    """
    root = Path(path).expanduser()
    report = ConversationReport(files=_conversation_files(root))
    for file in report.files:
        label = str(file) if file == root else str(file.relative_to(root))
        if file.suffix == ".jsonl":
            _read_jsonl(file, label, report, max_file_mb)
        else:
            _read_json(file, label, report, max_file_mb)
    return report


def require_valid(report: ConversationReport, path: str | Path, *, skip_invalid: bool) -> list[Conversation]:
    """The conversations to train on; invalid data raises DataError unless skip_invalid (then it is reported)."""
    if report.issues and not skip_invalid:
        raise DataError(f"{path}: {report.problem_text()}",
                        hint="fix these, or train on the valid conversations only with --skip-invalid")
    if not report.conversations:
        raise DataError(f"{path} has no valid conversations" + (f": {report.problem_text()}" if report.issues else ""),
                        hint='each conversation needs "messages" with at least one assistant message')
    return report.conversations
