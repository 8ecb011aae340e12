"""Writes tests/data/layout_v1.pt and layout_v1_logits.pt: a tiny checkpoint and its logits.

Run once, with the code as it was before the engine was split into packages (issue 19, commit 9b62f5c),
so tests/engine/test_checkpoint_compat.py proves that checkpoints written by an earlier layout still load
and compute the same function. Kept for the record; rerunning it with newer code defeats its purpose.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import apply_overrides, preset, to_dict
from engine.data.tokenizer import train_bpe
from engine.model import GPT

HERE = Path(__file__).parent
TEXT = "To be, or not to be, that is the question.\n" * 20


def main() -> None:
    tokenizer = train_bpe([TEXT], 272)
    hp = apply_overrides(preset("shakespeare-cpu"), [
        "model.num_layers=2", "model.num_heads=2", "model.head_dim=16", "model.model_dim=32",
        "model.num_value_embeds=1", "model.window_pattern='LS'", "model.max_window_tokens=64",
        "model.attn_block_size=16", f"model.vocab_size={tokenizer.vocab_size}", f"model.bos_id={tokenizer.bos_id}",
        "data.bpe_vocab_size=272", "train.train_seq_len=64", "train.val_seq_len=64", "run.device='cpu'",
    ])
    torch.manual_seed(0)
    model = GPT(hp.model, max_seq_len=64)
    with torch.no_grad():
        # the original's init zeroes some weights; noise on every parameter makes each one count in the logits
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    payload = {"format": 1, "step": 3, "model": model.state_dict(), "optimizers": [], "config": to_dict(hp),
               "tokenizer": tokenizer.to_payload(), "data_position": None, "tokens_seen": 768}
    torch.save(payload, HERE / "layout_v1.pt")
    tokens = torch.tensor(tokenizer.encode(TEXT[:200])[:32])[None]  # (1, T)
    model.eval()
    with torch.no_grad():
        logits = model(tokens).float()  # (1, T, padded_vocab)
    torch.save({"tokens": tokens, "logits": logits}, HERE / "layout_v1_logits.pt")


if __name__ == "__main__":
    main()
