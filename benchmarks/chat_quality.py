"""CPU benchmark: does a fine-tuned default model hold a conversation? 8 scripted turns, several seeds.

Pretrains the default CPU preset (or takes --checkpoint), fine-tunes it on the bundled
examples/shakespeare_chat.json through the real CLI for a fixed budget (or takes --finetuned),
then holds the same scripted 8-turn conversation once per seed with the chat's sampling defaults.
Reports the share of replies that end on their own end-of-turn token (not at max tokens), the
U+FFFD characters shown, the turns the chat dropped to fit its context, decoding tokens/s, and
(crudely) the share of replies that use a word of their question's topic. Last line:
`ended_by_itself=… replacement_chars=… turns_dropped=… tokens_per_s=… on_topic=…`.

    python benchmarks/chat_quality.py                      # 180 s pretraining + 120 s fine-tuning, 5 seeds
    python benchmarks/chat_quality.py --quick              # 60 s + 30 s, 2 seeds
    python benchmarks/chat_quality.py --finetuned PT_OR_RUN_DIR --seeds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.finetune_cpu import EXAMPLE, cli  # noqa: E402
from benchmarks.long_context import checkpoint_path, pretrain  # noqa: E402

# the scripted user turns, each with words an on-topic reply would likely use (a crude check, not a score)
SCRIPT = [
    ("Good morrow!", ("morrow", "day", "welcome", "greet")),
    ("Tell me of the sea.", ("sea", "wave", "sailor", "tide", "ship")),
    ("What makes a good king?", ("king", "crown", "rule", "justice", "mercy", "throne")),
    ("I am sad and know not why.", ("sad", "sorrow", "grief", "woe", "tears", "sun", "joy")),
    ("Wilt thou tell me of love?", ("love", "heart", "lover")),
    ("What dost thou fear?", ("fear", "afraid", "dread", "death", "coward")),
    ("Tell me of the crown.", ("crown", "king", "throne")),
    ("Farewell, good friend.", ("farewell", "parting", "adieu", "meet again", "part")),
]


def finetune(home: str, parent: str, seconds: float) -> Path:
    env = dict(os.environ, NANOGPT_TUI_HOME=home, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    sets = [f"train.time_budget_s={seconds}", "finetune.epochs=100000", "run.val_every=0", "run.sample_tokens=0",
            "run.device='cpu'"]
    cli(env, "finetune", "--from", parent, "--data", str(EXAMPLE), "--name", "bench-chat-ft",
        *[part for item in sets for part in ("--set", item)])
    return Path(home) / "data" / "runs" / "bench-chat-ft"


def converse(generator, seed: int, max_tokens: int, show: bool) -> dict[str, float]:
    """The scripted conversation with one seed; counts per reply."""
    from engine.inference.chat import ChatSession, ContextTrimmed, ReplyFinished
    from engine.inference.generate import STOP_STRING, STOP_TOKEN, SamplingParams, TokenChunk

    # the CLI chat's defaults (nanogpt-tui chat): temperature 0.7, top-k 50, 256 tokens
    params = SamplingParams(temperature=0.7, top_k=50, max_new_tokens=max_tokens, seed=seed)
    session = ChatSession(generator, params)
    ended = replacement = tokens = on_topic = 0
    decode_s = 0.0
    for line, topic in SCRIPT:
        first_at = 0.0
        for event in session.send(line):
            if isinstance(event, TokenChunk) and event.token_id is not None and not first_at:
                first_at = time.perf_counter()
            elif isinstance(event, ReplyFinished):
                ended += event.finish_reason in (STOP_TOKEN, STOP_STRING)
                replacement += event.text.count("\ufffd")
                on_topic += any(word in event.text.lower() for word in topic)
                if event.tokens > 1:
                    tokens += event.tokens - 1
                    decode_s += time.perf_counter() - first_at
                if show:
                    print(f"  You: {line}\n  Assistant ({event.tokens} tokens, {event.finish_reason}): {event.text!r}")
            elif isinstance(event, ContextTrimmed) and show:
                print(f"  (dropped {event.dropped_messages} message(s))")
    return {"ended": ended, "replies": len(SCRIPT), "replacement": replacement,
            "dropped": session.dropped_messages / 2, "tokens": tokens, "decode_s": decode_s, "on_topic": on_topic}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="fine-tune this pretrained checkpoint or run directory")
    parser.add_argument("--finetuned", help="a fine-tuned checkpoint or run directory: skip both trainings")
    parser.add_argument("--pretrain-seconds", type=float, default=180.0)
    parser.add_argument("--seconds", type=float, default=120.0, help="fine-tuning budget")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--show", action="store_true", help="print every conversation")
    parser.add_argument("--quick", action="store_true", help="60 s + 30 s of training, 2 seeds")
    args = parser.parse_args()
    import torch

    from engine.importer import load_model
    from engine.inference.generate import Generator

    pretrain_s, finetune_s, seeds = (60.0, 30.0, 2) if args.quick else (args.pretrain_seconds, args.seconds, args.seeds)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    with tempfile.TemporaryDirectory() as home:
        source = args.finetuned
        if source is None:
            parent = args.checkpoint or str(pretrain(home, pretrain_s))
            source = str(finetune(home, str(checkpoint_path(parent)), finetune_s))
        loaded = load_model(checkpoint_path(source))
    generator = Generator.from_checkpoint(loaded, device="cpu")
    trained = (loaded.hyperparameters or {}).get("train", {}).get("train_seq_len")
    print(f"chat context {generator.max_context} tokens; trained on {trained}-token rows")
    totals: dict[str, float] = {}
    for seed in range(seeds):
        result = converse(generator, seed, args.max_tokens, args.show)
        print(f"seed {seed}: {result['ended']}/{result['replies']} replies ended by themselves, "
              f"{result['replacement']} U+FFFD, {result['dropped']:.0f} turns dropped, {result['on_topic']} on topic")
        totals = {key: totals.get(key, 0) + value for key, value in result.items()}
    print(f"ended_by_itself={totals['ended'] / totals['replies']:.3f} replacement_chars={totals['replacement']:.0f} "
          f"turns_dropped={totals['dropped']:.0f} tokens_per_s={totals['tokens'] / max(totals['decode_s'], 1e-9):.1f} "
          f"on_topic={totals['on_topic'] / totals['replies']:.3f}")


if __name__ == "__main__":
    main()
