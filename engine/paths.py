"""Where nanogpt-tui keeps its data, config and cache; NANOGPT_TUI_HOME overrides all of them.

The data root follows one rule for the app and the CLI: NANOGPT_TUI_HOME (its `data` folder),
then `data_dir` in settings.toml, then the platform's data directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
HOME_ENV = "NANOGPT_TUI_HOME"


def _home_override() -> Path | None:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else None


def data_dir(setting: str | None = None) -> Path:
    """Runs, imported checkpoints and datasets live here (ConfigError when settings.toml is wrong)."""
    return data_dir_and_source(setting)[0]


def data_dir_and_source(setting: str | None = None) -> tuple[Path, str]:
    """The data root and what chose it; `setting` is settings.toml's data_dir when the caller has read it."""
    home = _home_override()
    if home is not None:
        return home / "data", f"${HOME_ENV}"
    from engine.settings import load_settings, settings_path

    chosen = load_settings().data_dir if setting is None else setting
    if chosen:
        return Path(chosen).expanduser(), f"data_dir in {settings_path()}"
    import platformdirs

    return Path(platformdirs.user_data_dir("nanogpt-tui", appauthor=False)), "the platform default"


def config_dir() -> Path:
    home = _home_override()
    if home is not None:
        return home / "config"
    import platformdirs

    return Path(platformdirs.user_config_dir("nanogpt-tui", appauthor=False))


def cache_dir() -> Path:
    """Tokenizers trained on a corpus and tokenised shards are cached here, keyed by content hash."""
    home = _home_override()
    if home is not None:
        return home / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("nanogpt-tui", appauthor=False))


def make_dir(path: Path, what: str = "folder") -> Path:
    """Create `path` (and its parents) if needed; ConfigError saying which folder and why when it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        hint = "set NANOGPT_TUI_HOME to a folder you can write, or unset it" if _home_override() else (
            "check the folder's permissions and free space")
        raise ConfigError(f"cannot use {path} as the {what}: {err.strerror or err}", hint=hint) from err
    return path


def runs_dir() -> Path:
    return data_dir() / "runs"


def validate_name(name: str, what: str = "run name") -> str:
    """Refuse names that could escape the data directory or confuse a terminal."""
    if not _NAME_RE.match(name) or ".." in name:
        raise ConfigError(
            f"invalid {what} {name!r}",
            hint="use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name
