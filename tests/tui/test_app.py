"""The app: no torch at start-up, screens by key and palette, help, themes saved in settings."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from nanogpt_tui.app import NanoGPTApp
from nanogpt_tui.screens.help import HelpScreen
from nanogpt_tui.screens.runs import RunsScreen
from engine.settings import load_settings
from tests.tui.conftest import wait_for


def test_start_does_not_import_torch() -> None:
    script = textwrap.dedent("""
        import asyncio, sys
        from nanogpt_tui.app import NanoGPTApp

        async def main():
            app = NanoGPTApp()
            async with app.run_test() as pilot:
                await pilot.pause(0.5)  # the first frame and the first read of the run directories
                print("torch" in sys.modules, "textual" in sys.modules)

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"], "starting the app must not import torch"


def test_importing_the_app_loads_only_what_the_first_frame_needs() -> None:
    # the first frame waits for these imports; the run manager, config, psutil and torch load in workers
    heavy = ["torch", "psutil", "engine.config", "engine.runs.manager", "engine.runs.process", "tomli_w"]
    code = f"import sys, nanogpt_tui.app; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"imported before the first frame: {done.stdout.strip()}"


async def test_screens_by_key(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        for key, mode in (("2", "checkpoints"), ("3", "evaluate"), ("4", "chat")):
            assert isinstance(app.screen, RunsScreen)
            await pilot.press(key)
            assert app.current_mode == mode, f"key {key} must switch to the {mode} screen"
            await app.switch_mode("runs")


async def test_help_lists_every_screen(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        titles = [title for title, _ in app.key_sections()]
        assert {"Everywhere", "Runs", "New run", "Dashboard", "Compare", "Log"} <= set(titles)
        descriptions = {b.description for _, bindings in app.key_sections() for b in bindings}
        assert {"Stop", "Resume", "Delete", "Compare marked", "Launch", "Log scale", "Help"} <= descriptions
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_palette_offers_screens_and_the_screen_actions(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert {"Go to Runs", "Go to Chat", "Help", "Dark/light", "New run", "Stop", "Compare marked"} <= set(titles)
        new_run = next(c for c in app.get_system_commands(app.screen) if c.title == "New run")
        await new_run.callback()
        await pilot.pause()
        assert app.screen.__class__.__name__ == "NewRunScreen"


async def test_default_preset_from_the_palette(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Default preset: medium")
        command.callback()
        assert load_settings().default_preset == "medium"
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.query_one("#preset").value == "medium", what="the preselected preset")


async def test_theme_toggle_is_saved(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: load_settings().theme == "textual-light", what="the saved theme")
    again = NanoGPTApp(settings=load_settings())
    async with again.run_test():
        assert again.theme == "textual-light"


async def test_many_polling_workers_do_not_starve_a_later_one(make_app) -> None:
    import os

    from nanogpt_tui.polling import keep_polling

    app = make_app()
    async with app.run_test() as pilot:
        # more pollers than asyncio's default executor has threads (cpu_count + 4, at most 32)
        for _ in range(min(32, (os.cpu_count() or 1) + 4) + 1):
            app.run_worker(lambda: keep_polling(3600), thread=True, group="pollers")
        quick = app.run_worker(lambda: "done", thread=True, group="quick")
        await wait_for(pilot, lambda: quick.is_finished, timeout=10, what="a short worker behind the pollers")
        assert quick.result == "done"
        app.workers.cancel_group(app, "pollers")
