"""`nanogpt-tui export` and `import DIR`: a run's model out as safetensors and back in as a run; refusals are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.paths import runs_dir
from nanogpt_tui.cli import run_cli
from tests.engine.test_generate import one_thread  # noqa: F401 (fixture)
from tests.tui.model_fixtures import save_tiny_checkpoint


def test_export_then_import_the_folder_then_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_tiny_checkpoint(runs_dir(), "tiny")
    out = tmp_path / "exported"
    assert run_cli(["export", "tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "run tiny, step 10" in printed.err and "model.safetensors" in printed.out
    assert run_cli(["import", str(out), "--name", "back"]) == 0
    assert "as run back" in capsys.readouterr().out
    assert run_cli(["generate", "back", "--prompt", "ROMEO:", "--temperature", "0", "--max-tokens", "4"]) == 0
    assert run_cli(["generate", "tiny", "--prompt", "ROMEO:", "--temperature", "0", "--max-tokens", "4"]) == 0
    first, second = capsys.readouterr().out.split("\n")[:2]
    assert first == second, "the imported export generates something else than the original run"


def test_export_refusals_are_errors_with_hints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_tiny_checkpoint(runs_dir(), "tiny")
    assert run_cli(["export", "tiny", "--out", str(tmp_path / "o"), "--format", "original"]) == 1
    err = capsys.readouterr().err
    assert "error: the original modded-nanogpt model.py cannot express this model" in err
    assert "hint: export it with --format safetensors" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert run_cli(["export", "tiny", "--out", str(tmp_path / "full")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert run_cli(["import", str(tmp_path / "full")]) == 1
    assert "without model.safetensors" in capsys.readouterr().err
