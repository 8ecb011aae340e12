"""Fine-tuning on tiny real models: assistant loss falls, a trained answer comes back, exact resume,
original-format parents, the Muon option, and SIGTERM + resume through a real subprocess."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
import torch

from engine.checkpoint import latest_checkpoint, read_checkpoint_file
from engine.config import ModelConfig
from engine.errors import DataError
from engine.metrics import read_metrics
from engine.runs import RunManager, pid_alive
from tests.helpers import tiny_config, write_corpus, stop_after_steps

# distinct prompts with distinct answers, so a reproduced answer means the prompt was read
CONVERSATIONS = [
    ("Greet me.", "Good morrow, friend."),
    ("Who is the king?", "Duncan is king."),
    ("Name a flower.", "The rose."),
    ("Where is Romeo?", "In Verona."),
    ("Bid me farewell.", "Adieu, adieu."),
]


def _write_conversations(path: Path, pairs: list[tuple[str, str]] = CONVERSATIONS) -> Path:
    conversations = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                     for q, a in pairs]
    path.write_text(json.dumps({"conversations": conversations}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def parent_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model pretrained for 10 steps on verse (one per module: it takes a few seconds)."""
    from engine.train.pretraining import build_trainer
    from engine.train.trainer import StopSignal

    folder = tmp_path_factory.mktemp("parent")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NANOGPT_TUI_HOME", str(folder / "home"))
        hp = tiny_config(write_corpus(folder), "train.num_iterations=10", "run.val_every=0", "run.sample_tokens=0")
        info = RunManager(folder / "runs").create(hp, "base")
        build_trainer(info.path, False, StopSignal()).run()
    return latest_checkpoint(info.path / "checkpoints").path


def _finetune_run(name: str, parent: Path, data: Path, *overrides: str) -> Path:
    from engine.train.finetune import finetune_hyperparameters, read_parent

    hp = finetune_hyperparameters(read_parent(parent), str(data), ["run.device='cpu'", *overrides])
    return RunManager().create(hp, name, kind="finetune", parent=str(parent)).path


def _trainer(run_dir: Path, resume: bool = False, stop_after: int | None = None):
    from engine.train.finetune import build_trainer
    from engine.train.trainer import StopSignal

    stop = StopSignal()
    return stop_after_steps(build_trainer(run_dir, resume, stop), stop, stop_after)


@pytest.fixture(scope="module")
def finetuned(parent_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """One fine-tune (shared by two tests) that memorises: 3 conversations, 25 steps of Muon + Adam.

    AdamW at the rates that keep a real model intact needs many more steps to move the logits of a
    dim-64 model this far, so the memorisation test uses the Muon option.
    """
    folder = tmp_path_factory.mktemp("finetuned")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NANOGPT_TUI_HOME", str(folder / "home"))
        data = _write_conversations(folder / "chat.json", CONVERSATIONS[:4])
        run_dir = _finetune_run("ft", parent_checkpoint, data, "train.batch_size=2", "finetune.epochs=25",
                                "finetune.optimizer='muon'", "finetune.muon_scale=0.3", "finetune.val_fraction=0.25",
                                "run.val_every=10", "run.sample_tokens=12")
        trainer = _trainer(run_dir)
        assert trainer.run() == "finished"
    return trainer, run_dir


def test_assistant_loss_falls_and_the_run_directory_is_complete(parent_checkpoint: Path, tmp_path: Path) -> None:
    data = _write_conversations(tmp_path / "chat.json", CONVERSATIONS[:4])
    run_dir = _finetune_run("ft", parent_checkpoint, data, "train.batch_size=2", "finetune.epochs=25",
                            "finetune.lr=1e-2", "finetune.val_fraction=0.25", "run.val_every=10", "run.sample_tokens=12")
    trainer = _trainer(run_dir)
    assert trainer.run() == "finished"
    assert [type(opt).__name__ for opt in trainer.optimizers] == ["AdamW"], "AdamW on everything by default"
    events = read_metrics(run_dir / "metrics.jsonl")
    train = [e["loss"] for e in events if e["kind"] == "train"]
    val = [e["val_loss"] for e in events if e["kind"] == "val"]
    assert train[-1] < train[0] / 3, f"assistant loss did not fall: {train}"
    assert val[-1] < val[0], f"held-out assistant loss did not fall: {val}"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    info = latest_checkpoint(run_dir / "checkpoints")
    assert info.step == trainer.hp.train.num_iterations
    assert (info.meta["kind"], info.meta["parent"]) == ("finetune", str(parent_checkpoint))
    payload = read_checkpoint_file(info.path)
    assert payload["parent"] == str(parent_checkpoint) and payload["config"]["finetune"]["epochs"] == 25
    assert (run_dir / "tokenizer" / "tokenizer.json").exists(), "chat needs the run's own tokenizer"
    sample = next(e["text"] for e in events if e["kind"] == "sample")
    assert sample.startswith("user: ") and "\nassistant: " in sample


def test_greedy_chat_reproduces_a_trained_answer(finetuned) -> None:
    from engine.inference.chat import ChatSession, ReplyFinished
    from engine.inference.generate import Generator, SamplingParams

    trainer, _ = finetuned
    held_out = trainer.task.data.dataset.sample_prompt[0]["content"]
    trained = [(q, a) for q, a in CONVERSATIONS[:4] if q != held_out]
    generator = Generator(trainer.model, trainer.tokenizer, device="cpu", max_context=64)
    replies = {}
    for question, _ in trained:
        session = ChatSession(generator, SamplingParams(temperature=0.0, max_new_tokens=24))
        finished = [e for e in session.send(question) if isinstance(e, ReplyFinished)]
        replies[question] = finished[0].text
    correct = [q for q, a in trained if replies[q] == a]
    assert len(correct) >= 2, f"trained answers did not come back: {replies}"


def test_validation_scores_the_held_out_assistant_targets_only(finetuned) -> None:
    import math

    from engine.data.prepare import token_byte_lengths

    trainer, _ = finetuned
    val, window = trainer.task.data.dataset.val, trainer.window_blocks()
    got = trainer.validate(window)
    tokens, mask = val.tokens.to(torch.int64), val.mask[:, 1:]  # (N, T + 1), (N, T)
    with torch.no_grad():  # every held-out row at once, by hand
        nats = float(trainer.model(tokens[:, :-1], tokens[:, 1:], window, reduction="sum", loss_mask=mask))
    num_bytes = float(torch.tensor(token_byte_lengths(trainer.tokenizer), dtype=torch.float64)[tokens[:, 1:][mask]].sum())
    assert 0 < int(mask.sum()) < mask.numel(), "the held-out rows mix assistant and other tokens"
    assert got["val_loss"] == pytest.approx(nats / int(mask.sum()), rel=1e-4)
    assert got["val_bpb"] == pytest.approx(nats / (math.log(2) * num_bytes), rel=1e-4)


def test_resume_matches_an_uninterrupted_run(parent_checkpoint: Path, tmp_path: Path) -> None:
    data = _write_conversations(tmp_path / "chat.json")
    settings = ("train.batch_size=2", "finetune.epochs=6", "finetune.lr=1e-3", "run.val_every=0",
                "run.sample_tokens=0")
    straight = _finetune_run("straight", parent_checkpoint, data, *settings)
    _trainer(straight).run()
    interrupted = _finetune_run("interrupted", parent_checkpoint, data, *settings)
    assert _trainer(interrupted, stop_after=3).run() == "stopped"
    assert latest_checkpoint(interrupted / "checkpoints").step == 3
    assert _trainer(interrupted, resume=True).run() == "finished"
    a = read_checkpoint_file(latest_checkpoint(straight / "checkpoints").path)
    b = read_checkpoint_file(latest_checkpoint(interrupted / "checkpoints").path)
    assert a["step"] == b["step"] > 3 and a["data_position"] == b["data_position"]
    for key, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][key], tensor, atol=1e-5, rtol=1e-4,
                                   msg=lambda m: f"{key} differs after resume: {m}")


def test_muon_option_uses_the_pretraining_split_with_scaled_rates(parent_checkpoint: Path, tmp_path: Path) -> None:
    from engine.train.muon import Muon

    data = _write_conversations(tmp_path / "chat.json")
    run_dir = _finetune_run("muon", parent_checkpoint, data, "finetune.optimizer='muon'", "finetune.muon_scale=0.1",
                            "finetune.epochs=1")
    trainer = _trainer(run_dir)
    adam, muon = trainer.optimizers
    assert isinstance(muon, Muon) and muon.param_groups[0]["lr"] == pytest.approx(0.1 * trainer.hp.optim.muon_lr)
    assert trainer.run() == "finished"


def test_bad_data_stops_the_run_before_training(parent_checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "chat.json"
    data.write_text(json.dumps({"conversations": [{"messages": [{"role": "bot", "content": "x"}]}]}))
    with pytest.raises(DataError, match='conversations\\[0\\].messages\\[0\\].role: expected one of .* got "bot"'):
        _trainer(_finetune_run("bad", parent_checkpoint, data))
    missing = _finetune_run("missing", parent_checkpoint, tmp_path / "finetune_data.json")
    with pytest.raises(DataError, match="does not exist"):
        _trainer(missing)


def _fake_gpt2():
    """A tokenizer with GPT-2's ids (50257, separator 50256) built offline: bytes and byte pairs."""
    import tiktoken

    from engine.data.tokenizer import GPT2Tokenizer

    ranks = {bytes([i]): i for i in range(256)}
    for rank, pair in zip(range(256, 50256), itertools.product(range(256), repeat=2)):
        ranks[bytes(pair)] = rank
    encoding = tiktoken.Encoding(name="fake-gpt2", pat_str=r"\S+|\s+", mergeable_ranks=ranks,
                                 special_tokens={"<|endoftext|>": 50256})
    return GPT2Tokenizer(encoding)


def test_finetune_from_an_original_modded_nanogpt_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.data.tokenizer
    from engine.model import GPT
    from engine.train.finetune import read_parent

    fake = _fake_gpt2()
    monkeypatch.setattr(engine.data.tokenizer, "gpt2_tokenizer", lambda: fake)
    config = ModelConfig(num_layers=2, num_heads=1, model_dim=32, num_value_embeds=1, no_attention_layers=(),
                         window_pattern="LL")
    torch.manual_seed(0)
    model = GPT(config)
    state = {f"_orig_mod.{key}": value for key, value in model.state_dict().items()}
    original = tmp_path / "state_step000100.pt"
    torch.save({"step": 100, "code": "print('train_gpt.py')", "model": state, "optimizers": [{}, {}]}, original)
    parent = read_parent(original)
    assert parent.hp is None and parent.model == config and parent.tokenizer == {"kind": "gpt2"}
    data = _write_conversations(tmp_path / "chat.json")
    run_dir = _finetune_run("from-original", original, data, "train.train_seq_len=128", "train.batch_size=2",
                            "train.micro_batch_size=2", "finetune.epochs=2", "run.sample_tokens=4")
    trainer = _trainer(run_dir)
    assert trainer.task.data.dataset.template == "plain", "a GPT-2 vocabulary has no chat tokens"
    for key, value in model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), f"{key} was not loaded from the original"
    assert trainer.run() == "finished"
    assert latest_checkpoint(run_dir / "checkpoints").meta["parent"] == str(original)


@pytest.mark.slow
def test_sigterm_saves_and_resume_finishes(parent_checkpoint: Path, tmp_path: Path) -> None:
    manager = RunManager()
    data = _write_conversations(tmp_path / "chat.json")
    # a 4 s training-time budget: long enough to stop it midway on any machine, short to finish after resume
    name = _finetune_run("sigterm", parent_checkpoint, data, "train.batch_size=2", "finetune.epochs=10000",
                         "train.time_budget_s=4", "run.val_every=0", "run.sample_tokens=0").name
    info = manager.launch(name)
    log = info.path / "train.log"
    deadline = time.monotonic() + 120
    while not any(e["kind"] == "train" for e in read_metrics(info.path / "metrics.jsonl")):
        assert time.monotonic() < deadline and manager.get(name).state == "running", log.read_text()
        time.sleep(0.2)
    manager.stop(name)
    stopped = manager.wait(name, timeout=120)
    assert stopped.state == "stopped", log.read_text()
    checkpoint = latest_checkpoint(info.path / "checkpoints")
    assert checkpoint is not None and checkpoint.step == stopped.step > 0
    assert checkpoint.meta["kind"] == "finetune"
    # the old supervisor records its exit code last; resuming before it is gone races with that write
    while stopped.pid is not None and pid_alive(stopped.pid):
        assert time.monotonic() < deadline + 120, "the stopped run's supervisor did not exit"
        time.sleep(0.1)
    manager.resume(name)
    final = manager.wait(name, timeout=120)
    assert final.state == "finished", log.read_text()
    steps = [e["step"] for e in read_metrics(info.path / "metrics.jsonl") if e["kind"] == "train"]
    assert steps == sorted(steps) and steps[-1] > stopped.step, "the resumed run did not continue past the stop"


@pytest.mark.slow
def test_two_process_gloo_finetune(parent_checkpoint: Path, tmp_path: Path) -> None:
    from engine.train.finetune import finetune_hyperparameters, read_parent

    data = _write_conversations(tmp_path / "chat.json", CONVERSATIONS * 3)
    hp = finetune_hyperparameters(read_parent(parent_checkpoint), str(data),
                                  ["run.device='cpu'", "train.batch_size=4", "finetune.epochs=2", "run.val_every=2"])
    manager = RunManager()
    info = manager.create_and_launch(hp, "ddp", kind="finetune", nproc=2, parent=str(parent_checkpoint))
    final = manager.wait("ddp", timeout=240)
    assert final.state == "finished", (info.path / "train.log").read_text()
    events = read_metrics(info.path / "metrics.jsonl")
    assert [e["step"] for e in events if e["kind"] == "train"] == list(range(1, final.step + 1))
    assert "2 process(es)" in json.dumps(events)
