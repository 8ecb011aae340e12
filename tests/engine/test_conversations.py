"""Conversation data: every validation problem with its location, formats, size limit, mask and packing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.data.conversation_rows import build_dataset, pack_rows, render_conversations
from engine.data.conversations import ConversationReport, read_conversations, require_valid
from engine.data.examples import example_path
from engine.errors import DataError
from tests.helpers import VERSE

REPO = Path(__file__).resolve().parents[2]


def _ok(user: str = "Who goes there?", reply: str = "A friend, good sir.") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def _write_json(path: Path, conversations: list[Any]) -> Path:
    path.write_text(json.dumps({"conversations": conversations}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer():
    from engine.data.tokenizer import train_bpe

    return train_bpe([VERSE] * 5, 320)


def test_the_issue_example_names_file_conversation_message_and_field(tmp_path: Path) -> None:
    conversations = [_ok() for _ in range(13)]
    conversations[12] = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                      {"role": "user", "content": "c"}, {"role": "bot", "content": "d"}]}
    report = read_conversations(_write_json(tmp_path / "chat.json", conversations))
    assert [str(issue) for issue in report.issues] == [
        f"{tmp_path / 'chat.json'}: conversations[12].messages[3].role: expected one of system/user/assistant, got \"bot\""
    ]
    assert (len(report.conversations), report.invalid, report.total) == (12, 1, 13)
    assert report.problem_text().startswith("1 problem(s) in 1 of 13 conversation(s):")


@pytest.mark.parametrize("conversation,location,message", [
    ("just text", "conversations[0]", 'expected an object with "messages", got "just text"'),
    ({"msgs": []}, "conversations[0].messages", "missing"),
    ({"messages": "hi"}, "conversations[0].messages", 'expected a list of messages, got "hi"'),
    ({"messages": []}, "conversations[0].messages", "is empty"),
    ({"messages": [7, {"role": "assistant", "content": "x"}]}, "conversations[0].messages[0]",
     'expected an object with "role" and "content", got the number 7'),
    ({"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}]}, "conversations[0].messages[0].role",
     "missing"),
    ({"messages": [{"role": None, "content": "x"}, {"role": "assistant", "content": "y"}]},
     "conversations[0].messages[0].role", "expected one of system/user/assistant, got null"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}, "conversations[0].messages[0].content",
     "missing"),
    ({"messages": [{"role": "user", "content": ["x"]}, {"role": "assistant", "content": "y"}]},
     "conversations[0].messages[0].content", "expected a string, got a list"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": 5}]},
     "conversations[0].messages[1].content", "expected a string, got the number 5"),
    ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}]},
     "conversations[0].messages[0].content", "is empty"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": " \n "}]},
     "conversations[0].messages[1].content", "is empty"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}, "conversations[0]",
     "has no assistant message, so nothing to train on"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"},
                   {"role": "assistant", "content": "y"}]}, "conversations[0].messages[1].role",
     '"system" may only be the first message'),
])
def test_each_problem_is_reported_at_its_location(tmp_path: Path, conversation: Any, location: str, message: str) -> None:
    path = _write_json(tmp_path / "c.json", [conversation, _ok()])
    report = read_conversations(path)
    assert [str(i) for i in report.issues] == [f"{path}: {location}: {message}"]
    assert len(report.conversations) == 1 and report.invalid == 1 and not report.ok


@pytest.mark.parametrize("text,location,message", [
    ('{"conversations": [', ":1:20", "not valid JSON"),
    ("[1, 2]", "", 'expected an object {"conversations": [...]}, got a list'),
    ('{"dialogues": []}', ": conversations", "missing"),
    ('{"conversations": {"a": 1}}', ": conversations", "expected a list, got an object"),
    ('{"conversations": []}', ": conversations", "is empty"),
])
def test_file_level_problems(tmp_path: Path, text: str, location: str, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text, encoding="utf-8")
    report = read_conversations(path)
    assert len(report.issues) == 1 and str(report.issues[0]).startswith(f"{path}{location}: {message}"), report.issues
    assert report.broken_files == 1 and not report.conversations


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b'{"conversations": ["\xff"]}')
    assert "is not UTF-8 text" in str(read_conversations(path).issues[0])


def test_jsonl_reports_line_numbers_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    bad_role = {"messages": [{"role": "human", "content": "x"}, {"role": "assistant", "content": "y"}]}
    lines = [json.dumps(_ok()), "", "{oops", "[1]", json.dumps(bad_role), json.dumps(_ok("Hi", "Hail."))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = read_conversations(path)
    assert [str(i) for i in report.issues] == [
        f"{path}:3:2: not valid JSON: Expecting property name enclosed in double quotes",
        f"{path}:4: expected an object with \"messages\", got a list",
        f"{path}:5: messages[0].role: expected one of system/user/assistant, got \"human\"",
    ]
    assert [c.source for c in report.conversations] == [f"{path}:1", f"{path}:6"]


def test_original_json_and_jsonl_load_the_same_conversations(tmp_path: Path) -> None:
    conversations = [_ok("Hello, how are you?", "Well, I thank thee."), _ok("Capital of France?", "Paris, my lord.")]
    whole = _write_json(tmp_path / "finetune_data.json", conversations)
    lines = tmp_path / "data.jsonl"
    lines.write_text("".join(json.dumps(c) + "\n" for c in conversations), encoding="utf-8")
    from_json, from_jsonl = read_conversations(whole), read_conversations(lines)
    assert from_json.ok and from_jsonl.ok
    assert [c.messages for c in from_json.conversations] == [c.messages for c in from_jsonl.conversations] \
        == [c["messages"] for c in conversations]


def test_folder_reads_json_and_jsonl_with_relative_names(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    _write_json(folder / "a.json", [_ok()])
    (folder / "sub" / "b.jsonl").write_text(json.dumps({"messages": []}) + "\n", encoding="utf-8")
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    report = read_conversations(folder)
    assert [f.name for f in report.files] == ["a.json", "b.jsonl"]
    assert [str(i) for i in report.issues] == ["sub/b.jsonl:1: messages: is empty"]


def test_missing_path_and_empty_folder_are_data_errors_never_dummy_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_conversations(tmp_path / "finetune_data.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .json or .jsonl files"):
        read_conversations(tmp_path / "empty")


def test_size_limit_refuses_large_json_but_streams_jsonl(tmp_path: Path) -> None:
    conversations = [_ok(f"Question {i}?", "An answer, sir. " * 20) for i in range(200)]
    big_json = _write_json(tmp_path / "big.json", conversations)
    limit_mb = big_json.stat().st_size / 2 / 2**20
    with pytest.raises(DataError, match="over the .* MB limit \\(finetune.max_file_mb\\)") as err:
        read_conversations(big_json, max_file_mb=limit_mb)
    assert ".jsonl" in err.value.hint
    big_jsonl = tmp_path / "big.jsonl"
    big_jsonl.write_text("".join(json.dumps(c) + "\n" for c in conversations), encoding="utf-8")
    assert len(read_conversations(big_jsonl, max_file_mb=limit_mb).conversations) == 200
    with pytest.raises(DataError, match="line 1 is longer, over the"):
        read_conversations(big_jsonl, max_file_mb=100 / 2**20)


def test_require_valid_refuses_or_skips_and_counts(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "c.json", [_ok(), {"messages": []}, "x", _ok()])
    report = read_conversations(path)
    with pytest.raises(DataError) as err:
        require_valid(report, path, skip_invalid=False)
    assert "2 problem(s) in 2 of 4 conversation(s)" in err.value.message
    assert "conversations[1].messages: is empty" in err.value.message and "--skip-invalid" in err.value.hint
    assert len(require_valid(report, path, skip_invalid=True)) == 2
    with pytest.raises(DataError, match="no valid conversations"):
        require_valid(ConversationReport(files=[path]), path, skip_invalid=True)


def _spans(tokens: list[int], mask: list[bool]) -> list[list[int]]:
    """Runs of consecutive masked tokens."""
    spans: list[list[int]] = []
    for index, (token, keep) in enumerate(zip(tokens, mask)):
        if keep:
            if index == 0 or not mask[index - 1]:
                spans.append([])
            spans[-1].append(token)
    return spans


def test_mask_covers_exactly_the_assistant_replies(tmp_path: Path, tokenizer) -> None:
    conversations = [
        {"messages": [{"role": "system", "content": "Speak in verse."}, {"role": "user", "content": "Who art thou?"},
                      {"role": "assistant", "content": "A humble player."}, {"role": "user", "content": "And then?"},
                      {"role": "assistant", "content": "I bow, and exit."}]},
        _ok("What light?", "It is the east."),
    ]
    report = read_conversations(_write_json(tmp_path / "c.json", conversations))
    rendered, issues, warnings = render_conversations(report.conversations, "special", tokenizer, max_tokens=129,
                                                      overflow="error")
    assert not issues and not warnings
    rows = pack_rows(rendered, 128, tokenizer.bos_id)
    assert len(rows) == 1, "two short conversations should share one row"
    tokens, mask = rows.tokens[0].tolist(), rows.mask[0].tolist()
    decoded = [tokenizer.decode(span) for span in _spans(tokens, mask)]
    assert decoded == ["A humble player.<|assistant_end|>", "I bow, and exit.<|assistant_end|>",
                       "It is the east.<|assistant_end|>"]
    # each conversation starts with BOS (document masking), and padding (BOS ids) is never trained on
    starts = [index for index, token in enumerate(tokens) if token == tokenizer.bos_id]
    used = sum(len(r.tokens) for r in rendered)
    assert starts[:2] == [0, len(rendered[0].tokens)]
    assert used < 129 and all(tokens[i] == tokenizer.bos_id and not mask[i] for i in range(used, 129))


def test_packing_never_splits_a_conversation(tokenizer) -> None:
    from engine.data.conversations import Conversation

    conversations = [Conversation(_ok(f"Question {i}?", "Answer " * (i % 7 + 1))["messages"], f"c{i}") for i in range(30)]
    rendered, _, _ = render_conversations(conversations, "special", tokenizer, max_tokens=33, overflow="truncate")
    rows = pack_rows(rendered, 32, tokenizer.bos_id)
    assert rows.tokens.shape[1] == 33
    assert int(rows.mask.sum()) == sum(sum(r.mask) for r in rendered), "every trained token lands in some row"
    flat = [t for row in rows.tokens.tolist() for t in row]
    joined = [t for r in rendered for t in r.tokens]
    assert [t for t in flat if t != tokenizer.bos_id] == [t for t in joined if t != tokenizer.bos_id]


def test_overflow_truncates_with_a_warning_or_is_an_error(tmp_path: Path, tokenizer) -> None:
    long_reply = "To be, or not to be, that is the question. " * 10
    report = read_conversations(_write_json(tmp_path / "c.json", [_ok(), _ok("Speak!", long_reply), _ok(), _ok()]))
    common = dict(template="special", seq_len=32, val_fraction=0.25, seed=0)
    dataset = build_dataset(report.conversations, tokenizer, overflow="truncate", skip_invalid=False, **common)
    assert len(dataset.warnings) == 1 and "conversations[1]: truncated from" in dataset.warnings[0]
    with pytest.raises(DataError, match="conversations\\[1\\]: is .* tokens, longer than the context \\(33"):
        build_dataset(report.conversations, tokenizer, overflow="error", skip_invalid=False, **common)
    skipped = build_dataset(report.conversations, tokenizer, overflow="error", skip_invalid=True, **common)
    assert skipped.train_conversations + skipped.val_conversations == 3 and "(skipped)" in skipped.warnings[0]
    prompt_only = read_conversations(_write_json(tmp_path / "p.json", [_ok(long_reply, "Aye."), _ok(), _ok()]))
    dropped = build_dataset(prompt_only.conversations, tokenizer, overflow="truncate", skip_invalid=False, **common)
    assert "dropped: no assistant token is left" in dropped.warnings[0]


def test_split_keeps_one_conversation_on_each_side(tmp_path: Path, tokenizer) -> None:
    report = read_conversations(_write_json(tmp_path / "c.json", [_ok(), _ok("Hi", "Hail.")]))
    dataset = build_dataset(report.conversations, tokenizer, template="special", seq_len=32, val_fraction=0.01, seed=3,
                            overflow="error", skip_invalid=False)
    assert (dataset.train_conversations, dataset.val_conversations) == (1, 1)
    assert dataset.sample_prompt and dataset.sample_prompt[0]["role"] == "user"
    assert any("trained on" in line for line in dataset.summary_lines())
    one = read_conversations(_write_json(tmp_path / "one.json", [_ok()]))
    with pytest.raises(DataError, match="at least 2 conversations"):
        build_dataset(one.conversations, tokenizer, template="special", seq_len=32, val_fraction=0.5, seed=0,
                      overflow="error", skip_invalid=False)


def test_the_shipped_example_is_valid_and_regenerates_identically(tmp_path: Path) -> None:
    example = example_path()
    report = read_conversations(example)
    assert report.ok and len(report.conversations) >= 200, report.problem_text()
    output = tmp_path / "again.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_example_conversations.py"), "--output", str(output)],
                   check=True, capture_output=True)
    assert output.read_bytes() == example.read_bytes(), "the example file differs from what its script writes"
