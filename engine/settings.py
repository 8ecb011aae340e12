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


def load_settings(path: Path | None = None) -> Settings:
    """Settings from the file, defaults when it does not exist; ConfigError when it is wrong."""
    path = path or settings_path()
    if not path.exists():
        return Settings()
    # imported here: a first start without a settings file skips them
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised only on Python 3.10
        import tomli as tomllib
    from engine.config import PRESETS

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read settings {path}: {err}", hint="fix or delete the file") from err
    known = {f.name for f in dataclasses.fields(Settings)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}", hint=f"settings are: {', '.join(sorted(known))}")
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: expected a string, got {value!r}")
    settings = Settings(**data)
    if settings.default_preset and settings.default_preset not in PRESETS:
        raise ConfigError(
            f"{path}: default_preset: unknown preset {settings.default_preset!r}",
            hint=f"choose one of: {', '.join(PRESETS)}",
        )
    return settings


def save_settings(settings: Settings, path: Path | None = None) -> None:
    import tomli_w

    from engine.atomic import atomic_write_text

    atomic_write_text(path or settings_path(), tomli_w.dumps(dataclasses.asdict(settings)))
