"""The key bar: the keys Textual's Footer would show (one per action, the palette at the right),
and a click presses the key."""

from __future__ import annotations

from nanogpt_tui.screens.new_run import NewRunScreen
from nanogpt_tui.widgets.footer import KeyBar
from tests.tui.conftest import wait_for


def _expected(screen) -> list[tuple[str, str]]:
    """What Textual's Footer lists: shown bindings, each action once, in binding order."""
    seen, keys = set(), []
    for _node, binding, _enabled, _tooltip in screen.active_bindings.values():
        if binding.show and binding.action not in seen:
            seen.add(binding.action)
            keys.append((screen.app.get_key_display(binding), binding.description))
    return keys


async def test_the_bar_shows_the_screens_keys_once_each_and_the_palette_at_the_right(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        bar = app.screen.query_one(KeyBar)
        shown = [(display, description) for display, description, _enabled in bar.keys()]
        assert shown == _expected(app.screen)
        assert ("n", "New run") in shown and ("?", "Help") in shown
        line = bar.render().plain
        assert len(line) == 120 and line.endswith("▏^p palette "), line
        assert line.startswith(" o/enter Open  n New run "), line


async def test_clicking_a_key_presses_it(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        line = app.screen.query_one(KeyBar).render().plain
        await pilot.click(KeyBar, offset=(line.index(" n New run") + 1, 0))
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen), what="the new-run form")
        bar = app.screen.query_one(KeyBar)
        assert [(d, t) for d, t, _ in bar.keys()] == _expected(app.screen), "the form's own keys"
