"""Fixed-choice config fields: typed as Literal, checked from the Literal's arguments, named by key."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from engine.config import (SECTIONS, apply_overrides, check_choice, choice_fields, choices, load_toml, preset,
                           save_toml, validate)
from engine.data.chat_template import TEMPLATES
from engine.errors import ConfigError

FIELDS = sorted(choice_fields().items())
EACH_CHOICE = [(key, choice) for key, allowed in FIELDS for choice in allowed]


def test_the_fixed_choice_fields_are_the_literal_typed_ones() -> None:
    assert set(choice_fields()) == {"data.tokenizer", "data.sampling", "run.device", "run.dtype", "run.compile",
                                    "finetune.optimizer", "finetune.overflow", "finetune.template"}, \
        "a string field with fixed choices lost its Literal type (or a new one is untested)"
    for key, allowed in FIELDS:
        assert allowed and all(isinstance(choice, str) for choice in allowed), f"{key}: choices must be strings"
        section, name = key.split(".")
        default = getattr(SECTIONS[section](), name)
        assert default in allowed, f"{key}'s default {default!r} is not one of its choices {allowed}"


@pytest.mark.parametrize(("key", "choice"), EACH_CHOICE)
def test_every_choice_is_accepted(key: str, choice: str) -> None:
    hp = apply_overrides(preset("shakespeare-cpu"), [f"{key}={json.dumps(choice)}"])
    section, name = key.split(".")
    assert getattr(getattr(hp, section), name) == choice


@pytest.mark.parametrize("key", [key for key, _ in FIELDS])
def test_a_value_outside_the_choices_is_refused_naming_the_key(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_overrides(preset("shakespeare-cpu"), [f"{key}='not-a-choice'"])
    assert caught.value.key == key, f"the error is about {caught.value.key}, not {key}"
    assert f"{key}: expected" in caught.value.message and "'not-a-choice'" in caught.value.message
    assert all(choice in caught.value.hint for choice in choices(key)), f"the hint must list {choices(key)}"


@pytest.mark.parametrize("key", [key for key, _ in FIELDS])
def test_validate_refuses_a_config_built_in_code_with_a_bad_choice(key: str) -> None:
    hp = preset("shakespeare-cpu")
    section, name = key.split(".")
    broken = dataclasses.replace(hp, **{section: dataclasses.replace(getattr(hp, section), **{name: "nope"})})
    with pytest.raises(ConfigError) as caught:
        validate(broken)
    assert caught.value.key == key


def test_a_choice_of_the_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match="data.sampling: expected a string, got int 3") as caught:
        apply_overrides(preset("shakespeare-cpu"), ["data.sampling=3"])
    assert caught.value.key == "data.sampling"


def test_the_message_lists_the_choices_in_their_order() -> None:
    with pytest.raises(ConfigError) as caught:
        check_choice("run.device", "tpu", "c.toml")
    assert caught.value.message == "c.toml: run.device: expected 'auto', 'cpu', 'cuda' or 'mps', got 'tpu'"
    assert caught.value.hint == "choose one of: auto, cpu, cuda, mps"


def test_the_fine_tune_template_is_auto_or_a_chat_template() -> None:
    assert choices("finetune.template") == ("auto", *TEMPLATES)
    section, name = "finetune", "template"
    assert typing.get_origin(typing.get_type_hints(SECTIONS[section])[name]) is typing.Literal


def test_non_default_choices_survive_a_toml_round_trip(tmp_path: Path) -> None:
    overrides = [f"{key}={json.dumps(allowed[-1])}" for key, allowed in FIELDS]
    hp = apply_overrides(preset("shakespeare-cpu"), overrides)
    save_toml(hp, tmp_path / "c.toml")
    assert load_toml(tmp_path / "c.toml") == hp


def test_an_older_config_file_with_plain_strings_still_loads(tmp_path: Path) -> None:
    # as config.toml files were written before the Literal types: the same keys, plain strings
    path = tmp_path / "config.toml"
    path.write_text('preset = "shakespeare-cpu"\n'
                    '[data]\ntokenizer = "gpt2"\nsampling = "sequential"\n'
                    '[run]\ndevice = "cpu"\ndtype = "float32"\ncompile = "off"\n'
                    '[finetune]\noptimizer = "muon"\noverflow = "error"\ntemplate = "plain"\n', encoding="utf-8")
    hp = load_toml(path)
    assert (hp.data.tokenizer, hp.data.sampling) == ("gpt2", "sequential")
    assert (hp.run.device, hp.run.dtype, hp.run.compile) == ("cpu", "float32", "off")
    assert (hp.finetune.optimizer, hp.finetune.overflow, hp.finetune.template) == ("muon", "error", "plain")
