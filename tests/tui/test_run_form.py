"""check_form: every field is checked in place and only a valid form gives a config to launch."""

from __future__ import annotations

from pathlib import Path

from engine.config import preset
from nanogpt_tui.screens.run_form import (
    DATA_PATH,
    FIELDS,
    GENERAL,
    NAME,
    NNODES,
    NODE_RANK,
    NPROC,
    RDZV,
    check_form,
    config_value,
    summary,
)


def values(**changes: str) -> dict[str, str]:
    hp = preset("shakespeare-cpu")
    base = {field.key: config_value(hp, field.key) for field in FIELDS}
    base.update({NPROC: "1", NNODES: "1", NODE_RANK: "0", "data.train_files": "", "data.val_files": ""})
    base.update({key.replace("__", "."): value for key, value in changes.items()})
    return base


def check(source: str = "shakespeare", **changes: str):
    return check_form(preset("shakespeare-cpu"), source, "cpu", values(**changes), existing={"taken"}, device_count=2)


def test_preset_values_are_valid() -> None:
    result = check()
    assert result.errors == {} and result.hp is not None and result.plan is not None
    assert result.hp.train.num_iterations == 1000 and result.hp.run.device == "cpu"
    assert "2.5M parameters" in summary(result, "cpu", 2e10)


def test_edits_reach_the_config() -> None:
    result = check(train__num_iterations="50", optim__muon_lr="0.02", name="mine", model__no_attention_layers="1, 3")
    assert result.hp is not None and result.plan is not None
    assert result.hp.train.num_iterations == 50 and result.hp.optim.muon_lr == 0.02
    assert result.hp.model.no_attention_layers == (1, 3) and result.plan.name == "mine"


def test_each_bad_field_is_marked_with_its_reason() -> None:
    result = check(train__num_iterations="ten", optim__muon_lr="fast", model__window_pattern="", name="a/b")
    assert result.hp is None
    assert result.errors["train.num_iterations"] == "must be a whole number"
    assert result.errors["optim.muon_lr"] == "must be a number"
    assert result.errors["model.window_pattern"] == "required"
    assert "invalid run name" in result.errors[NAME]


def test_config_validation_names_the_field() -> None:
    assert "train.num_iterations" in check(train__num_iterations="0").errors
    assert "one letter L or S per layer" in check(model__num_layers="4").errors["model.window_pattern"]
    assert "multiple of the attention block" in check(train__train_seq_len="100").errors["train.train_seq_len"]
    assert "finite" in check(optim__adam_head_lr="inf").errors["optim.adam_head_lr"]


def test_batch_must_split_over_processes() -> None:
    result = check(train__batch_size="16", train__micro_batch_size="16", nproc="2")
    assert "processes x micro_batch_size" in result.errors["train.batch_size"]


def test_processes_and_nodes() -> None:
    assert "only 2 device" in check(nproc="3").errors[NPROC]
    assert NNODES in check(nnodes="0").errors and NNODES in check(nnodes="nan").errors
    several = check(nnodes="2", node_rank="2")
    assert "HOST:PORT" in several.errors[RDZV] and "below the number of nodes" in several.errors[NODE_RANK]
    ok = check(nnodes="2", node_rank="1", rdzv_endpoint="10.0.0.1:29500", train__micro_batch_size="8")
    assert ok.errors == {} and ok.plan is not None and ok.plan.rdzv_endpoint == "10.0.0.1:29500"


def test_existing_name_is_refused() -> None:
    assert check(name="taken").errors[NAME] == "a run with this name exists"


def test_text_source_needs_an_existing_path(tmp_path: Path) -> None:
    assert "does not exist" in check("text", data__path=str(tmp_path / "missing.txt")).errors[DATA_PATH]
    assert "no .txt files" in check("text", data__path=str(tmp_path)).errors[DATA_PATH]
    (tmp_path / "book.txt").write_text("words")
    result = check("text", data__path=str(tmp_path))
    assert result.errors == {} and result.hp is not None and result.hp.data.corpus == str(tmp_path.resolve())


def test_shards_need_files(tmp_path: Path) -> None:
    assert "no .bin shards" in check("shards", data__train_files=str(tmp_path / "*.bin")).errors["data.train_files"]
    (tmp_path / "train_000.bin").write_bytes(b"")
    (tmp_path / "val_000.bin").write_bytes(b"")
    result = check("shards", data__train_files=str(tmp_path / "train_*.bin"), data__val_files=str(tmp_path / "val_*.bin"))
    assert result.errors == {} and result.hp is not None
    assert result.hp.data.corpus == "shards" and result.hp.data.train_files == str(tmp_path / "train_*.bin")


def test_vocabulary_follows_the_tokenizer() -> None:
    hp = preset("speedrun-124m")
    form = values(**{key.replace(".", "__"): config_value(hp, key) for key in ("model.model_dim", "model.num_layers",
                     "model.num_heads", "model.head_dim", "model.window_pattern", "model.no_attention_layers",
                     "model.num_value_embeds")})
    result = check_form(hp, "shakespeare", "cpu", form)
    assert result.hp is not None and result.hp.model.vocab_size == 50257, "GPT-2 tokens need the GPT-2 vocabulary"
    assert result.estimate is not None and result.estimate.num_params == 275_598_388


def test_cross_field_errors_land_on_the_named_field() -> None:
    result = check(model__num_value_embeds="9")
    assert list(result.errors) == ["model.num_value_embeds"] and "between 0 and num_layers/2" in result.errors["model.num_value_embeds"]
    assert GENERAL not in result.errors
