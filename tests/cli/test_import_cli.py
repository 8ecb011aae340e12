"""`nanogpt-tui import`: an original checkpoint becomes a run that `runs`, `generate` and `chat` can use."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import tiktoken
import torch

from engine.data import tokenizer as tokenizer_module
from engine.data.tokenizer import GPT2_EOT, SPLIT_PATTERN, GPT2Tokenizer
from engine.model import GPT
from nanogpt_tui.cli import run_cli
from tests.engine.test_generate import one_thread  # noqa: F401 (fixture)
from tests.engine.test_import import ORIGINAL_TINY, write_original


@pytest.fixture
def offline_gpt2(monkeypatch: pytest.MonkeyPatch) -> GPT2Tokenizer:
    """A byte-level stand-in for GPT-2 (257 ranks, <|endoftext|> = 257), so no download is needed."""
    ranks = {bytes([byte]): byte for byte in range(256)}
    ranks[b"th"] = 256
    encoding = tiktoken.Encoding(name="tiny-gpt2", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
                                 special_tokens={GPT2_EOT: 257})
    tokenizer = GPT2Tokenizer(encoding)
    monkeypatch.setattr(tokenizer_module, "gpt2_tokenizer", lambda: tokenizer)
    return tokenizer


def original_checkpoint(path: Path) -> Path:
    # vocabulary 258 = the stand-in's, whose last id is its <|endoftext|>, as the importer assumes
    torch.manual_seed(1)
    model = GPT(dataclasses.replace(ORIGINAL_TINY, vocab_size=258, bos_id=257))
    return write_original(path, model, step=1750)


def test_import_then_list_generate_and_chat(tmp_path: Path, offline_gpt2: GPT2Tokenizer,
                                            capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    source = original_checkpoint(tmp_path / "logs" / "0123abcd-run" / "state_step001750.pt")
    assert run_cli(["import", str(source), "--name", "speedrun"]) == 0
    out = capsys.readouterr().out
    assert "note: inferred from the tensor shapes: 4 layers, 1 heads of 128, dim 128" in out
    assert "imported" in out and "as run speedrun" in out
    assert run_cli(["runs"]) == 0
    listed = capsys.readouterr().out
    assert "speedrun" in listed and "import" in listed and "finished" in listed
    assert run_cli(["generate", "speedrun", "--prompt", "the", "--temperature", "0", "--max-tokens", "4"]) == 0
    assert "run speedrun, step 1750" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\nquit\n"))
    assert run_cli(["chat", "speedrun", "--max-tokens", "3"]) == 0
    assert "template: plain" in capsys.readouterr().out, "a GPT-2 model chats with the original's plain template"
    assert run_cli(["chat", "speedrun", "--template", "special"]) == 1
    assert "has no <|" in capsys.readouterr().err
    assert run_cli(["import", str(source)]) == 0
    assert "as run import-0123abcd-state_step001750" in capsys.readouterr().out


class Settings:
    """A module-level class, as the original's Hyperparameters, so torch.save pickles it by reference."""


def test_import_refuses_pickles_and_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pickled = tmp_path / "finetuned_model.pt"
    torch.save({"model_state_dict": {}, "hyperparameters": Settings()}, pickled)
    assert run_cli(["import", str(pickled)]) == 1
    err = capsys.readouterr().err
    assert "pickled Python objects" in err and "hint: " in err and "--trust-pickle" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    assert run_cli(["import", str(junk)]) == 1
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert run_cli(["import", str(tmp_path / "missing.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
