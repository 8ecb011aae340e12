"""The user's settings, kept in `<config dir>/settings.toml`: data directory, default preset and theme.

Both faces read this one file: the CLI for `data_dir` (through engine.paths), the app for all of it.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.errors import ConfigError

DEFAULT_THEME = "textual-dark"


@dataclass(frozen=True, slots=True)
class Settings:
    """What the user chose once and keeps; replaced whole when something changes."""

    # runs live in <data_dir>/runs; empty means the platform's data directory (NANOGPT_TUI_HOME wins over both)
    data_dir: str = ""
    # empty means the engine's DEFAULT_PRESET
    default_preset: str = ""
    theme: str = DEFAULT_THEME


def settings_path() -> Path:
    return paths.config_dir() / "settings.toml"


def load_settings(path: Path | None = None, problems: list[str] | None = None) -> Settings:
    """Settings from the file, defaults when it does not exist.

    Without `problems` the first wrong value raises ConfigError; with a list, each wrong value is
    described there (naming the file) and that one setting keeps its default, so the app still starts.
    The theme's name is checked by the app, which knows the themes.
    """
    path = path or settings_path()
    if not path.exists():
        return Settings()

    def refuse(message: str, hint: str) -> None:
        if problems is None:
            raise ConfigError(message, hint=hint)
        problems.append(f"{message}: using the default instead ({hint})")

    # imported here: a first start without a settings file skips them
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised only on Python 3.10
        import tomli as tomllib
    from engine.config import PRESETS

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        refuse(f"cannot read settings {path}: {err or type(err).__name__}", "fix or delete the file")
        return Settings()
    known = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in known:
            refuse(f"{path}: unknown setting {key!r}", f"settings are: {', '.join(sorted(known))}")
        elif not isinstance(value, str):
            refuse(f"{path}: {key}: expected a string, got {value!r}", "put the value in quotes")
        elif key == "default_preset" and value and value not in PRESETS:
            refuse(f"{path}: default_preset: unknown preset {value!r}", f"choose one of: {', '.join(PRESETS)}")
        else:
            values[key] = value
    return Settings(**values)


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write the settings atomically; ConfigError naming the file when it cannot be written."""
    import tomli_w

    from engine.atomic import atomic_write_text

    path = path or settings_path()
    try:
        atomic_write_text(path, tomli_w.dumps(dataclasses.asdict(settings)))
    except OSError as err:
        raise ConfigError(f"cannot save settings {path}: {err.strerror or err}",
                          hint="check that the config folder is writable (NANOGPT_TUI_HOME)") from err
