"""Example conversations shipped inside the package, so a pip-installed user can fine-tune without a file."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# name -> file in engine/data/assets; the name works wherever conversation data is asked for
EXAMPLES = {"shakespeare_chat": "shakespeare_chat.json"}
DEFAULT_EXAMPLE = "shakespeare_chat"


def example_path(name: str = DEFAULT_EXAMPLE) -> Path:
    return ASSETS / EXAMPLES[name]


def resolve_data(spec: str | Path) -> Path:
    """A path as given, or the bundled example of that name (`shakespeare_chat`) when no such file exists."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    name = str(spec).removesuffix(".json")
    return example_path(name) if name in EXAMPLES else path
