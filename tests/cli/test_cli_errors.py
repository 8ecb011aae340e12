"""The CLI turns user mistakes into `error:` / `hint:` lines and exit code 1, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nanogpt_tui.cli import run_cli


@pytest.mark.parametrize("argv,message", [
    (["train", "--preset", "nope", "--detach"], "unknown preset 'nope'"),
    (["train", "--set", "train.num_iterations=abc", "--detach"], "train.num_iterations"),
    (["train", "--set", "train.bogus=1", "--detach"], "unknown key train.bogus"),
    (["train", "--nproc", "9999", "--detach"], "more than the"),
    (["train", "--resume", "ghost"], "no run named 'ghost'"),
    (["stop", "ghost"], "no run named 'ghost'"),
    (["train", "--name", "../x", "--detach"], "invalid run name"),
])
def test_user_mistakes_exit_1_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err


def test_malformed_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nnum_iterations = = 3\n")
    assert run_cli(["train", "--config", str(bad), "--detach"]) == 1
    assert "malformed TOML" in capsys.readouterr().err


def test_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "nanogpt_tui", "train", "--preset", "nope"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "error: unknown preset 'nope'"
    assert result.stderr.splitlines()[1].startswith("hint: ")
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["train", "--nproc", "lots"])
    assert info.value.code == 1
