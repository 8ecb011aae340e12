"""The app and the CLI are two faces of one workspace: the same fine-tune plan (identical config.toml),
the same runs under a custom data_dir, the same checkpoint resolved."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from engine.config import load_toml
from engine.data.examples import example_path
from engine.runs import RunManager, Workspace
from engine.settings import Settings, save_settings
from nanogpt_tui.app import NanoGPTApp
from nanogpt_tui.cli import run_cli
from nanogpt_tui.screens.finetune_form import FinetuneFormScreen
from tests.helpers import tiny_config, write_corpus
from tests.tui.conftest import FakeEngine, wait_for

CONVERSATIONS = {"conversations": [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [("Greet me.", "Good morrow."), ("Who is king?", "Duncan."), ("A flower?", "The rose."),
                 ("Where?", "Verona."), ("The sea?", "Wide and grey."), ("Night?", "Dark and long.")]
]}


def _pretrain(root: Path | None, corpus_dir: Path, name: str = "base") -> Path:
    """A 4-step tiny run with one checkpoint, trained in this process."""
    from engine.train.pretraining import build_trainer
    from engine.train.trainer import StopSignal

    hp = tiny_config(write_corpus(corpus_dir), "train.num_iterations=4", "run.val_every=0", "run.sample_tokens=0")
    info = RunManager(root).create(hp, name)
    build_trainer(info.path, False, StopSignal()).run()
    return info.path


def _no_processes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """RunManager.launch records the name instead of starting a training process."""
    launched: list[str] = []

    def launch(self: RunManager, name: str, *, resume: bool = False):  # type: ignore[no-untyped-def]
        launched.append(name)
        return self.get(name)

    monkeypatch.setattr(RunManager, "launch", launch)
    return launched


async def test_cli_and_form_plan_the_same_finetune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent_dir = _pretrain(None, tmp_path)
    data = tmp_path / "chat.json"
    data.write_text(json.dumps(CONVERSATIONS))
    launched = _no_processes(monkeypatch)
    assert run_cli(["finetune", "--from", "base", "--data", str(data), "--name", "cli-ft", "--detach"]) == 0

    engine = FakeEngine(parent_dir.parent)
    app = NanoGPTApp(engine, Settings())
    async with app.run_test(size=(120, 40)) as pilot:
        (entry,) = engine.list_checkpoints()
        app.push_screen(FinetuneFormScreen(entry))
        await wait_for(pilot, lambda: isinstance(app.screen, FinetuneFormScreen), what="the fine-tune form")
        form = app.screen
        await wait_for(pilot, lambda: not form.query_one("#ft-lr", Input).disabled, what="the parent's settings")
        assert form.query_one("#ft-lr", Input).value == "0.002", "the form must start from the parent's finetune.lr"
        await pilot.press("ctrl+g")
        assert form.query_one("#ft-data", Input).value == str(example_path()), "ctrl+g offers the bundled example"
        form.query_one("#ft-data", Input).value = str(data)
        form.query_one("#ft-name", Input).value = "app-ft"
        await wait_for(pilot, lambda: not form.query_one("#launch").disabled, what="the data checked")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, FinetuneFormScreen), timeout=60,
                       what="the form closing on its launched run")
    assert engine.launched == [("app-ft", False)] and launched == ["cli-ft"]
    runs = parent_dir.parent
    cli_config = (runs / "cli-ft" / "config.toml").read_text()
    assert (runs / "app-ft" / "config.toml").read_text() == cli_config, "the app and the CLI planned different runs"
    assert load_toml(runs / "cli-ft" / "config.toml").finetune.lr == pytest.approx(2e-3)
    cli_meta = json.loads((runs / "cli-ft" / "run.json").read_text())
    app_meta = json.loads((runs / "app-ft" / "run.json").read_text())
    assert {k: v for k, v in cli_meta.items() if k not in ("name", "created_at")} == \
        {k: v for k, v in app_meta.items() if k not in ("name", "created_at")}


@pytest.mark.skipif(sys.platform != "linux", reason="the platform config folder is redirected by XDG on Linux only")
async def test_same_runs_and_checkpoint_under_a_custom_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("NANOGPT_TUI_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "platform-data"))
    custom = tmp_path / "custom"
    save_settings(Settings(data_dir=str(custom)))
    _pretrain(custom / "runs", tmp_path, "alpha")
    RunManager(tmp_path / "platform-data" / "nanogpt-tui" / "runs").create(
        tiny_config(write_corpus(tmp_path)), "elsewhere")  # in the default location: neither face may list it

    capsys.readouterr()  # the pretraining's own output
    assert run_cli(["runs"]) == 0
    cli_names = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line and not line[0].isspace()]
    app = NanoGPTApp()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the runs table")
        app_names = [str(key.value) for key in table.rows]
        assert app.engine.workspace.resolve_checkpoint(None).path == Workspace().resolve_checkpoint(None).path
    assert cli_names == app_names == ["alpha"]


async def test_sampling_starts_from_the_same_defaults() -> None:
    from engine.sampling_params import SamplingParams
    from nanogpt_tui.cli import build_parser
    from nanogpt_tui.widgets.sampling import SamplingPanel

    args = build_parser().parse_args(["chat"])
    cli = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                         max_new_tokens=args.max_tokens, repetition_penalty=args.repetition_penalty, seed=args.seed)
    app = NanoGPTApp(FakeEngine(Path("/nonexistent/runs")), Settings())
    async with app.run_test(size=(120, 40)):
        panel = SamplingPanel()
        await app.screen.mount(panel)
        assert panel.values() == cli == SamplingParams(), "the app's sliders and the CLI's flags start apart"


def test_both_faces_name_a_finetune_after_its_parent_run(tmp_path: Path) -> None:
    parent_dir = _pretrain(None, tmp_path)
    checkpoint = next((parent_dir / "checkpoints").glob("*.pt"))
    by_name, by_path = Workspace().resolve_checkpoint("base"), Workspace().resolve_checkpoint(str(checkpoint))
    assert by_name.path == by_path.path and by_name.run == by_path.run == "base"
