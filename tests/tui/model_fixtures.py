"""A tiny real checkpoint written in the run-directory layout, and a scripted generator for timing-sensitive tests."""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from textual.screen import Screen
from textual.widgets import Static

from engine.config import Hyperparameters, config_hash, save_toml, to_dict
from engine.runs.protocol import CheckpointEntry
from nanogpt_tui.model_service import LoadedModel
from nanogpt_tui.widgets.path_input import display_path
from tests.helpers import VERSE, tiny_config
from tests.tui.conftest import FIXED_NOW, FakeEngine, write_run


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from engine.data.tokenizer import train_bpe

    return train_bpe([VERSE * 40], 320).to_payload()["json"]


def tiny_tokenizer() -> Any:
    from engine.data.tokenizer import BPETokenizer

    return BPETokenizer(_tokenizer_json())


def tiny_hyperparameters(corpus: str, *overrides: str) -> Hyperparameters:
    """tests.helpers.tiny_config with the model's vocabulary fitted to the tiny BPE tokenizer."""
    hp = tiny_config(Path(corpus), *overrides)
    tokenizer = tiny_tokenizer()
    model = dataclasses.replace(hp.model, vocab_size=tokenizer.vocab_size, bos_id=tokenizer.bos_id)
    return dataclasses.replace(hp, model=model)


def save_tiny_checkpoint(runs_root: Path, run: str = "tiny", *, step: int = 10, kind: str = "pretrain",
                         parent: str | None = None, val_loss: float = 5.5, val_bpb: float = 2.25,
                         seed: int = 0, created_at: float = FIXED_NOW - 3600, corpus: str = "",
                         overrides: Sequence[str] = ()) -> Path:
    """A real 2-layer GPT with random (seeded) weights saved as <runs_root>/<run>/checkpoints/step_*.pt + sidecar.

    The run and the sidecar say they were created at `created_at` (runs list newest first), so screens are stable.
    The config's corpus is `corpus`, or a small text file written beside the run (its held-out split is tiny).
    """
    import torch

    from engine.checkpoint import save_checkpoint
    from engine.model import GPT

    run_dir = runs_root / run
    if not run_dir.exists():
        write_run(runs_root, run, state="finished", steps=step, total=step, created_at=created_at)
        meta = json.loads((run_dir / "run.json").read_text())
        (run_dir / "run.json").write_text(json.dumps({**meta, "kind": kind, "parent": parent}))
    if not corpus:
        corpus = str(run_dir / "corpus.txt")
        Path(corpus).write_text(VERSE * 8, encoding="utf-8")
    hp = tiny_hyperparameters(corpus, *overrides)
    save_toml(hp, run_dir / "config.toml")
    torch.manual_seed(seed)
    model = GPT(hp.model, max_seq_len=hp.train.train_seq_len)
    with torch.no_grad():
        # the original's init zeroes the head (every token equally likely); random weights make replies vary
        for parameter in (model.lm_head.weight, *(b.mlp.c_proj.weight for b in model.blocks)):
            parameter.normal_(std=0.2)
    tokenizer = tiny_tokenizer()
    payload = {"model": model.state_dict(), "optimizers": [], "config": to_dict(hp), "tokenizer": tokenizer.to_payload(),
               "data_position": None, "tokens_seen": step * 256, "kind": kind, "parent": parent}
    meta = {"tokens_seen": step * 256, "config_hash": config_hash(hp), "tokenizer": "bpe", "run": run, "kind": kind,
            "parent": parent, "num_params": model.num_params(), "model": to_dict(hp)["model"], "preset": hp.preset,
            "val_loss": val_loss, "val_bpb": val_bpb}
    path = save_checkpoint(run_dir / "checkpoints", step, payload, meta)
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "created_at": created_at + step}))
    return path


def chat_model_text(screen: Screen[Any]) -> str:
    """The chat's model panel: the loaded checkpoint's label and path, "Loading …" or how to choose one."""
    return str(screen.query_one("#chat-model", Static).render())


def chat_shows(screen: Screen[Any], path: Path) -> bool:
    """Whether the chat's model panel names `path`: set once that checkpoint's conversation is ready."""
    return display_path(path) in chat_model_text(screen)


def entry_for(path: Path) -> CheckpointEntry:
    from engine.runs.protocol import read_sidecar

    meta, problem = read_sidecar(path)
    assert meta is not None, f"{path} has no usable sidecar: {problem}"
    return CheckpointEntry(path, meta["step"], meta, path.parent.parent.name)


class ScriptedGenerator:
    """Stands in for engine.inference.generate.Generator: yields the scripted pieces one token each.

    With a `gate` (a semaphore) each token waits for one release, so a test decides when a token
    comes; without one they come every `step_s` seconds.
    """

    def __init__(self, tokens: Sequence[str], *, max_context: int = 256, step_s: float = 0.0,
                 gate: threading.Semaphore | None = None) -> None:
        from engine.inference.generate import TokenChunk

        self.tokenizer = tiny_tokenizer()
        self.max_context = max_context
        self.attention_span = 64  # how far back the scripted "model" reads, for the status line
        self.tokens = list(tokens)
        self.step_s = step_s
        self.gate = gate
        self.calls: list[tuple[list[list[int]], Any]] = []
        self.cancel_seen: threading.Event | None = None
        self._chunk = TokenChunk

    def prompt_text(self, call: int = -1) -> str:
        """The first prompt of a generate call, decoded: the conversation as the model read it."""
        return self.tokenizer.decode(self.calls[call][0][0])

    def encode_prompt(self, text: str) -> list[int]:
        return [self.tokenizer.bos_id, *self.tokenizer.encode(text)]

    def generate(self, prompt_tokens: Sequence[int], params: Any, cancel: threading.Event | None = None) -> Iterator[Any]:
        return self.generate_batch([prompt_tokens], params, cancel)

    def generate_batch(self, prompts: Sequence[Sequence[int]], params: Any,
                       cancel: threading.Event | None = None) -> Iterator[Any]:
        self.calls.append(([list(p) for p in prompts], params))
        self.cancel_seen = cancel
        for index, text in enumerate(self.tokens):
            self._wait(cancel)
            if cancel is not None and cancel.is_set():
                for sample in range(len(prompts)):
                    yield self._chunk("", None, sample, "cancelled")
                return
            for sample in range(len(prompts)):
                yield self._chunk(text if sample == 0 else text.upper(), 1, sample)
        for sample in range(len(prompts)):  # the end of turn, as a fine-tuned model emits it
            yield self._chunk("", self.tokenizer.bos_id, sample, "stop_token")

    def _wait(self, cancel: threading.Event | None) -> None:
        if self.gate is None:
            time.sleep(self.step_s)
            return
        while not self.gate.acquire(timeout=0.01):
            if cancel is not None and cancel.is_set():
                return


class ScriptedEngine(FakeEngine):
    """The test engine whose models generate a script; everything else is the real local engine."""

    def __init__(self, root: Path, generator: ScriptedGenerator, *, finetuned: bool = True) -> None:
        super().__init__(root)
        self.generator = generator
        self.finetuned = finetuned
        self.loaded: list[Path] = []

    def load_model(self, entry: CheckpointEntry) -> LoadedModel:
        self.loaded.append(entry.path)
        return LoadedModel(entry.path, entry.label, self.generator, None, self.finetuned)  # type: ignore[arg-type]


class FixedEvalEngine(ScriptedEngine):
    """Evaluation with fixed figures (the loss grows with each model loaded), so screens do not depend on timing."""

    def evaluate(self, model: LoadedModel, data: str | None, max_tokens: int,
                 progress: Callable[[float], None], cancel: threading.Event) -> Any:
        from engine.inference.evaluate import EvalReport

        progress(0.5)
        loss = 4.0 + len(self.loaded) / 10
        return EvalReport(loss, loss / 3, 12345, 45678, 64, "held-out 10% of shakespeare", 1.5)
