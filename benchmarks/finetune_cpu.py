"""CPU benchmark: fine-tune the shakespeare-cpu model on the shipped example conversations.

Pretrains the default CPU model for a short budget (or takes --checkpoint), then fine-tunes it on
the bundled shakespeare_chat conversations for a fixed time through the real CLI, and reports the held-out
loss on assistant tokens before and after, tokens/s and three replies. Last line:
`val_loss_before=… val_loss_after=… tokens_per_s=…`.

    python benchmarks/finetune_cpu.py                  # 180 s pretraining + 120 s fine-tuning
    python benchmarks/finetune_cpu.py --quick          # 60 s + 30 s
    python benchmarks/finetune_cpu.py --checkpoint RUN_OR_PT --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXAMPLE = ROOT / "engine" / "data" / "assets" / "shakespeare_chat.json"
PROMPTS = ["Tell me of the sea.", "Good morrow!", "What makes a good king?"]


def cli(env: dict[str, str], *args: str) -> str:
    """Run the CLI (its progress bar goes to stderr); returns what it printed on stdout."""
    return subprocess.run([sys.executable, "-m", "nanogpt_tui", *args], cwd=ROOT, env=env, check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="fine-tune this checkpoint or run instead of pretraining one")
    parser.add_argument("--pretrain-seconds", type=float, default=180.0)
    parser.add_argument("--seconds", type=float, default=120.0, help="fine-tuning budget")
    parser.add_argument("--quick", action="store_true", help="60 s pretraining, 30 s fine-tuning")
    parser.add_argument("--data", type=Path, default=EXAMPLE)
    parser.add_argument("--set", action="append", default=[], help="extra overrides for the fine-tune")
    args = parser.parse_args()
    pretrain_s, finetune_s = (60.0, 30.0) if args.quick else (args.pretrain_seconds, args.seconds)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    with tempfile.TemporaryDirectory() as home:
        env["NANOGPT_TUI_HOME"] = env.get("NANOGPT_TUI_BENCH_HOME", home)
        parent = args.checkpoint
        if parent is None:
            cli(env, "train", "--preset", "shakespeare-cpu", "--name", "bench-base", "--set",
                f"train.time_budget_s={pretrain_s}", "--set", "train.num_iterations=100000", "--set", "run.val_every=0",
                "--set", "run.sample_tokens=0", "--set", "run.device='cpu'")
            parent = "bench-base"
        # the time budget ends it: enough epochs that the step count never does
        sets = [f"train.time_budget_s={finetune_s}", "finetune.epochs=100000", "run.val_every=25",
                "run.sample_tokens=60", "run.device='cpu'", *args.set]
        summary = cli(env, "finetune", "--from", parent, "--data", str(args.data), "--name", "bench-ft",
            *[part for item in sets for part in ("--set", item)])
        run_dir = Path(env["NANOGPT_TUI_HOME"]) / "data" / "runs" / "bench-ft"
        found = events(run_dir)
        replies = sample_replies(run_dir)
    train = [e for e in found if e["kind"] == "train"]
    val = [e for e in found if e["kind"] == "val"]
    step_time = sum(e["step_time_ms"] for e in train) / 1000 * (train[-1]["step"] / len(train))
    tokens_per_s = train[-1]["tokens"] / step_time
    print(summary.split("run bench-ft started")[0].rstrip())
    print(f"fine-tune: {train[-1]['step']} steps in {finetune_s:.0f} s, assistant val loss "
          f"{val[0]['val_loss']:.4f} -> {val[-1]['val_loss']:.4f}, {tokens_per_s:.0f} tokens/s (rows incl. padding)")
    for prompt, reply in replies:
        print(f"--- {prompt}\n{reply}")
    print(f"val_loss_before={val[0]['val_loss']:.4f} val_loss_after={val[-1]['val_loss']:.4f} "
          f"tokens_per_s={tokens_per_s:.0f}")


def sample_replies(run_dir: Path) -> list[tuple[str, str]]:
    """Greedy chat replies of the fine-tuned checkpoint to PROMPTS."""
    from engine.checkpoint import latest_checkpoint
    from engine.data.chat_template import default_template
    from engine.data.tokenizer import tokenizer_from_payload
    from engine.importer import load_model
    from engine.train.finetune import greedy_reply

    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    assert checkpoint is not None, f"the fine-tune in {run_dir} saved no checkpoint"
    loaded = load_model(checkpoint.path)
    tokenizer = tokenizer_from_payload(loaded.tokenizer_payload)
    template = default_template(tokenizer)
    return [(prompt, greedy_reply(loaded.model, tokenizer, [{"role": "user", "content": prompt}], template,
                                  max_new_tokens=60)) for prompt in PROMPTS]


if __name__ == "__main__":
    main()
