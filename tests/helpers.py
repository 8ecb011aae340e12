"""Tiny real configurations and corpora shared by engine, CLI and TUI tests."""

from __future__ import annotations

from pathlib import Path

from engine.config import Hyperparameters, apply_overrides, preset

VERSE = """ROMEO:
But soft, what light through yonder window breaks?
It is the east, and Juliet is the sun.

JULIET:
O Romeo, Romeo, wherefore art thou Romeo?
Deny thy father and refuse thy name.

HAMLET:
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune.
"""


def write_corpus(folder: Path, repeats: int = 40) -> Path:
    """A small text corpus (a few KB) so BPE training and epochs take a moment."""
    path = folder / "corpus.txt"
    path.write_text(VERSE * repeats, encoding="utf-8")
    return path


def tiny_config(corpus: Path, *overrides: str) -> Hyperparameters:
    """2 layers, dim 64, BPE vocab 320, 64-token rows: a real model that trains in seconds on CPU."""
    base = [
        "model.num_layers=2", "model.num_heads=2", "model.head_dim=32", "model.model_dim=64",
        "model.num_value_embeds=1", "model.window_pattern='LS'", "model.max_window_tokens=64",
        "model.attn_block_size=16", f"data.corpus='{corpus}'", "data.bpe_vocab_size=320",
        "train.train_seq_len=64", "train.val_seq_len=64", "train.batch_size=4", "train.micro_batch_size=2",
        "train.num_iterations=12", "train.time_budget_s=0", "run.device='cpu'", "run.val_every=6",
        "run.checkpoint_every=6", "run.sample_every=0", "run.sample_tokens=16", "run.log_every=1",
    ]
    return apply_overrides(preset("shakespeare-cpu"), base + list(overrides))


def stop_after_steps(trainer, stop, steps: int | None):
    """Make an in-process trainer request a stop once it has trained `steps` steps (None: never)."""
    import time

    if steps is None:
        return trainer
    original = trainer.train_step

    def step_then_maybe_stop() -> float:
        loss = original()
        if trainer.step + 1 >= steps:
            stop.requested_at = time.monotonic()
        return loss

    trainer.train_step = step_then_maybe_stop
    return trainer


def assert_close_scaled(got, expected, rel: float = 1e-5, msg=None) -> None:
    """Two fp32 results of different summation orders: equal up to `rel` of the expected tensor's largest value.

    A fixed atol (1e-5, say) is too tight for values in the tens and meaningless for values near 1e-6;
    rounding differences between CPUs scale with the magnitudes summed, so the tolerance does too.
    """
    import torch

    scale = float(expected.detach().abs().max()) if expected.numel() else 1.0
    torch.testing.assert_close(got, expected, rtol=rel, atol=rel * (scale or 1.0), msg=msg)


def assert_close_to_float64(got, reference, name: str = "", rel: float = 2e-5) -> None:
    """fp32 result against a float64 reference, with a tolerance sized to the tensor's magnitude.

    fp32 sums are blocked differently on each CPU (Intel and AMD differ), so an element that is a small
    difference of large products can be off by a few ulps of the *largest* values involved. The absolute
    tolerance is therefore `rel` times the reference's largest magnitude, not a fixed number.
    """
    import torch

    reference = reference.double()
    scale = float(reference.abs().max()) or 1.0
    torch.testing.assert_close(got.double(), reference, rtol=rel, atol=rel * scale,
                               msg=lambda m: f"{name}: {m} (scale {scale:.3g})")
