"""CPU benchmark: the shakespeare-cpu preset against a classic char-level GPT, same data, same time.

Both train on the embedded corpus minus its held-out last 10 % and are scored in bits per UTF-8
byte on that held-out text. Last line: `val_bpb=… baseline_val_bpb=… ratio=… tokens_per_s=… steps=…`.

    python benchmarks/cpu_shakespeare.py            # 180 s each
    python benchmarks/cpu_shakespeare.py --quick    # 30 s each
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------------------- char baseline
class CharBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, h, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    """The classic small char-level recipe: 4 layers, 4 heads, 128 dim, context 64, no dropout."""

    def __init__(self, vocab: int, dim: int = 128, layers: int = 4, heads: int = 4, context: int = 64) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(CharBlock(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.size(1)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def train_char_baseline(train_text: str, val_text: str, seconds: float) -> dict:
    chars = sorted(set(train_text) | set(val_text))
    index = {c: i for i, c in enumerate(chars)}
    train = torch.tensor([index[c] for c in train_text])
    val = torch.tensor([index[c] for c in val_text])
    context, batch, lr, warmup = 64, 12, 1e-3, 100
    model = CharGPT(len(chars), context=context)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    start, steps = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        progress = elapsed / seconds
        scale = min(1.0, (steps + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        offsets = torch.randint(len(train) - context - 1, (batch,), generator=generator)
        x = torch.stack([train[o:o + context] for o in offsets])
        y = torch.stack([train[o + 1:o + context + 1] for o in offsets])
        loss = F.cross_entropy(model(x).view(-1, len(chars)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    train_seconds = time.perf_counter() - start
    model.eval()
    nats = 0.0
    with torch.inference_mode():
        rows = (len(val) - 1) // context
        x = val[: rows * context].view(rows, context)
        y = val[1: rows * context + 1].view(rows, context)
        for i in range(0, rows, 256):
            logits = model(x[i:i + 256])
            nats += F.cross_entropy(logits.reshape(-1, len(chars)), y[i:i + 256].reshape(-1), reduction="sum").item()
        scored = "".join(chars[int(t)] for t in y.reshape(-1))
        sample_ids = [index["\n"]]
        gen = torch.Generator().manual_seed(1)
        for _ in range(300):
            logits = model(torch.tensor([sample_ids[-context:]]))[0, -1]
            sample_ids.append(int(torch.multinomial(torch.softmax(logits / 0.8, -1), 1, generator=gen)))
    bpb = nats / (math.log(2) * len(scored.encode("utf-8")))
    return {"val_bpb": bpb, "tokens_per_s": steps * batch * context / train_seconds, "steps": steps,
            "params": params, "sample": "".join(chars[i] for i in sample_ids[1:])}


# ----------------------------------------------------------------------------- our preset
def train_preset(seconds: float, extra: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    with tempfile.TemporaryDirectory() as home:
        env["NANOGPT_TUI_HOME"] = env.get("NANOGPT_TUI_BENCH_HOME", home)
        sets = [f"train.time_budget_s={seconds}", "train.num_iterations=100000", "run.val_every=0",
                "run.checkpoint_every=0", "run.sample_every=0", "run.device='cpu'", *extra]
        cmd = [sys.executable, "-m", "nanogpt_tui", "train", "--preset", "shakespeare-cpu", "--name", "bench"]
        for item in sets:
            cmd += ["--set", item]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        run_dir = Path(env["NANOGPT_TUI_HOME"]) / "data" / "runs" / "bench"
        events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [e for e in events if e["kind"] == "train"]
    val = [e for e in events if e["kind"] == "val"][-1]
    sample = [e for e in events if e["kind"] == "sample"][-1]["text"]
    tokens = train[-1]["tokens"]
    step_time = sum(e["step_time_ms"] for e in train) / 1000 * (train[-1]["step"] / len(train))
    return {"val_bpb": val["val_bpb"], "val_loss": val["val_loss"], "tokens_per_s": tokens / step_time,
            "steps": train[-1]["step"], "sample": sample}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="training budget for each model")
    parser.add_argument("--quick", action="store_true", help="30 s each")
    parser.add_argument("--set", action="append", default=[], help="extra overrides for our preset")
    parser.add_argument("--skip-baseline", action="store_true", help="only train our preset (for tuning)")
    args = parser.parse_args()
    seconds = 30.0 if args.quick else args.seconds
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from engine.train.allocator import retain_freed_memory

    # the trainer keeps freed memory on CPU; the baseline trains in this process under the same setting
    retain_freed_memory()
    from engine.data.corpus import held_out_text, load_corpus, train_text

    documents = load_corpus("shakespeare")
    ours = train_preset(seconds, args.set)
    print(f"shakespeare-cpu: val_bpb {ours['val_bpb']:.4f} (loss {ours['val_loss']:.4f}) "
          f"tokens/s {ours['tokens_per_s']:.0f} steps {ours['steps']}\n--- sample ---\n{ours['sample'][:300]}\n")
    if args.skip_baseline:
        print(f"val_bpb={ours['val_bpb']:.4f} tokens_per_s={ours['tokens_per_s']:.0f} steps={ours['steps']}")
        return
    base = train_char_baseline(train_text(documents, 0.1), held_out_text(documents, 0.1), seconds)
    print(f"char baseline ({base['params'] / 1e6:.2f} M params): val_bpb {base['val_bpb']:.4f} "
          f"tokens/s {base['tokens_per_s']:.0f} steps {base['steps']}\n--- sample ---\n{base['sample'][:300]}\n")
    ratio = ours["val_bpb"] / base["val_bpb"]
    print(f"val_bpb={ours['val_bpb']:.4f} baseline_val_bpb={base['val_bpb']:.4f} ratio={ratio:.3f} "
          f"tokens_per_s={ours['tokens_per_s']:.0f} steps={ours['steps']}")


if __name__ == "__main__":
    main()
