"""Chat screen figures: Enter to first token on screen, key latency while a reply streams, on-screen vs raw tokens/s.

The model is the default CPU preset's (shakespeare-cpu: 6 layers, dim 192, BPE 4096 trained on the
embedded corpus) with seeded random weights, saved as a run's checkpoint in a temporary
NANOGPT_TUI_HOME; `--checkpoint PATH` uses a real one instead. The app runs headless (Textual's
run_test) with the real engine. Both the raw run and the app sample with the same seed and
parameters, so they produce the same tokens.

Raw replies and app replies alternate (rounds), so a busy machine weighs on both alike.

- first_token_ms: from pressing Enter in the prompt to the reply's first token drawn in the view
  (median over rounds).
- key_latency_ms: during one more reply, → pressed on the temperature slider every 50 ms; the
  slowest from the key press to the slider's new value.
- stream_efficiency: tokens/s reaching the view (first to last drawn token) ÷ the engine's raw
  tokens/s (ChatSession.send alone, first to last token, the mean of the raw replies just before
  and after); median of the rounds' ratios.

The last line printed is `first_token_ms=… key_latency_ms=… stream_efficiency=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.sampling_params import SamplingParams
from nanogpt_tui.model_service import CheckpointEntry, sampling_params
from nanogpt_tui.screens.chat_commands import ChatCommand

PROMPT = "Good morrow, my lord. What news from Verona?"
KEY_GAP_S = 0.05  # between the key presses of the last reply (a fast typist)
# moving the focus rebuilds the footer's key list; a user's next key press comes later than that
FOCUS_SETTLE_S = 0.3


def make_checkpoint(runs_root: Path, quick: bool) -> Path:
    """The default preset's model with seeded random weights (a non-zero head, so replies vary)."""
    import dataclasses
    import json

    import torch

    from engine.checkpoint import save_checkpoint
    from engine.config import config_hash, preset, save_toml, to_dict
    from engine.data.corpus import load_corpus
    from engine.data.tokenizer import train_bpe
    from engine.model import GPT

    hp = preset("shakespeare-cpu")
    documents = load_corpus("shakespeare")
    tokenizer = train_bpe(documents[:8] if quick else documents, hp.model.vocab_size)
    hp = dataclasses.replace(hp, model=dataclasses.replace(hp.model, vocab_size=tokenizer.vocab_size))
    torch.manual_seed(0)
    model = GPT(hp.model, max_seq_len=hp.train.train_seq_len)
    with torch.no_grad():
        model.lm_head.weight.normal_(std=0.05)
    run_dir = runs_root / "bench"
    run_dir.mkdir(parents=True)
    save_toml(hp, run_dir / "config.toml")
    (run_dir / "run.json").write_text(json.dumps({"name": "bench", "kind": "pretrain", "preset": hp.preset,
                                                  "created_at": time.time()}))
    payload = {"model": model.state_dict(), "optimizers": [], "config": to_dict(hp),
               "tokenizer": tokenizer.to_payload(), "data_position": None, "tokens_seen": 0}
    meta = {"tokens_seen": 0, "config_hash": config_hash(hp), "tokenizer": "bpe", "run": "bench", "kind": "pretrain",
            "parent": None, "num_params": model.num_params(), "model": to_dict(hp)["model"], "preset": hp.preset}
    return save_checkpoint(run_dir / "checkpoints", 0, payload, meta)


def checkpoint_entry(path: Path) -> CheckpointEntry:
    from engine.runs.protocol import read_sidecar

    meta, _ = read_sidecar(path)
    return CheckpointEntry(path, (meta or {}).get("step", 0), meta or {}, path.parent.parent.name)


class RawEngine:
    """The engine alone: ChatSession.send with the app's default sampling, a fresh conversation each time."""

    def __init__(self, entry: CheckpointEntry, max_tokens: int) -> None:
        from engine.importer import load_model
        from engine.inference.generate import Generator

        self.generator = Generator.from_checkpoint(load_model(entry.path))
        self.template = "" if entry.finetuned else "plain"
        self.max_tokens = max_tokens
        self.reply(8)  # warms up what a process does once (allocations, kernels), as the app's first reply has

    def reply(self, max_tokens: int | None = None) -> tuple[float, int]:
        """(tokens/s after the first token, tokens) of one reply to PROMPT."""
        from engine.inference.chat import ChatSession
        from engine.inference.generate import TokenChunk

        self.generator.reset()
        session = ChatSession(self.generator, template=self.template)
        params = sampling_params(SamplingParams(max_new_tokens=max_tokens or self.max_tokens))
        times = [time.perf_counter() for event in session.send(PROMPT, None, params)
                 if isinstance(event, TokenChunk) and event.token_id is not None]
        return (len(times) - 1) / (times[-1] - times[0]), len(times)


def press(driver: object, key: str) -> None:
    """A key as the terminal's input thread delivers it (Pilot.press would also wait for the app to be idle)."""
    from textual import events

    driver.send_message(events.Key(key, None))  # type: ignore[attr-defined]


@dataclass
class Figures:
    first_token_ms: list[float] = field(default_factory=list)
    key_latency_ms: list[float] = field(default_factory=list)
    raw_tokens_per_s: list[float] = field(default_factory=list)
    drawn_tokens_per_s: list[float] = field(default_factory=list)
    frames_per_s: list[float] = field(default_factory=list)  # redraws of the streaming reply
    status: str = ""


async def measure(entry: CheckpointEntry, runs_root: Path, raw: RawEngine, rounds: int) -> Figures:
    """Rounds of one raw reply then one reply in the app, so a busy machine weighs on both alike."""
    from nanogpt_tui.app import LocalEngine, NanoGPTApp
    from nanogpt_tui.screens.chat import ChatScreen
    from nanogpt_tui.screens.checkpoints import open_checkpoint_in
    from engine.settings import Settings
    from nanogpt_tui.widgets.message import ChatMessage, PromptArea
    from nanogpt_tui.widgets.slider import Slider

    drawn: list[tuple[float, str]] = []  # (when, footnote) of the reply: "N tokens…" while it streams
    set_footnote = ChatMessage.set_footnote

    def recording(self: ChatMessage, note: str) -> None:
        drawn.append((time.perf_counter(), note))
        set_footnote(self, note)

    ChatMessage.set_footnote = recording  # type: ignore[method-assign]
    figures = Figures()
    app = NanoGPTApp(LocalEngine(runs_root), Settings())
    async with app.run_test(size=(120, 40)) as pilot:
        await open_checkpoint_in(app, "chat", entry)
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        while screen._session is None:
            await pilot.pause(0.05)
        screen.query_one("#max-tokens", Slider).value = raw.max_tokens
        driver = app._driver
        assert driver is not None
        prompt, slider = screen.query_one(PromptArea), screen.query_one("#temperature", Slider)
        for round_ in range(rounds + 1):
            # the last reply is for key presses; the others measure the stream undisturbed
            keys = round_ == rounds
            # a raw reply before each app reply and after the last: each app reply is compared with the raw
            # replies on either side of it (in a worker thread, as the app generates: torch threads
            # differently in the main thread)
            figures.raw_tokens_per_s.append((await asyncio.to_thread(raw.reply))[0])
            screen.run_command(ChatCommand("new"))  # the same fresh conversation as the raw reply
            slider.value = 0.8
            prompt.focus()
            prompt.text = PROMPT
            await pilot.pause()
            drawn.clear()
            pressed = time.perf_counter()
            press(driver, "enter")
            while not drawn:
                await asyncio.sleep(0.001)
            if keys:
                slider.focus()
                await asyncio.sleep(FOCUS_SETTLE_S)
                while screen.generating:
                    before, started = slider.value, time.perf_counter()
                    press(driver, "right" if before < slider.maximum else "home")
                    while slider.value == before:
                        await asyncio.sleep(0.001)
                    figures.key_latency_ms.append((time.perf_counter() - started) * 1000)
                    await asyncio.sleep(KEY_GAP_S)
            while screen.generating:
                await asyncio.sleep(0.02)  # not pilot.pause: it forces a screen update each time
            if not keys:
                figures.first_token_ms.append((drawn[0][0] - pressed) * 1000)  # the first footnote comes with it
                first_when, first_note = drawn[0]
                last_when, last_note = drawn[-1]
                tokens = int(last_note.split()[0]) - int(first_note.split()[0])
                figures.drawn_tokens_per_s.append(tokens / (last_when - first_when))
                figures.frames_per_s.append((len(drawn) - 1) / (last_when - first_when))
        figures.status = str(screen.query_one("#chat-status").render())
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter replies, fewer rounds, a tokenizer trained on less")
    parser.add_argument("--checkpoint", type=Path, help="a real checkpoint instead of the random default-preset model")
    parser.add_argument("--max-tokens", type=int, help="reply length (default 192, 96 with --quick; the prompt "
                        "and reply fit the default model's 256-token context)")
    parser.add_argument("--rounds", type=int, help="raw/app reply pairs (default 5, 2 with --quick)")
    args = parser.parse_args()
    max_tokens = args.max_tokens or (96 if args.quick else 192)
    rounds = args.rounds or (2 if args.quick else 5)
    home = Path(tempfile.mkdtemp(prefix="chat-ui-bench-"))
    os.environ["NANOGPT_TUI_HOME"] = str(home)
    runs_root = home / "runs"
    started = time.perf_counter()
    entry = checkpoint_entry(args.checkpoint.resolve() if args.checkpoint else make_checkpoint(runs_root, args.quick))
    print(f"checkpoint: {entry.path} (ready in {time.perf_counter() - started:.1f} s)")
    figures = asyncio.run(measure(entry, runs_root, RawEngine(entry, max_tokens), rounds))
    raw_around = [(before + after) / 2 for before, after in zip(figures.raw_tokens_per_s, figures.raw_tokens_per_s[1:])]
    efficiency = [drawn / raw for drawn, raw in zip(figures.drawn_tokens_per_s, raw_around)]
    print("engine alone, tokens/s:  " + " ".join(f"{rate:.1f}" for rate in figures.raw_tokens_per_s))
    print("drawn in the app, tok/s: " + " ".join(f"{rate:.1f}" for rate in figures.drawn_tokens_per_s))
    print("redraws of the reply, /s:  " + " ".join(f"{rate:.1f}" for rate in figures.frames_per_s))
    print("Enter to first token, ms: " + " ".join(f"{ms:.0f}" for ms in figures.first_token_ms))
    print("key latencies, ms: " + " ".join(f"{ms:.0f}" for ms in figures.key_latency_ms))
    print(f"key press to slider change while streaming, ms (n={len(figures.key_latency_ms)}): median "
          f"{statistics.median(figures.key_latency_ms):.0f}, max {max(figures.key_latency_ms):.0f}")
    print(f"status line of the last reply: {figures.status}")
    print(f"first_token_ms={statistics.median(figures.first_token_ms):.0f} "
          f"key_latency_ms={max(figures.key_latency_ms):.0f} stream_efficiency={statistics.median(efficiency):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
