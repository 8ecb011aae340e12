"""The Checkpoints screen's Serve action: a detached server for the highlighted checkpoint, its URL, stop."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from nanogpt_tui.screens.confirm import ConfirmScreen
from tests.tui.conftest import FakeEngine, wait_for
from tests.tui.model_fixtures import entry_for, save_tiny_checkpoint
from tests.tui.test_checkpoints import show_checkpoints

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


@pytest.mark.slow
async def test_serve_starts_a_listed_server_that_answers_and_stops(make_app, engine: FakeEngine,
                                                                   runs_root: Path) -> None:
    checkpoint = save_tiny_checkpoint(runs_root, "tiny")
    app = make_app()
    try:
        await serve_and_stop(app, engine, checkpoint)
    finally:  # a failing test must not leave a detached server behind
        for server in engine.list_servers():
            engine.stop_server(server)


async def serve_and_stop(app, engine: FakeEngine, checkpoint: Path) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await show_checkpoints(pilot, 1)
        await pilot.press("s")
        await wait_for(pilot, lambda: "http://" in str(app.screen.query_one("#servers", Static).render()),
                       timeout=90, what="the server to listen and its URL to be shown")
        server = engine.list_servers()[0]
        assert server.checkpoint_path == checkpoint and server.model == "tiny"
        assert server.url in str(app.screen.query_one("#servers", Static).render()), "the URL is shown"
        models = httpx.get(server.url + "/models", timeout=10).json()
        assert [model["id"] for model in models["data"]] == ["tiny"]
        reply = httpx.post(server.url + "/completions", timeout=30,
                           json={"model": "tiny", "prompt": "ROMEO:", "max_tokens": 4}).json()
        assert reply["object"] == "text_completion"
        assert engine.start_server(entry_for(checkpoint)).name == server.name, "a second Serve started another"
        assert len(engine.list_servers()) == 1
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the stop confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not engine.list_servers(), timeout=30, what="the server to stop")
        await wait_for(pilot, lambda: not app.screen.query_one("#servers", Static).display,
                       what="the servers line to go")
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/models", timeout=2)
