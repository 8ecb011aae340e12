"""`nanogpt-tui finetune`: the validation summary first, --check exit codes, errors, and a real detached run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.checkpoint import latest_checkpoint
from engine.runs import RunManager, read_json
from nanogpt_tui.cli import run_cli
from tests.helpers import tiny_config, write_corpus

GOOD = {"conversations": [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [("Greet me.", "Good morrow."), ("Who is king?", "Duncan."), ("A flower?", "The rose."),
                 ("Where?", "Verona.")]
]}


def _data(tmp_path: Path, content: dict = GOOD, name: str = "chat.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def _bad(tmp_path: Path) -> Path:
    bad = json.loads(json.dumps(GOOD))
    bad["conversations"][2]["messages"][1]["role"] = "bot"
    bad["conversations"][3]["messages"][0]["content"] = ""
    return _data(tmp_path, bad, "bad.json")


@pytest.fixture
def parent_run(tmp_path: Path) -> str:
    """A tiny run, pretrained for 4 steps in this test's home, with one checkpoint."""
    from engine.train.pretraining import build_trainer
    from engine.train.trainer import StopSignal

    hp = tiny_config(write_corpus(tmp_path), "train.num_iterations=4", "run.val_every=0", "run.sample_tokens=0")
    info = RunManager().create(hp, "base")
    build_trainer(info.path, False, StopSignal()).run()
    return "base"


def test_check_without_a_checkpoint_validates_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["finetune", "--data", str(_data(tmp_path)), "--check"]) == 0
    out = capsys.readouterr().out
    assert "conversations: 4 valid, 0 invalid" in out and "messages: 8" in out


def test_check_reports_every_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _bad(tmp_path)
    assert run_cli(["finetune", "--data", str(path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "3 problem(s) in 2 of 4 conversation(s)" in out
    assert f'{path}: conversations[2].messages[1].role: expected one of system/user/assistant, got "bot"' in out
    assert f"{path}: conversations[3].messages[0].content: is empty" in out


@pytest.mark.parametrize("argv,message", [
    (["finetune", "--data", "/nonexistent/finetune_data.json", "--check"], "does not exist"),
    (["finetune", "--from", "ghost", "--data", "x.json"], "neither a checkpoint file nor a run"),
    (["finetune", "--data", "x.json"], "--from is required"),
    (["finetune", "--from", "base"], "--data is required"),
])
def test_mistakes_exit_1_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


def test_invalid_data_trains_nothing(tmp_path: Path, parent_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["finetune", "--from", parent_run, "--data", str(_bad(tmp_path)), "--detach"]) == 1
    assert "nothing was trained" in capsys.readouterr().out
    assert [run.name for run in RunManager().list_runs()] == ["base"], "a run was created for invalid data"


def test_check_with_a_checkpoint_prints_tokens_and_the_plan(tmp_path: Path, parent_run: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["finetune", "--from", parent_run, "--data", str(_data(tmp_path)), "--check", "--epochs", "4"]) == 0
    out = capsys.readouterr().out
    assert "template: special" in out and "trained on (assistant replies)" in out
    assert "plan: " in out and "4 epoch(s)" in out
    assert len(RunManager().list_runs()) == 1
    skipped = ["finetune", "--from", parent_run, "--data", str(_bad(tmp_path)), "--check", "--skip-invalid"]
    assert run_cli(skipped) == 1, "--check exits 1 on invalid data even when training would skip it"
    assert "skipped: 3 problem(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_detached_finetune_finishes_with_its_parent_recorded(tmp_path: Path, parent_run: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["finetune", "--from", parent_run, "--data", str(_data(tmp_path)), "--epochs", "2", "--lr", "1e-3",
            "--set", "run.device='cpu'", "--name", "ft", "--detach"]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert out.index("conversations: 4 valid") < out.index("run ft started"), "the summary comes before the start"
    manager = RunManager()
    final = manager.wait("ft", timeout=180)
    assert final.state == "finished", (final.path / "train.log").read_text()
    meta = read_json(final.path / "run.json")
    parent_checkpoint = str(latest_checkpoint(manager.run_dir(parent_run) / "checkpoints").path)
    assert (meta["kind"], meta["parent"]) == ("finetune", parent_checkpoint)
    assert latest_checkpoint(final.path / "checkpoints").meta["parent"] == parent_checkpoint


def test_the_bundled_example_needs_no_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["finetune", "--data", "shakespeare_chat", "--check"]) == 0
    assert "conversations: 300 valid, 0 invalid" in capsys.readouterr().out
