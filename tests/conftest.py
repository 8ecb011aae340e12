"""Shared fixtures: every test gets its own NANOGPT_TUI_HOME so no user data is touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "nanogpt_home"
    home.mkdir()
    monkeypatch.setenv("NANOGPT_TUI_HOME", str(home))
    # keep torch from oversubscribing the 2 CI cores when several processes run
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    return home
