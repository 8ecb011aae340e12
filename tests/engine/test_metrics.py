"""metrics.jsonl: incremental reading, torn lines held back, unknown lines skipped."""

from __future__ import annotations

from pathlib import Path

from engine.metrics import MetricsReader, MetricsWriter, read_metrics


def test_reader_reads_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path)
    reader = MetricsReader(path)
    writer.write("train", 1, loss=3.0)
    assert [e["loss"] for e in reader.read_new()] == [3.0]
    assert reader.read_new() == [], "a second read without new lines must return nothing"
    with open(path, "a") as handle:
        handle.write('{"t": 1, "step": 2, "kind": "train", "lo')  # torn: a crash mid-write
    assert reader.read_new() == [], "a torn last line must be held back"
    with open(path, "a") as handle:
        handle.write('ss": 2.5}\n')
    assert [e["loss"] for e in reader.read_new()] == [2.5], "the completed line must be read once"


def test_unknown_and_garbage_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('not json\n{"kind": "mystery", "step": 1}\n[1,2]\n{"t":0,"step":3,"kind":"val","val_loss":2}\n')
    events = read_metrics(path)
    assert [e["kind"] for e in events] == ["val"]


def test_writer_starts_a_fresh_line_after_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"t":0,"step":1,"kind":"train","loss":1}\n{"t":0,"step":2,"ki')
    writer = MetricsWriter(path)
    writer.write("train", 3, loss=0.5)
    writer.close()
    assert [e["step"] for e in read_metrics(path)] == [1, 3]
