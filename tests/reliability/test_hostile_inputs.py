"""Bad input never crashes the app, never prints a traceback, never loses a file: several members of each class.

The CLI runs as a real process: exit code 1, exactly one `error:` line naming the field or file, no
traceback. The app runs under Pilot: it stays up and shows a notice. Nothing here depends on a message's
wording beyond the `error:` prefix and the name of the field or file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runs import update_status
from tests.tui.conftest import runs_root  # noqa: F401 - the fixture: <home>/data/runs

PYTHON = [sys.executable, "-m", "nanogpt_tui"]
ONE_LAYER_TOO_MANY = "L" * 64


def cli(*args: str | bytes, stdin: bytes = b"", env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """`nanogpt-tui ARGS` in a fresh process (bytes arguments reach it undecoded, as from a shell)."""
    return subprocess.run([*PYTHON, *args], input=stdin, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def error_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [line for line in result.stderr.decode("utf-8", "replace").splitlines() if line.startswith("error: ")]


def assert_refused(result: subprocess.CompletedProcess[bytes], *names: str) -> str:
    """Exit 1, one `error:` line that names each of `names`, no traceback; returns the error line."""
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert result.returncode == 1, (result.returncode, err)
    lines = error_lines(result)
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def tiny(runs_root: Path) -> Path:
    """A finished run "tiny" with one real checkpoint of a 2-layer model."""
    from tests.tui.model_fixtures import save_tiny_checkpoint

    return save_tiny_checkpoint(runs_root, "tiny")


# ---------------------------------------------------------------------------------------------- numbers

NUMBERS = [
    (["generate", "tiny", "--prompt", "x", "--temperature", "nan"], "--temperature"),
    (["generate", "tiny", "--prompt", "x", "--repetition-penalty", "nan"], "--repetition-penalty"),
    (["generate", "tiny", "--prompt", "x", "--top-k", "-3"], "--top-k"),
    (["generate", "tiny", "--prompt", "x", "--temperature", "1e308"], "--temperature"),
    (["generate", "tiny", "--prompt", "x", "--repetition-penalty", "1e-300"], "--repetition-penalty"),
    (["chat", "tiny", "--top-p", "inf"], "--top-p"),
    (["eval", "tiny", "--max-eval-tokens", "-1"], "--max-eval-tokens"),
    (["eval", "tiny", "--seq-len", "nan"], "--seq-len"),
    (["finetune", "--from", "tiny", "--data", "x.json", "--lr", "nan"], "--lr"),
    (["estimate", "--nproc", "0"], "--nproc"),
    (["train", "--detach", "--set", "optim.muon_lr=-1"], "optim.muon_lr"),
    (["train", "--detach", "--set", "optim.muon_lr=nan"], "optim.muon_lr"),
    (["train", "--detach", "--set", "optim.muon_lr=inf"], "optim.muon_lr"),
    (["train", "--detach", "--set", "optim.adam_beta2=1.5"], "optim.adam_beta2"),
    (["train", "--detach", "--set", "train.cooldown_frac=nan"], "train.cooldown_frac"),
    (["train", "--detach", "--set", "run.stop_timeout_s=-inf"], "run.stop_timeout_s"),
    (["train", "--detach", "--set", "run.log_every=0"], "run.log_every"),
    (["train", "--detach", "--set", "finetune.lr=nan"], "finetune.lr"),
]


@pytest.mark.parametrize("argv,name", NUMBERS, ids=[" ".join(a[-2:]) for a, _ in NUMBERS])
def test_numbers_that_are_not_numbers_are_refused(tiny: Path, runs_root: Path, argv: list[str], name: str) -> None:
    before = sorted(p.name for p in runs_root.iterdir())
    assert_refused(cli(*argv), name)
    assert sorted(p.name for p in runs_root.iterdir()) == before, "a refused command created a run"


def test_a_config_file_with_nan_names_the_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "nan.toml"
    config.write_text('preset = "shakespeare-cpu"\n[optim]\nmuon_lr = nan\n')
    assert_refused(cli("train", "--detach", "--config", str(config)), "nan.toml", "optim.muon_lr")


def test_a_model_too_big_for_the_machine_is_refused_with_the_numbers(runs_root: Path) -> None:
    result = cli("train", "--detach", "--set", "model.model_dim=65536", "--set", "model.num_layers=64",
                 "--set", f"model.window_pattern='{ONE_LAYER_TOO_MANY}'")
    line = assert_refused(result, "GiB")
    assert any(ch.isdigit() for ch in line)
    assert not any(runs_root.iterdir()), "the refused run left a folder"
    estimate = cli("estimate", "--set", "model.model_dim=65536", "--set", "model.num_layers=64",
                   "--set", f"model.window_pattern='{ONE_LAYER_TOO_MANY}'")
    assert estimate.returncode == 0 and b"warning: " in estimate.stdout


def test_a_checkpoint_with_nan_weights_is_refused_before_sampling(runs_root: Path) -> None:
    import torch

    from tests.tui.model_fixtures import save_tiny_checkpoint

    path = save_tiny_checkpoint(runs_root, "diverged")
    payload = torch.load(path, weights_only=True)
    name = next(key for key, tensor in payload["model"].items() if tensor.is_floating_point())
    payload["model"][name].fill_(float("nan"))
    torch.save(payload, path)
    assert_refused(cli("generate", "diverged", "--prompt", "x", "--max-tokens", "4"), name)


def test_metric_lines_with_wrong_types_lose_only_those_fields() -> None:
    from engine.metrics import parse_line

    assert parse_line('{"t": 1, "step": 2, "kind": "train", "loss": "low"}') is None, "a train line needs its loss"
    event = parse_line('{"t": 1, "step": 2, "kind": "train", "loss": 2.5, "tokens": "many", "lr": null}')
    assert event is not None and event["loss"] == 2.5 and "tokens" not in event and "lr" not in event
    assert parse_line("[" * 100_000) is None


def test_sampling_never_sees_non_finite_scores() -> None:
    import torch

    from engine.errors import CheckpointError, ConfigError
    from engine.inference.sampling import sample_next
    from engine.sampling_params import SamplingParams

    generator = torch.Generator().manual_seed(0)
    for bad in (float("nan"), float("inf")):
        logits = torch.zeros(1, 8)
        logits[0, 3] = bad
        with pytest.raises(CheckpointError):
            sample_next(logits, SamplingParams(temperature=0.8, top_k=0), generator)
    masked = torch.tensor([[1.0, -float("inf"), 2.0, 0.5]])  # -inf is a mask, not a fault
    for params in (SamplingParams(temperature=100.0, top_k=0), SamplingParams(temperature=0.01, top_k=2)):
        assert int(sample_next(masked, params, generator)[0]) != 1
    huge = torch.full((1, 4), 3e38)  # a penalty that overflows float32 is refused, not sampled from
    with pytest.raises(ConfigError):
        sample_next(huge, SamplingParams(temperature=1.0, repetition_penalty=0.01), generator, torch.tensor([[0]]))


def test_the_server_refuses_numbers_that_are_not_finite() -> None:
    from engine.serve.protocol import ApiError, sampling_params

    for key in ("temperature", "top_p", "repetition_penalty"):
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ApiError) as info:
                sampling_params({key: bad}, 16, max_context=64)
            assert info.value.status == 400 and key in str(info.value)


def test_every_numeric_config_field_has_a_limit() -> None:
    import dataclasses
    import typing

    from engine.config import SECTIONS
    from engine.limits import FIELD_LIMITS

    numeric = {f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
               if typing.get_type_hints(cls)[f.name] in (int, float, tuple[int, ...])}
    assert numeric - set(FIELD_LIMITS) == set(), "a numeric config field without a range in engine.limits"


# ---------------------------------------------------------------------------------------------- text


def test_text_that_is_not_utf8_is_refused_with_its_place(tiny: Path, tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("ROMEO: café\n".encode("latin-1") * 20)
    cases: list[tuple[tuple[str | bytes, ...], bytes, str]] = [
        (("generate", "tiny", "--prompt", b"caf\xe9"), b"", "--prompt"),
        (("generate", "tiny", "--prompt", "-"), b"\xff\xfeR\x00O\x00", "stdin"),
        (("generate", "tiny", "--prompt", "x", "--stop", b"\xc3("), b"", "--stop"),
        (("chat", "tiny", "--system", b"be \xff kind"), b"", "--system"),
        (("eval", "tiny", "--no-loss", "--prompt", b"\xed\xa0\x80"), b"", "--prompt"),
        (("eval", "tiny", "--data", str(latin1)), b"", "latin1.txt"),
        (("train", "--detach", "--set", b'run.sample_prompt="caf\xe9"'), b"", "run.sample_prompt"),
    ]
    for argv, stdin, name in cases:
        line = assert_refused(cli(*argv, stdin=stdin), name)
        assert any(ch.isdigit() for ch in line), f"the error gives no position: {line}"


def test_a_chat_line_that_is_not_utf8_is_refused_and_the_chat_goes_on(tiny: Path) -> None:
    result = cli("chat", "tiny", "--max-tokens", "3", "--temperature", "0", stdin=b"caf\xe9\nhello\n")
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0 and "Traceback" not in err, err
    assert len(error_lines(result)) == 1, err
    out = result.stdout.decode("utf-8", "replace")
    assert out.count("Assistant:") == 1 and "bye" in out, "the next line was not answered"


def test_conversation_text_that_is_not_unicode_is_reported_in_place(tmp_path: Path) -> None:
    data = tmp_path / "chat.json"
    data.write_text('{"conversations": [{"messages": [{"role": "user", "content": "hi \\ud800"},'
                    ' {"role": "assistant", "content": "hello"}]}]}')
    result = cli("finetune", "--check", "--data", str(data))
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in out
    assert "chat.json" in out and "messages[0].content" in out


def test_the_tokenizer_refuses_what_is_not_text() -> None:
    from engine.errors import DataError
    from tests.tui.model_fixtures import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    for bad in (b"not \xff UTF-8", "lone \udcff byte", "lone \ud800 surrogate", 42):
        with pytest.raises(DataError):
            tokenizer.encode(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- structure


def test_deeply_nested_files_are_refused_not_a_recursion_error(tmp_path: Path) -> None:
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 100_000)
    deep_jsonl = tmp_path / "deep.jsonl"
    deep_jsonl.write_text('{"messages": ' * 50_000 + "\n")
    for data in (deep_json, deep_jsonl):
        result = cli("finetune", "--check", "--data", str(data))
        out = result.stdout.decode() + result.stderr.decode()
        assert result.returncode == 1 and "Traceback" not in out and data.name in out, out
    deep_toml = tmp_path / "deep.toml"
    deep_toml.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert_refused(cli("train", "--detach", "--config", str(deep_toml)), "deep.toml")


def test_thousands_of_warnings_are_summarised(tiny: Path, tmp_path: Path) -> None:
    long_reply = "Good morrow to thee, gentle friend, and fare thee well. " * 20
    data = tmp_path / "long.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                                      {"role": "assistant", "content": long_reply}]}) for i in range(300)]
    data.write_text("\n".join(lines) + "\n")
    result = cli("finetune", "--check", "--from", "tiny", "--data", str(data))
    out = result.stdout.decode()
    assert "Traceback" not in result.stderr.decode(), result.stderr.decode()
    warned = [line for line in out.splitlines() if "truncated" in line]
    assert 1 <= len(warned) <= 25, f"{len(warned)} warning lines"
    assert "300" in out, "the summary does not say how many"


# ---------------------------------------------------------------------------------------------- terminals


def test_delete_with_stdin_at_eof_keeps_the_run(tiny: Path, runs_root: Path) -> None:
    assert_refused(cli("delete", "tiny", stdin=b""), "tiny")
    assert (runs_root / "tiny" / "run.json").exists()


def test_closed_stdin_is_an_error_not_a_traceback(tiny: Path, runs_root: Path) -> None:
    for argv in (("delete", "tiny"), ("generate", "tiny", "--prompt", "-")):
        result = subprocess.run([*PYTHON, *argv], stdin=None, capture_output=True, timeout=120,
                                preexec_fn=lambda: os.close(0))  # started as with `<&-`
        assert_refused(result)
    chat = subprocess.run([*PYTHON, "chat", "tiny"], capture_output=True, timeout=120, preexec_fn=lambda: os.close(0))
    assert chat.returncode == 0 and b"Traceback" not in chat.stderr, chat.stderr
    assert (runs_root / "tiny" / "run.json").exists()


def test_delete_of_a_running_run_is_refused_before_asking(tiny: Path, runs_root: Path) -> None:
    update_status(runs_root / "tiny", state="running", pid=os.getpid())  # this test's process is alive
    result = cli("delete", "tiny", stdin=b"y\n")
    assert_refused(result, "tiny")
    assert b"[y/N]" not in result.stdout, "it asked before saying the run is running"
    assert (runs_root / "tiny" / "run.json").exists()


@pytest.mark.parametrize("kind", ["a file", "a missing parent"])
def test_an_unusable_data_home_is_an_error(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home-file"
    if kind == "a file":
        home.write_text("not a folder")
    else:
        home = Path("/proc/no-such-folder")
    assert_refused(cli("train", "--detach", env={"NANOGPT_TUI_HOME": str(home)}), str(home))


# ---------------------------------------------------------------------------------------------- changed data


def test_resuming_a_finished_run_needs_rerun(tiny: Path, runs_root: Path) -> None:
    run_dir = runs_root / "tiny"
    files = {path: path.read_bytes() for path in (run_dir / "status.json", run_dir / "metrics.jsonl", tiny)}
    assert_refused(cli("train", "--resume", "tiny"), "tiny")
    assert {path: path.read_bytes() for path in files} == files, "a refused resume changed the run"


def test_settings_beside_resume_are_refused_not_ignored(tiny: Path, runs_root: Path) -> None:
    update_status(runs_root / "tiny", state="stopped")
    before = (runs_root / "tiny" / "status.json").read_bytes()
    assert_refused(cli("train", "--resume", "tiny", "--set", "train.num_iterations=5"), "--set")
    assert_refused(cli("finetune", "--resume", "tiny", "--epochs", "2"), "--epochs")
    assert (runs_root / "tiny" / "status.json").read_bytes() == before


def test_a_checkpoint_without_optimiser_state_cannot_be_resumed_from() -> None:
    from engine.errors import CheckpointError
    from engine.train.trainer import load_optimizer_states

    for data in ({"optimizers": []}, {}, {"optimizers": "adam"}):
        with pytest.raises(CheckpointError):
            load_optimizer_states([object(), object()], data, "step_000003.pt")


def test_finetune_resume_of_a_pretraining_run_is_refused(tiny: Path, runs_root: Path) -> None:
    update_status(runs_root / "tiny", state="stopped")
    before = (runs_root / "tiny" / "status.json").read_bytes()
    assert_refused(cli("finetune", "--resume", "tiny"), "tiny")
    assert (runs_root / "tiny" / "status.json").read_bytes() == before


# ---------------------------------------------------------------------------------------------- advice


def test_a_corrupt_sidecar_is_named_and_resume_does_not_fail_the_run(tiny: Path, runs_root: Path) -> None:
    tiny.with_suffix(".json").write_text('{"step": 10, "val_loss": ')
    update_status(runs_root / "tiny", state="stopped")
    assert_refused(cli("generate", "tiny", "--prompt", "x"), tiny.with_suffix(".json").name)
    assert_refused(cli("train", "--resume", "tiny"), tiny.with_suffix(".json").name)
    assert json.loads((runs_root / "tiny" / "status.json").read_text())["state"] == "stopped"


@pytest.mark.parametrize("content,word", [
    (b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.", "pickle"),
    (b"", "empty"),
])
def test_files_that_are_no_checkpoint_are_not_called_truncated(tmp_path: Path, content: bytes, word: str) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    line = assert_refused(cli("generate", str(path), "--prompt", "x"), "weights.pt")
    assert word in line and "truncated" not in line, line


def test_permission_denied_is_not_called_truncated(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from engine.checkpoint import read_checkpoint_file
    from engine.errors import CheckpointError

    real_open = builtins.open

    def denying_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file) == str(tiny):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)  # the tests run as root, where chmod denies nothing
    with pytest.raises(CheckpointError) as info:
        read_checkpoint_file(tiny)
    assert "Permission denied" in info.value.message and "truncated" not in info.value.message


# ---------------------------------------------------------------------------------------------- the app


def _app(runs_root: Path, settings: object = None) -> object:
    from nanogpt_tui.app import NanoGPTApp
    from engine.settings import Settings
    from tests.tui.conftest import FIXED_NOW, FakeEngine

    app = NanoGPTApp(FakeEngine(runs_root), Settings() if settings is None else settings, clock=lambda: FIXED_NOW)
    app.animation_level = "none"
    return app


@pytest.mark.parametrize("points", [0, 1, "odd"])
async def test_log_scale_on_a_run_with_no_or_odd_points(runs_root: Path, points: int | str) -> None:
    from nanogpt_tui.screens.dashboard import DashboardScreen
    from tests.tui.conftest import train_line, write_run

    run_dir = write_run(runs_root, "few", steps=points if isinstance(points, int) else 0)
    if points == "odd":
        lines = [train_line(1), train_line(2).replace('"loss": ', '"loss": -'), '{"t": 1, "step": 3, "kind": '
                 '"train", "loss": Infinity, "tokens": 1, "lr": 1, "tokens_per_s": 1, "step_time_ms": 1}',
                 '{"t": 1, "step": 4, "kind": "train", "loss": NaN, "tokens": 2, "lr": 1, "tokens_per_s": 1, '
                 '"step_time_ms": 1}', '{"t": 1, "step": 5, "kind": "val", "val_loss": 0.0, "val_bpb": 0, "tokens": 3}',
                 '{"t": 1, "step": 6, "kind": "train", "loss": "low", "tokens": "many"}',
                 '{"t": 1, "step": 7, "kind": "train", "loss": 2.0, "tokens": 1e400, "lr": "x", "tokens_per_s": null}',
                 '{"t": 1, "step": 8, "kind": "sample", "text": 5}', "[" * 50_000]
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    app = _app(runs_root)
    async with app.run_test(size=(120, 40)) as pilot:  # type: ignore[attr-defined]
        app.push_screen(DashboardScreen("few"))  # type: ignore[attr-defined]
        await pilot.pause()
        for key in ("g", "x", "m", "g", "g"):
            await pilot.press(key)
            await pilot.pause(0.1)
        assert isinstance(app.screen, DashboardScreen)  # type: ignore[attr-defined]
        assert app.is_running  # type: ignore[attr-defined]


async def test_a_sidecar_with_wrong_types_shows_its_details(runs_root: Path, tiny: Path) -> None:
    from nanogpt_tui.screens.checkpoints import CheckpointsScreen
    from tests.tui.conftest import wait_for
    from tests.tui.test_chat import record_notifications

    sidecar = tiny.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "parent": 3, "notes": 5, "created_at": 1e300, "tokenizer": {"a": 1},
                                   "preset": ["x"], "tokens_seen": "many", "val_loss": "low"}))
    unusable = tiny.with_name("step_000020.pt")
    unusable.write_bytes(tiny.read_bytes())
    unusable.with_suffix(".json").write_text('{"step": "twenty"}')
    app = _app(runs_root)
    shown = record_notifications(app)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 40)) as pilot:  # type: ignore[attr-defined]
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen)  # type: ignore[attr-defined]
                       and "Parent" in str(app.screen.query_one("#ckpt-meta").render()),  # type: ignore[attr-defined]
                       what="the checkpoint's details")
        await wait_for(pilot, lambda: any("step_000020.json" in message for message, _ in shown),
                       what="the notice naming the unusable sidecar")
        assert app.is_running  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ['theme = "no-such-theme"\n', "theme = \n", 'theme = "textual-light"\ncolour = 3\n'])
async def test_bad_settings_start_the_app_with_a_notice_and_are_not_overwritten(runs_root: Path, text: str) -> None:
    from nanogpt_tui.app import NanoGPTApp
    from engine.settings import settings_path
    from tests.tui.conftest import FIXED_NOW, FakeEngine, wait_for
    from tests.tui.test_chat import record_notifications

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    app = NanoGPTApp(FakeEngine(runs_root), clock=lambda: FIXED_NOW)  # reads the settings file itself
    shown = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any("settings.toml" in message for message, _ in shown),
                       what="the settings notice")
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.is_running
    assert path.read_text() == text, "the user's settings file was overwritten"


async def test_chat_refuses_text_that_is_not_unicode_and_goes_on(runs_root: Path) -> None:
    import threading

    from nanogpt_tui.app import NanoGPTApp
    from engine.settings import Settings
    from tests.tui.conftest import FIXED_NOW, wait_for
    from tests.tui.model_fixtures import ScriptedEngine, ScriptedGenerator, save_tiny_checkpoint
    from tests.tui.test_chat import open_chat, record_notifications, replies, send

    path = save_tiny_checkpoint(runs_root, "sft", kind="finetune")
    engine = ScriptedEngine(runs_root, ScriptedGenerator(["Hi", "."], gate=threading.Semaphore(10)))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    shown = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, path)
        await send(pilot, "caf\udce9")
        await wait_for(pilot, lambda: any(s == "warning" for _, s in shown), what="the refusal")
        await send(pilot, "/system lone \ud800 surrogate")
        await wait_for(pilot, lambda: sum(s == "warning" for _, s in shown) == 2, what="the system refusal")
        assert replies(screen) == [] and screen._system == ""
        await send(pilot, "hello")
        await wait_for(pilot, lambda: replies(screen) == ["Hi."], what="the next reply")


async def test_chat_save_asks_before_replacing_a_file(runs_root: Path, tmp_path: Path) -> None:
    import threading

    from nanogpt_tui.app import NanoGPTApp
    from nanogpt_tui.screens.confirm import ConfirmScreen
    from engine.settings import Settings
    from tests.tui.conftest import FIXED_NOW, wait_for
    from tests.tui.model_fixtures import ScriptedEngine, ScriptedGenerator, save_tiny_checkpoint
    from tests.tui.test_chat import open_chat, replies, send

    precious = tmp_path / "precious.txt"
    precious.write_text("do not lose me")
    path = save_tiny_checkpoint(runs_root, "sft", kind="finetune")
    engine = ScriptedEngine(runs_root, ScriptedGenerator(["Hi", "."], gate=threading.Semaphore(10)))
    app = NanoGPTApp(engine, Settings(), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot, path)
        await send(pilot, "hello")
        await wait_for(pilot, lambda: replies(screen) == ["Hi."], what="the reply")
        await send(pilot, f"/save {precious}")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await pilot.pause()
        assert precious.read_text() == "do not lose me"
        await send(pilot, f"/save {precious}")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question again")
        await pilot.press("y")
        await wait_for(pilot, lambda: precious.read_text().startswith("{"), what="the replaced file")
    with pytest.raises(Exception, match="already exists"):
        engine.save_conversation([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                                 str(precious))


async def test_resuming_a_finished_run_in_the_app_asks_first(runs_root: Path) -> None:
    from nanogpt_tui.screens.confirm import ConfirmScreen
    from tests.tui.conftest import write_run, wait_for
    from tests.tui.test_runs_screen import table_rows

    write_run(runs_root, "done", state="finished", steps=3)
    app = _app(runs_root)
    async with app.run_test(size=(120, 40)) as pilot:  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: "done" in table_rows(app), what="the row")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")  # type: ignore
        await pilot.press("n")
        await pilot.pause()
        assert app.engine.launched == []  # type: ignore[attr-defined]


def _bad_run_files(runs_root: Path) -> list[str]:
    """Runs whose status.json or run.json hold values of the wrong type or range, beside a good one."""
    from tests.tui.conftest import write_run

    write_run(runs_root, "good", steps=3)
    status = write_run(runs_root, "many", steps=3) / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "total_steps": "many", "started_at": 1e300,
                                  "pid": 10**30, "step": [1]}))
    (write_run(runs_root, "deep", steps=3) / "run.json").write_text("[" * 100_000)
    return ["good", "many", "deep"]


def test_runs_lists_every_run_with_a_notice_for_the_bad_files(runs_root: Path) -> None:
    names = _bad_run_files(runs_root)
    result = cli("runs")
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0 and "Traceback" not in err, err
    assert all(name in out for name in names)
    assert "status.json" in out and "run.json" in out, "the notices do not name the files"


async def test_the_runs_screen_shows_every_run_and_names_the_bad_file(runs_root: Path) -> None:
    from tests.tui.conftest import wait_for
    from tests.tui.test_chat import record_notifications
    from tests.tui.test_runs_screen import table_rows

    names = _bad_run_files(runs_root)
    app = _app(runs_root)
    shown = record_notifications(app)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 40)) as pilot:  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: set(names) <= set(table_rows(app)), what="every row")
        await wait_for(pilot, lambda: any("many/status.json" in message for message, _ in shown), what="the notice")
        assert any("deep/run.json" in message for message, _ in shown)


async def test_the_app_starts_on_an_unusable_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nanogpt_tui.app import NanoGPTApp
    from tests.tui.conftest import FIXED_NOW, wait_for
    from tests.tui.test_chat import record_notifications

    home = tmp_path / "a-file"
    home.write_text("not a folder")
    monkeypatch.setenv("NANOGPT_TUI_HOME", str(home))
    app = NanoGPTApp(clock=lambda: FIXED_NOW)
    shown = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+t")  # saving the theme cannot work: said, not raised
        await wait_for(pilot, lambda: any(severity == "error" for _, severity in shown), what="the error notice")
        assert app.is_running


MARKUP = "[/] [bold [link=x]y[/link] [/red]"  # Rich/Textual markup that does not parse


@pytest.mark.parametrize("where", ["sample", "message", "log", "preset", "status", "tokenizer"])
async def test_markup_in_files_is_shown_as_text(runs_root: Path, where: str) -> None:
    from nanogpt_tui.screens.dashboard import DashboardScreen
    from tests.tui.conftest import wait_for, write_run
    from tests.tui.model_fixtures import save_tiny_checkpoint
    from tests.tui.test_runs_screen import table_rows

    given = {"sample": {"sample": MARKUP}, "message": {"message": MARKUP}, "log": {"log": MARKUP + "\n"}}
    run_dir = write_run(runs_root, "m", steps=3, state="failed", **given.get(where, {}))
    if where == "preset":
        meta = json.loads((run_dir / "run.json").read_text())
        (run_dir / "run.json").write_text(json.dumps({**meta, "preset": MARKUP}))
    if where == "status":  # a notice quotes the wrong value
        update_status(run_dir, state=MARKUP)
    if where == "tokenizer":
        sidecar = save_tiny_checkpoint(runs_root, "m").with_suffix(".json")
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "tokenizer": MARKUP}))
    app = _app(runs_root)
    async with app.run_test(size=(120, 40)) as pilot:  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: "m" in table_rows(app), what="the row")
        app.push_screen(DashboardScreen("m"))  # type: ignore[attr-defined]
        await pilot.pause(0.5)
        await pilot.press("escape", "2")
        await pilot.pause(0.5)
        assert app.is_running  # type: ignore[attr-defined]


def test_following_a_run_prints_a_sample_with_markup_as_text(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.runs import RunManager
    from nanogpt_tui.commands.train import follow
    from tests.tui.conftest import write_run

    write_run(runs_root, "ended", steps=3, sample=MARKUP)
    assert follow(RunManager(runs_root), "ended").state == "finished"
    assert "[/red]" in capsys.readouterr().err, "the sample was not printed as it is"
