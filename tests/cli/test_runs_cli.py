"""`nanogpt-tui runs`: one row per run, a run whose files are damaged still listed with a notice naming the file."""

from __future__ import annotations

import pytest

from engine.config import apply_overrides, preset
from engine.runs import Workspace
from nanogpt_tui.cli import run_cli


def test_a_damaged_status_file_is_a_notice_under_its_row(capsys: pytest.CaptureFixture[str]) -> None:
    runs = Workspace().runs
    hp = apply_overrides(preset("shakespeare-cpu"), ["run.device='cpu'"])
    runs.create(hp, "good")
    bad = runs.create(hp, "bad")
    (bad.path / "status.json").write_text('{"state": "running", "pid": "twelve"')
    assert run_cli(["runs"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 3 and "good" in out, out
    assert "  notice: status.json: is not valid JSON" in out
