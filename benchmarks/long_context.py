"""CPU benchmark: held-out bits per byte of a trained default-preset model by position in the sequence.

Cuts the held-out split into rows of 1024 tokens and scores every position, grouped by how far it
lies into its document (0-128, 128-256, 256-512 and 512-1024 tokens), once with the attention
limits generation and evaluation use (no layer attends farther back than the trained length) and
once with the model's raw windows (up to model.max_window_tokens back). A model that stays in
distribution past its training length scores the same in every bucket. Last line:
`bpb_0_128=… bpb_128_256=… bpb_256_512=… bpb_512_1024=… uncapped_bpb_512_1024=…`.

    python benchmarks/long_context.py                   # pretrains the default preset (180 s) first
    python benchmarks/long_context.py --quick           # 60 s pretraining, a quarter of the rows
    python benchmarks/long_context.py --checkpoint PT_OR_RUN_DIR
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROW = 1024
BUCKETS = [(0, 128), (128, 256), (256, 512), (512, 1024)]


def checkpoint_path(spec: str) -> Path:
    """A .pt file, or a run directory (its newest checkpoint)."""
    from engine.checkpoint import latest_checkpoint

    path = Path(spec)
    if path.suffix == ".pt":
        return path
    found = latest_checkpoint(path / "checkpoints")
    if found is None:
        raise SystemExit(f"no checkpoint in {path}")
    return found.path


def pretrain(home: str, seconds: float) -> Path:
    from benchmarks.finetune_cpu import cli

    env = dict(os.environ, NANOGPT_TUI_HOME=home, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    cli(env, "train", "--preset", "shakespeare-cpu", "--name", "bench-base", "--set", f"train.time_budget_s={seconds}",
        "--set", "train.num_iterations=100000", "--set", "run.val_every=0", "--set", "run.sample_tokens=0",
        "--set", "run.device='cpu'")
    return Path(home) / "data" / "runs" / "bench-base"


def positions_in_document(tokens, bos_id: int):
    """For rows (B, T): how many tokens before each position belong to its document within the row (B, T)."""
    import torch

    index = torch.arange(tokens.size(1)).expand_as(tokens)
    starts = torch.where(tokens == bos_id, index, torch.zeros_like(index))
    return index - starts.cummax(dim=1).values


def bucket_bpb(model, rows, token_bytes, bos_id: int, batch: int = 4) -> list[float]:
    """Bits per byte of the targets of rows (N, ROW + 1) in each of BUCKETS (by position in the document)."""
    import torch
    import torch.nn.functional as F

    nats = [0.0] * len(BUCKETS)
    nbytes = [0.0] * len(BUCKETS)
    with torch.inference_mode():
        for start in range(0, rows.size(0), batch):
            chunk = rows[start:start + batch]
            inputs, targets = chunk[:, :-1], chunk[:, 1:]
            logits = model(inputs)[..., :model.config.vocab_size].float()  # (B, T, V)
            losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)
            where = positions_in_document(inputs, bos_id)  # (B, T)
            weights = token_bytes[targets]
            for index, (low, high) in enumerate(BUCKETS):
                inside = (where >= low) & (where < high)
                nats[index] += float(losses[inside].sum())
                nbytes[index] += float(weights[inside].sum())
    return [n / (math.log(2) * b) if b else float("nan") for n, b in zip(nats, nbytes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a .pt checkpoint or a run directory instead of pretraining one")
    parser.add_argument("--pretrain-seconds", type=float, default=180.0)
    parser.add_argument("--rows", type=int, default=0, help="rows of 1024 tokens to score (0 = all held-out rows)")
    parser.add_argument("--quick", action="store_true", help="60 s pretraining, 40 rows")
    args = parser.parse_args()
    import torch

    from engine.data.prepare import token_byte_lengths
    from engine.data.tokenizer import tokenizer_from_payload
    from engine.importer import load_model
    from engine.inference.evaluate import eval_data

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    with tempfile.TemporaryDirectory() as home:
        source = args.checkpoint or str(pretrain(home, 60.0 if args.quick else args.pretrain_seconds))
        loaded = load_model(checkpoint_path(source))
    model, tokenizer = loaded.model, tokenizer_from_payload(loaded.tokenizer_payload)
    tokens = eval_data(None, tokenizer, loaded.hyperparameters).tokens
    count = (tokens.numel() - 1) // ROW
    count = min(count, args.rows or (40 if args.quick else count))
    rows = torch.stack([tokens[i * ROW:i * ROW + ROW + 1] for i in range(count)])  # (N, ROW + 1)
    token_bytes = torch.tensor(token_byte_lengths(tokenizer), dtype=torch.float64)
    limit = model.attention_limit
    capped = bucket_bpb(model, rows, token_bytes, tokenizer.bos_id)
    model.attention_limit = None
    raw = bucket_bpb(model, rows, token_bytes, tokenizer.bos_id)
    span = max(model.attention_windows().values()) * model.config.attn_block_size
    print(f"{count} held-out rows of {ROW} tokens; trained on {limit}-token rows; windows up to {span} tokens")
    print(f"{'bucket':>10} {'capped at ' + str(limit):>14} {'raw windows':>12}")
    for (low, high), a, b in zip(BUCKETS, capped, raw):
        print(f"{f'{low}-{high}':>10} {a:14.4f} {b:12.4f}")
    figures = " ".join(f"bpb_{low}_{high}={value:.4f}" for (low, high), value in zip(BUCKETS, capped))
    print(f"{figures} uncapped_bpb_512_1024={raw[-1]:.4f} ratio_512_1024={capped[-1] / capped[0]:.4f}")


if __name__ == "__main__":
    main()
