"""Configurations as dicts and TOML files, `--set` overrides, and the adjustments a run makes on creation.

Every way in (a file, a checkpoint's dict, an override) goes through `from_dict`, so each is checked
the same way (`validation.validate`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import typing
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

from engine.config.presets import DEFAULT_PRESET, preset
from engine.config.schema import SECTIONS, Hyperparameters, field_types
from engine.config.validation import validate
from engine.errors import ConfigError


def _coerce(value: Any, expected: Any, where: str, key: str | None = None) -> Any:
    """Check a TOML value against a field's type; ints widen to float, lists become tuples."""
    try:
        return _coerce_value(value, expected, where)
    except ConfigError as err:
        err.key = key
        raise


def _coerce_value(value: Any, expected: Any, where: str) -> Any:
    origin = typing.get_origin(expected)
    if origin is Literal:
        expected = str  # which strings: check_choice, run by validate
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(expected)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {item_type.__name__}, got {type(value).__name__} {value!r}")
        return tuple(_coerce_value(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise AssertionError(f"unsupported config field type {expected!r} at {where}")


def to_dict(hp: Hyperparameters) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for TOML and JSON."""
    out: dict[str, Any] = {"preset": hp.preset}
    for section in SECTIONS:
        values = dataclasses.asdict(getattr(hp, section))
        out[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return out


def from_dict(data: dict[str, Any], source: str = "config", base: Hyperparameters | None = None) -> Hyperparameters:
    """Build Hyperparameters from a nested dict, on top of `base` (default: the preset named in it)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table, got {type(data).__name__}")
    unknown = set(data) - set(SECTIONS) - {"preset"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {sorted(unknown)[0]!r}",
            hint=f"top-level keys are: preset, {', '.join(SECTIONS)}",
        )
    if base is None:
        preset_name = data.get("preset", DEFAULT_PRESET)
        if not isinstance(preset_name, str):
            raise ConfigError(f"{source}: preset: expected a string, got {preset_name!r}")
        base = preset(preset_name)
    elif "preset" in data:
        base = dataclasses.replace(base, preset=_coerce(data["preset"], str, f"{source}: preset"))
    changes: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        if section not in data:
            continue
        table = data[section]
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table, got {type(table).__name__}")
        types = field_types(cls)
        for key in table:
            if key not in types:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}",
                    hint=f"keys of [{section}]: {', '.join(types)}", key=f"{section}.{key}",
                )
        updates = {k: _coerce(v, types[k], f"{source}: {section}.{k}", key=f"{section}.{k}") for k, v in table.items()}
        changes[section] = dataclasses.replace(getattr(base, section), **updates)
    hp = dataclasses.replace(base, **changes)
    validate(hp, source)
    return hp


def load_toml(path: str | Path) -> Hyperparameters:
    """Read a config file; malformed TOML, unknown keys and wrong types raise ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}", hint="check quotes, brackets and '=' signs") from err
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config file", hint="check its brackets") from None
    return from_dict(data, source=str(path))


def dumps_toml(hp: Hyperparameters) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(hp))


def save_toml(hp: Hyperparameters, path: str | Path) -> None:
    from engine.atomic import atomic_write_text

    atomic_write_text(Path(path), dumps_toml(hp))


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split 'section.key=value' and parse the value as a TOML value (bare words become strings)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"bad override {text!r}", hint="write it as section.key=value, e.g. train.num_iterations=200")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = raw.strip()
    return section, key, value


def apply_overrides(hp: Hyperparameters, overrides: list[str]) -> Hyperparameters:
    """Apply `--set section.key=value` overrides with the same checks as a config file."""
    data: dict[str, Any] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        if section == "preset":
            raise ConfigError("the preset cannot be changed with --set", hint="use --preset NAME")
        data.setdefault(section, {})[key] = value
    return from_dict(data, source="--set", base=hp) if data else hp


GPT2_VOCAB_SIZE = 50257
GPT2_EOT_ID = 50256


def resolve_paths(hp: Hyperparameters, base: Path) -> Hyperparameters:
    """Make relative corpus and shard paths absolute: the training process runs in the run folder."""

    def absolute(value: str) -> str:
        return value if not value or Path(value).is_absolute() else str(base / value)

    d = hp.data
    corpus = d.corpus if d.corpus in ("shakespeare", "shards") else absolute(d.corpus)
    updated = dataclasses.replace(d, corpus=corpus, train_files=absolute(d.train_files), val_files=absolute(d.val_files))
    return hp if updated == d else dataclasses.replace(hp, data=updated)


def align_vocab(hp: Hyperparameters) -> Hyperparameters:
    """Make the model's vocabulary and document separator follow the tokenizer the data uses."""
    if hp.data.tokenizer == "bpe":
        vocab, bos = hp.data.bpe_vocab_size, 0  # trained BPE reserves id 0 for <|bos|>
    else:
        vocab, bos = GPT2_VOCAB_SIZE, GPT2_EOT_ID
    if (hp.model.vocab_size, hp.model.bos_id) == (vocab, bos):
        return hp
    return dataclasses.replace(hp, model=dataclasses.replace(hp.model, vocab_size=vocab, bos_id=bos))


def config_hash(hp: Hyperparameters) -> str:
    """Short stable hash of the model shape, used to refuse resuming into a different model."""
    text = json.dumps(to_dict(hp)["model"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
