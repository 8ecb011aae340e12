"""`nanogpt-tui data fineweb`, `data tokenize` and `estimate` from the command line (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data.shards import read_shard_header
from engine.data.tokenizer import train_bpe
from nanogpt_tui.cli import run_cli
from tests.engine.test_fineweb import _fake_huggingface_hub, _hub_folder
from tests.helpers import VERSE


def test_fineweb_download_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    downloaded = _fake_huggingface_hub(monkeypatch, _hub_folder(tmp_path / "hub"))
    dest = tmp_path / "fineweb10B"
    assert run_cli(["data", "fineweb", "--shards", "2", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "[1/3] fineweb_val_000000.bin: downloading" in out and "[3/3] fineweb_train_000002.bin: ok" in out
    assert f"data.train_files='{dest.resolve()}/fineweb_train_*.bin'" in out, out
    assert len(downloaded) == 3 and read_shard_header(dest / "fineweb_train_000002.bin") > 0
    assert run_cli(["data", "fineweb", "--shards", "2", "--dest", str(dest)]) == 0
    assert capsys.readouterr().out.count("already complete") == 3 and len(downloaded) == 3


def test_fineweb_offline_is_an_error_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _fake_huggingface_hub(monkeypatch, _hub_folder(tmp_path / "hub"), offline=True)
    assert run_cli(["data", "fineweb", "--shards", "1", "--dest", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the Hugging Face Hub") and "\nhint: " in err, err


def test_tokenize_a_folder_with_a_saved_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    for index, part in enumerate(VERSE.split("\n\n")):
        (folder / f"{index}.txt").write_text(part, encoding="utf-8")
    train_bpe([VERSE] * 4, vocab_size=300).save(tmp_path / "tok")
    out = tmp_path / "shards"
    code = run_cli(["data", "tokenize", str(folder), "--out", str(out), "--tokenizer", str(tmp_path / "tok"),
                    "--workers", "1", "--val-every", "2", "--shard-tokens", "1000"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "3 documents" in printed and "tokenizer saved in" in printed, printed
    assert sorted(p.name for p in out.glob("val_*.bin")) == ["val_000000.bin"]
    assert sorted(p.name for p in out.glob("train_*.bin")) == ["train_000000.bin"] and (out / "tokenizer" / "tokenizer.json").exists()
    assert run_cli(["data", "tokenize", str(folder), "--out", str(tmp_path / "o"), "--tokenizer", "ghost"]) == 1
    assert "no run or tokenizer folder named 'ghost'" in capsys.readouterr().err


def test_estimate_prints_size_tokens_and_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["estimate", "--preset", "speedrun-124m", "--nproc", "8"]) == 0
    out = capsys.readouterr().out
    assert "on 8 rank(s)" in out and "parameters       275.6M" in out, out
    assert "393,216 = 8 sequences x 49,152 tokens" in out and "accumulates 1 micro-batch" in out
    assert "memory per rank" in out and "GiB" in out
    assert run_cli(["estimate", "--preset", "speedrun-124m", "--nproc", "3"]) == 1
    assert "multiple of processes x micro_batch_size" in capsys.readouterr().err
