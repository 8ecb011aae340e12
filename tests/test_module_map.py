"""AGENTS.md's module map names every engine module, and every engine path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _map_rows() -> list[tuple[str, str]]:
    text = (ROOT / "AGENTS.md").read_text(encoding="utf-8")
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `engine/")]
    return [(first.strip(), second.strip()) for first, second in rows]


def _named(rows: list[tuple[str, str]]) -> tuple[set[str], set[str]]:
    """(paths the first cells name, paths a package row's description names by module name)."""
    explicit: set[str] = set()
    described: set[str] = set()
    for first, second in rows:
        folder = ""
        for name in re.findall(r"`([^`]+)`", first):
            if "/" in name:
                folder = name if name.endswith("/") else name.rsplit("/", 1)[0] + "/"
                explicit.add(name)
            else:
                explicit.add(folder + name)
        if first.strip("`").endswith("/"):
            package = first.strip("`")
            for word in re.findall(r"[A-Za-z_][\w]*(?:\.py)?/?", second):
                described.add(package + (word if word.endswith((".py", "/")) else word + ".py"))
    return explicit, described


def test_every_engine_module_is_in_the_module_map() -> None:
    explicit, described = _named(_map_rows())
    named = explicit | described
    missing = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py" or "__pycache__" in relative:
            continue
        # a folder two levels down (engine/export/hf_template/) may be named as a whole
        folders = {parent.as_posix() + "/" for parent in Path(relative).parents if parent.as_posix().count("/") >= 2}
        if relative not in named and not folders & named:
            missing.append(relative)
    assert not missing, f"AGENTS.md's module map does not name: {missing}"


def test_every_engine_path_in_the_module_map_exists() -> None:
    explicit, _ = _named(_map_rows())
    absent = [name for name in sorted(explicit) if name.startswith("engine/") and not (ROOT / name).exists()]
    assert not absent, f"AGENTS.md's module map names paths that do not exist: {absent}"
