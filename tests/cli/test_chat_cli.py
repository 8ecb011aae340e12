"""`nanogpt-tui chat`: streamed replies, the commands, and Ctrl-C stopping a reply but not the program."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.data.tokenizer import BPETokenizer, train_bpe
from nanogpt_tui.cli import run_cli
from nanogpt_tui.commands.chat import interrupt_sets
from tests.cli.test_generate_cli import make_run
from tests.engine.test_generate import TEXT, one_thread  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return train_bpe([TEXT], 300)


def test_chat_session_with_commands(isolated_home: Path, tokenizer: BPETokenizer, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    make_run(isolated_home / "data" / "runs", "tiny", tokenizer)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n/new\n\nhi there\nclear\nEXIT\nnever read\n"))
    assert run_cli(["chat", "tiny", "--max-tokens", "5", "--system", "Be brief."]) == 0
    out = capsys.readouterr().out
    assert "template: special" in out
    # the tiny model's windows (16 tokens) are shorter than its 128-token rows, so they are what it reads
    assert "context 4096 tokens" in out and "the model reads the last 16" in out, "the chat states its context"
    assert out.count("Assistant: ") == 2, "two messages, two replies; commands and blank lines get none"
    assert "started a new conversation" in out and out.rstrip().endswith("bye")


def test_eof_leaves_cleanly(isolated_home: Path, tokenizer: BPETokenizer, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    make_run(isolated_home / "data" / "runs", "tiny", tokenizer)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert run_cli(["chat", "--template", "plain"]) == 0
    assert "template: plain" in capsys.readouterr().out


def test_interrupt_sets_cancel_instead_of_raising() -> None:
    # raise_signal delivers to this thread, so the handler has run when it returns: os.kill may hand the
    # signal to another thread of the process (torch's, a test's), and the main thread notices it late
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cancel = threading.Event()
    with interrupt_sets(cancel):
        signal.raise_signal(signal.SIGINT)
        assert cancel.is_set(), "Ctrl-C inside sets cancel"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the previous handler is back"
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_ctrl_c_stops_the_reply_not_the_program(isolated_home: Path, tokenizer: BPETokenizer) -> None:
    make_run(isolated_home / "data" / "runs", "endless", tokenizer, never_bos=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "nanogpt_tui", "chat", "endless", "--max-tokens", "100000", "--temperature", "0",
         "--device", "cpu"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO,
    )
    output = bytearray()

    def read_all() -> None:
        while byte := process.stdout.read(1):
            output.extend(byte)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    try:
        process.stdin.write(b"tell me everything\n")
        process.stdin.flush()
        deadline = time.monotonic() + 60
        # wait until the reply is streaming, then interrupt it
        while output.count(b"Assistant: ") == 0 or len(output.split(b"Assistant: ", 1)[1]) < 20:
            assert process.poll() is None and time.monotonic() < deadline, f"no streamed reply: {bytes(output)!r}"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        while b"[stopped]" not in output:
            assert process.poll() is None and time.monotonic() < deadline, "Ctrl-C ended the program"
            time.sleep(0.05)
        process.stdin.write(b"quit\n")
        process.stdin.flush()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=5)
    assert output.rstrip().endswith(b"bye")
