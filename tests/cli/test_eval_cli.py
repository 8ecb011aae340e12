"""`nanogpt-tui eval`: a table with val loss and bits per byte on any data, then samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data.tokenizer import BPETokenizer, train_bpe
from nanogpt_tui.cli import run_cli
from tests.cli.test_generate_cli import make_run
from tests.engine.test_generate import TEXT, one_thread  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return train_bpe([TEXT], 300)


def _table(out: str) -> dict[str, str]:
    rows = {}
    for line in out.split("\n---")[0].splitlines():
        name, _, value = line.partition("  ")
        rows[name.strip()] = value.strip()
    return rows


def test_eval_on_a_text_file_with_samples(isolated_home: Path, tokenizer: BPETokenizer, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    make_run(isolated_home / "data" / "runs", "tiny", tokenizer)
    text = tmp_path / "eval.txt"
    text.write_text(TEXT[:3000], encoding="utf-8")
    argv = ["eval", "tiny", "--data", str(text), "--prompt", "hello", "--prompt", "the fox", "--temperature", "0",
            "--max-tokens", "5", "--seq-len", "64"]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    table = _table(out)
    assert table["data"] == str(text) and table["row length"] == "64"
    assert float(table["val loss"]) > 0 and float(table["bits per byte"]) > 0
    assert out.count("--- sample (") == 2 and "\nhello" in out and "\nthe fox" in out


def test_eval_defaults_to_the_runs_held_out_split(isolated_home: Path, tokenizer: BPETokenizer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 2, encoding="utf-8")
    make_run(isolated_home / "data" / "runs", "tiny", tokenizer, corpus=str(corpus))
    assert run_cli(["eval", "--samples", "0", "--max-eval-tokens", "512"]) == 0
    captured = capsys.readouterr()
    table = _table(captured.out)
    assert table["data"] == f"held-out 10% of {corpus}" and int(table["tokens"].replace(",", "")) <= 512
    assert "newest checkpoint of the newest run: tiny" in captured.err and "--- sample" not in captured.out


def test_eval_without_data_for_a_run_without_a_corpus(isolated_home: Path, tokenizer: BPETokenizer,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    make_run(isolated_home / "data" / "runs", "tiny", tokenizer, corpus=str(isolated_home / "gone.txt"))
    assert run_cli(["eval", "tiny"]) == 1
    assert "error: the corpus" in capsys.readouterr().err
