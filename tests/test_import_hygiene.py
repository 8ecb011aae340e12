"""The layering rule: the engine never pulls in Textual, Rich or the app, checked statically and at run time."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import engine

FORBIDDEN_IN_ENGINE = ("textual", "rich", "nanogpt_tui")


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an AST imports, anywhere in it (a lazy import inside a function counts too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
              and getattr(node.func, "id", getattr(node.func, "attr", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))  # importlib.import_module("textual...")
    return found


def test_engine_source_never_imports_the_ui_even_lazily() -> None:
    root = Path(engine.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in _imported_modules(tree):
            if module.split(".")[0] in FORBIDDEN_IN_ENGINE:
                offenders.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
    assert not offenders, "the engine must not depend on the app or its UI libraries:\n" + "\n".join(offenders)


def test_the_static_check_sees_lazy_imports() -> None:
    source = "def f():\n    import textual.app\n    from rich import text\n    importlib.import_module('nanogpt_tui.cli')\n"
    assert [m for _, m in _imported_modules(ast.parse(source))] == ["textual.app", "rich", "nanogpt_tui.cli"]


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


def test_widgets_never_import_screens_and_each_widget_module_holds_a_widget() -> None:
    """widgets/ is for Textual widgets: a widget that imported a screen (or a helper with no widget in it) belongs elsewhere."""
    import importlib
    import inspect

    from textual.widget import Widget

    import nanogpt_tui.widgets

    root = Path(nanogpt_tui.widgets.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"widgets/{path.name}:{line} imports {module}" for line, module in _imported_modules(tree)
                      if module.startswith("nanogpt_tui.screens")]
        module = importlib.import_module(f"nanogpt_tui.widgets.{path.stem}")
        widgets = [obj for obj in vars(module).values()
                   if inspect.isclass(obj) and issubclass(obj, Widget) and obj.__module__ == module.__name__]
        if not widgets:
            offenders.append(f"widgets/{path.name} defines no Widget")
    assert not offenders, "\n".join(offenders)
