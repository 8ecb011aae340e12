"""Loading any checkpoint format, importing foreign ones as runs, refusing bad files, choosing a checkpoint."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_checkpoint, load_state_into
from engine.config import ModelConfig, to_dict
from engine.errors import CheckpointError, RunError
from engine.importer import (
    ORIGINAL,
    OURS,
    ORIGINAL_FINETUNE,
    import_checkpoint,
    infer_model_config,
    load_model,
    window_pattern_for,
)
from engine.model import GPT, create_model
from engine.runs import Workspace
from engine.runs import RunManager
from tests.engine.test_generate import one_thread  # noqa: F401 (fixture)

# original checkpoints have 128-dim heads: one head, dim 128, 4 layers, layer 2 without attention
ORIGINAL_TINY = ModelConfig(vocab_size=64, num_layers=4, num_heads=1, head_dim=128, model_dim=128, num_value_embeds=1,
                            no_attention_layers=(2,), window_pattern=window_pattern_for(4), bos_id=63)
TOKENS = torch.tensor([[63, 5, 9, 17, 2, 63, 40, 41, 3, 8, 60, 1]])


def original_model() -> GPT:
    torch.manual_seed(0)
    model = GPT(ORIGINAL_TINY, max_seq_len=64)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight") or name == "lm_head.weight":
                param.normal_(std=0.3)
            if "embed" in name:  # the speedrun keeps embeddings in bf16, so its checkpoints hold bf16
                param.copy_(param.bfloat16().float())
    return model.eval()


def original_state(model: GPT) -> dict[str, torch.Tensor]:
    """The state_dict as modded-nanogpt's compiled model saves it: `_orig_mod.` keys, bf16 embeddings."""
    state = {}
    for key, tensor in model.state_dict().items():
        state[f"_orig_mod.{key}"] = tensor.bfloat16() if "embed" in key else tensor.clone()
    return state


def write_original(path: Path, model: GPT, step: int = 4000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "code": "print('train_gpt.py')", "model": original_state(model),
                "optimizers": [{"state": {}, "param_groups": []}]}, path)
    return path


def logits_of(model: GPT) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS)


def test_original_speedrun_shapes_give_the_default_model_config() -> None:
    with torch.device("meta"):
        original = create_model()
    state = {f"_orig_mod.{k}": v for k, v in original.state_dict().items()}
    config, notes = infer_model_config(state)
    assert config == ModelConfig(), f"inferred {config}, expected the original's 124M config"
    assert "12 layers" in notes[0] and "6 heads" in notes[0] and "[7]" in notes[0]


def test_original_checkpoint_gives_the_same_logits(tmp_path: Path) -> None:
    model = original_model()
    path = write_original(tmp_path / "logs" / "abc" / "state_step004000.pt", model)
    loaded = load_model(path)
    assert loaded.source_format == ORIGINAL and loaded.step == 4000
    assert loaded.config == ORIGINAL_TINY and loaded.tokenizer_payload == {"kind": "gpt2"}
    assert any("inferred" in note for note in loaded.notes)
    direct = GPT(ORIGINAL_TINY, max_seq_len=64)
    load_state_into(direct, original_state(model), "direct")
    torch.testing.assert_close(logits_of(loaded.model), logits_of(direct.eval()), rtol=0, atol=0)
    torch.testing.assert_close(logits_of(loaded.model), logits_of(model), rtol=0, atol=0)


def test_import_registers_a_finished_run_beside_the_users_runs(tmp_path: Path) -> None:
    model = original_model()
    source = write_original(tmp_path / "state_step000300.pt", model, step=300)
    result = import_checkpoint(source, "original-import")
    runs = RunManager().list_runs()
    assert [(r.name, r.kind, r.state, r.step) for r in runs] == [("original-import", "import", "finished", 300)]
    sidecar = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert sidecar["kind"] == "import" and sidecar["source_format"] == ORIGINAL and sidecar["step"] == 300
    resolved = Workspace().resolve_checkpoint("original-import")
    assert resolved.path == result.checkpoint and resolved.step == 300
    reloaded = load_model(result.checkpoint)
    assert reloaded.source_format == OURS and reloaded.config == ORIGINAL_TINY
    torch.testing.assert_close(logits_of(reloaded.model), logits_of(model), rtol=0, atol=0)
    with pytest.raises(RunError, match="cannot be trained"):
        RunManager().launch("original-import")
    with pytest.raises(RunError, match="already exists"):
        import_checkpoint(source, "original-import")
    assert import_checkpoint(source).name.startswith("import-"), "without --name a name is derived from the file"


class Hyperparameters:
    """Stands for the original's model.Hyperparameters, which the original's finetune.py pickles."""

    def __init__(self) -> None:
        self.vocab_size = 64


def test_original_finetune_pickle_needs_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = original_model()
    original_module = types.ModuleType("model")
    Hyperparameters.__module__ = "model"
    original_module.Hyperparameters = Hyperparameters  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "model", original_module)
    path = tmp_path / "finetuned_model.pt"
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": {"state": {}, "param_groups": []},
                "hyperparameters": Hyperparameters()}, path)
    monkeypatch.delitem(sys.modules, "model")  # as on a machine without the original's code
    with pytest.raises(CheckpointError, match="pickled") as caught:
        load_model(path)
    assert "--trust-pickle" in caught.value.hint
    loaded = load_model(path, trust_pickle=True)
    assert loaded.source_format == ORIGINAL_FINETUNE and any("trust-pickle" in n for n in loaded.notes)
    torch.testing.assert_close(logits_of(loaded.model), logits_of(model), rtol=0, atol=0)
    direct = GPT(ORIGINAL_TINY, max_seq_len=64)
    data = load_checkpoint(direct, path, trust_pickle=True)
    assert data["hyperparameters"].vocab_size == 64, "the original's settings load as a plain attribute holder"
    torch.testing.assert_close(logits_of(direct.eval()), logits_of(model), rtol=0, atol=0)


class _CreatesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "state_step000001.pt"
    torch.save({"step": 1, "model": {"embed.weight": torch.zeros(2, 2)}, "payload": _CreatesMarker(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_model(path)
    with pytest.raises(CheckpointError):
        import_checkpoint(path, "evil")
    assert not marker.exists(), "unpickling ran code from an untrusted checkpoint"
    assert not (RunManager().root / "evil").exists()


def test_bad_files_raise_checkpoint_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(text)
    good = write_original(tmp_path / "state_step000010.pt", original_model())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": {"a": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="expected a 'model'"):
        load_model(foreign)
    later = tmp_path / "later.pt"
    torch.save({"step": 1, "model": {"_orig_mod.blocks.0.attn.qkvo_w": torch.zeros(4, 8, 8)}}, later)
    with pytest.raises(CheckpointError, match="later modded-nanogpt record"):
        load_model(later)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_config_and_weights_that_disagree_raise_a_checkpoint_error(tmp_path: Path) -> None:
    from engine.config import preset

    hp = preset("speedrun-124m")
    import dataclasses

    hp = dataclasses.replace(hp, model=dataclasses.replace(ORIGINAL_TINY, model_dim=256))
    path = tmp_path / "step_000001.pt"
    torch.save({"format": 1, "step": 1, "model": original_model().state_dict(), "config": to_dict(hp),
                "tokenizer": {"kind": "gpt2"}}, path)
    with pytest.raises(CheckpointError, match=r"has shape \(64, 128\), expected \(64, 256\)"):
        load_model(path)


def test_resolve_by_path_run_name_and_newest(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no run"):
        Workspace().resolve_checkpoint(None)
    model = original_model()
    source = write_original(tmp_path / "logs" / "run1" / "state_step000100.pt", model, step=100)
    write_original(tmp_path / "logs" / "run1" / "state_step000200.pt", model, step=200)
    assert Workspace().resolve_checkpoint(source).path == source
    assert Workspace().resolve_checkpoint(tmp_path / "logs" / "run1").step == 200, "a folder resolves to its newest checkpoint"
    import_checkpoint(source, "older")
    time.sleep(0.01)
    import_checkpoint(tmp_path / "logs" / "run1" / "state_step000200.pt", "newer")
    newest = Workspace().resolve_checkpoint(None)
    assert newest.run == "newer" and newest.step == 200 and "newest run" in newest.description
    assert Workspace().resolve_checkpoint("older").step == 100
    with pytest.raises(RunError, match="neither"):
        Workspace().resolve_checkpoint("no-such-run")
