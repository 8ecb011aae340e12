"""The layering rule, checked at run time: the engine never pulls in Textual or Rich."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import engine


def test_engine_modules_do_not_import_textual_or_rich() -> None:
    modules = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"engine imported UI packages: {result.stdout.strip()}"


def test_importing_engine_config_and_runs_does_not_import_torch() -> None:
    code = "import sys, engine.config, engine.runs, engine.metrics, engine.paths; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", "light engine modules must not import torch (the TUI starts fast)"
