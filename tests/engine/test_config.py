"""Config: presets, TOML round trip, strict validation naming the key and file, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import (PRESETS, align_vocab, apply_overrides, config_hash, load_toml, preset, save_toml,
                           validate)
from engine.errors import ConfigError


def test_every_preset_is_valid() -> None:
    for name in PRESETS:
        validate(preset(name))


def test_speedrun_preset_is_the_original_configuration() -> None:
    hp = preset("speedrun-124m")
    m, t = hp.model, hp.train
    assert (m.num_layers, m.num_heads, m.head_dim, m.model_dim) == (12, 6, 128, 768)
    assert (m.vocab_size, m.padded_vocab_size) == (50257, 50304)
    assert m.no_attention_layers == (7,) and m.window_pattern == "LSSSLSSLSSSL"
    assert (t.train_seq_len, t.val_seq_len, t.num_iterations, t.cooldown_frac) == (48 * 1024, 4 * 64 * 1024, 4000, 0.4)
    assert hp.data.val_tokens == 10485760 and hp.run.val_every == 125
    assert (hp.optim.muon_lr, hp.optim.adam_head_lr, hp.optim.adam_embed_lr, hp.optim.adam_scalar_lr) == (0.05, 0.22, 0.6, 0.04)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'") as info:
        preset("nope")
    assert "shakespeare-cpu" in info.value.hint


def test_toml_round_trip(tmp_path: Path) -> None:
    hp = apply_overrides(preset("shakespeare-cpu"), ["train.num_iterations=77", "model.no_attention_layers=[1]"])
    save_toml(hp, tmp_path / "c.toml")
    assert load_toml(tmp_path / "c.toml") == hp


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train\nnum_iterations = 3\n")
    with pytest.raises(ConfigError, match="bad.toml: malformed TOML"):
        load_toml(path)


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[train]\nnum_iteratons = 3\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown key train.num_iteratons"):
        load_toml(path)


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[train]\nnum_iterations = "many"\n')
    with pytest.raises(ConfigError, match=r"c.toml: train.num_iterations: expected an integer"):
        load_toml(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize("override,message", [
    ("train.num_iterations=-5", "train.num_iterations"),
    ("train.train_seq_len=100", "multiple of the attention block"),
    ("model.window_pattern='LL'", "one letter L or S per layer"),
    ("run.device='tpu'", "expected 'auto', 'cpu', 'cuda' or 'mps'"),
    ("data.bpe_vocab_size=70000", "between 264 and 65535"),
    ("train.lr=0.1", "unknown key train.lr"),
    ("optim.muon_lr=true", "expected a number"),
    ("train.final_lr_frac=1.5", "train.final_lr_frac"),
    ("data.sampling='random'", "expected 'sequential' or 'shuffled'"),
])
def test_overrides_are_checked(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("shakespeare-cpu"), [override])


def test_override_syntax_error() -> None:
    with pytest.raises(ConfigError, match="bad override"):
        apply_overrides(preset("shakespeare-cpu"), ["num_iterations"])


def test_override_values_are_typed() -> None:
    hp = apply_overrides(preset("shakespeare-cpu"), ["optim.muon_lr=1", "run.device=cpu"])
    assert hp.optim.muon_lr == 1.0 and isinstance(hp.optim.muon_lr, float)
    assert hp.run.device == "cpu"


def test_align_vocab_follows_tokenizer() -> None:
    hp = apply_overrides(preset("shakespeare-cpu"), ["data.bpe_vocab_size=1024"])
    aligned = align_vocab(hp)
    assert (aligned.model.vocab_size, aligned.model.bos_id) == (1024, 0)
    gpt2 = align_vocab(apply_overrides(preset("shakespeare-cpu"), ["data.tokenizer='gpt2'"]))
    assert (gpt2.model.vocab_size, gpt2.model.bos_id) == (50257, 50256)
    assert config_hash(aligned) != config_hash(hp)


def test_relative_data_paths_become_absolute(tmp_path: Path) -> None:
    from engine.config import resolve_paths

    hp = apply_overrides(preset("shakespeare-cpu"), ["data.corpus='texts/plays.txt'"])
    resolved = resolve_paths(hp, tmp_path)
    assert resolved.data.corpus == str(tmp_path / "texts/plays.txt")
    assert resolve_paths(preset("shakespeare-cpu"), tmp_path).data.corpus == "shakespeare"
    speedrun = preset("speedrun-124m")
    assert Path(speedrun.data.train_files).is_absolute(), "the speedrun preset must find `data fineweb` shards"
