"""A checkpoint written before the engine was split into packages still loads and computes the same logits.

tests/data/layout_v1.pt and its logits were written by tests/data/make_layout_checkpoint.py with the flat
layout (engine/model.py, engine/trainer.py, ...). Checkpoints hold plain tensors and dicts (weights_only),
so no module path is stored; this test keeps it that way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.importer import load_model
from tests.helpers import assert_close_scaled

DATA = Path(__file__).parent.parent / "data"


def test_checkpoint_of_the_flat_layout_loads_with_the_same_logits() -> None:
    loaded = load_model(DATA / "layout_v1.pt")
    reference = torch.load(DATA / "layout_v1_logits.pt", weights_only=True)
    assert loaded.step == 3 and loaded.config.num_layers == 2 and loaded.config.model_dim == 32
    loaded.model.eval()
    with torch.no_grad():
        logits = loaded.model(reference["tokens"]).float()  # (1, T, padded_vocab)
    assert logits.shape == reference["logits"].shape
    assert_close_scaled(logits, reference["logits"], rel=1e-4)  # fp32 sums are blocked differently per CPU
