"""Kill at any moment: the newest complete checkpoint always loads and resume continues from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.kill_loop import kill_loop


@pytest.mark.slow
def test_random_sigkills_never_corrupt_and_always_resume(tmp_path: Path) -> None:
    report = kill_loop(tmp_path, kills=4, seed=7)
    assert report.kills == 4, report.notes
    assert report.corrupt_checkpoints == 0, "a listed checkpoint failed to load after a kill"
    assert report.resumed_ok == report.kills, f"resume failed after a kill: {report}"
