"""`nanogpt-tui generate`: a completion on stdout, the chosen checkpoint on stderr, stdin prompts, errors."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import pytest
import torch

from engine.checkpoint import save_checkpoint
from engine.config import config_hash, preset, to_dict
from engine.data.tokenizer import BPETokenizer, train_bpe
from engine.runs import write_json
from nanogpt_tui.cli import run_cli
from tests.engine.test_generate import TEXT, one_thread, tiny_config, tiny_model  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return train_bpe([TEXT], 300)


def make_run(runs_root: Path, name: str, tokenizer: BPETokenizer, *, step: int = 10, corpus: str = "shakespeare",
             never_bos: bool = False) -> Path:
    """A finished run with one checkpoint of a tiny random model; never_bos keeps BOS out of its top tokens."""
    model = tiny_model(tokenizer.vocab_size)
    if never_bos:
        with torch.no_grad():
            model.lm_head.weight.normal_(std=10.0)
            # logit 15 while about half the others reach ~30; every special token ends a chat reply,
            # so all of them (not only BOS) are kept out of reach, whatever the random weights
            for special_id in {tokenizer.bos_id, *tokenizer.special_tokens.values()}:
                model.lm_head.weight[special_id] = 0.0
    base = preset("shakespeare-cpu")
    hp = dataclasses.replace(base, model=tiny_config(tokenizer.vocab_size),
                             data=dataclasses.replace(base.data, corpus=corpus, bpe_vocab_size=tokenizer.vocab_size))
    run_dir = runs_root / name
    run_dir.mkdir(parents=True)
    write_json(run_dir / "run.json", {"name": name, "kind": "pretrain", "preset": hp.preset, "created_at": time.time()})
    write_json(run_dir / "status.json", {"state": "finished", "step": step, "total_steps": step})
    payload = {"model": model.state_dict(), "optimizers": [], "config": to_dict(hp), "tokenizer": tokenizer.to_payload(),
               "data_position": None, "tokens_seen": 0}
    meta = {"config_hash": config_hash(hp), "run": name, "kind": "pretrain", "model": to_dict(hp)["model"]}
    return save_checkpoint(run_dir / "checkpoints", step, payload, meta)


@pytest.fixture
def tiny_run(isolated_home: Path, tokenizer: BPETokenizer) -> Path:
    return make_run(isolated_home / "data" / "runs", "tiny", tokenizer)


def test_generate_prints_a_completion(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "tiny", "--prompt", "hello", "--temperature", "0", "--max-tokens", "6", "--device", "cpu"]
    assert run_cli(argv) == 0
    first = capsys.readouterr()
    assert "checkpoint: run tiny, step 10" in first.err and "parameters" in first.err
    assert first.out.endswith("\n") and "Traceback" not in first.err
    assert run_cli(argv) == 0
    assert capsys.readouterr().out == first.out, "greedy generation must repeat"
    assert run_cli([*argv, "--echo"]) == 0
    assert capsys.readouterr().out == "hello" + first.out


def test_prompt_from_stdin_and_the_newest_checkpoint(tiny_run: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("hello"))
    assert run_cli(["generate", "--prompt", "-", "--temperature", "0", "--max-tokens", "6"]) == 0
    from_stdin = capsys.readouterr()
    assert "newest checkpoint of the newest run: tiny" in from_stdin.err
    assert run_cli(["generate", str(tiny_run), "--prompt", "hello", "--temperature", "0", "--max-tokens", "6"]) == 0
    assert capsys.readouterr().out == from_stdin.out


@pytest.mark.parametrize("argv,message", [
    (["generate", "ghost", "--prompt", "x"], "neither a checkpoint file nor a run"),
    (["generate", "tiny", "--prompt", "x", "--top-p", "0"], "top-p"),
    (["generate", "tiny", "--prompt", "x", "--temperature", "-1"], "temperature"),
])
def test_mistakes_exit_1(tiny_run: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = run_cli(argv)
    except SystemExit as exit:  # options are checked while argparse parses them
        code = exit.code
    assert code == 1
    err = capsys.readouterr().err
    assert "error: " in err and message in err and "Traceback" not in err


def test_no_runs_yet(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["generate", "--prompt", "x"]) == 1
    err = capsys.readouterr().err
    assert "no run" in err and "hint: " in err
