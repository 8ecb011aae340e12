"""The slider: arrow keys step, Shift steps further, bounds clamp, a typed value is exact, the mouse moves it."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Input

from nanogpt_tui.widgets.sampling import PRESETS, SamplingPanel
from nanogpt_tui.widgets.slider import Slider


class SliderApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.changes: list[float] = []

    def compose(self) -> ComposeResult:
        yield Slider("Temperature", 0.0, 2.0, 0.8, step=0.05, big_step=0.25, id="temperature")
        yield Slider("Top-k", 0, 500, 50, step=1, big_step=25, decimals=0, id="top-k")
        yield Input(id="after")

    def on_slider_changed(self, event: Slider.Changed) -> None:
        self.changes.append(event.value)


async def test_keys_step_and_clamp_at_the_bounds() -> None:
    app = SliderApp()
    async with app.run_test() as pilot:
        slider = app.query_one("#temperature", Slider)
        slider.focus()
        await pilot.press("right", "right")
        assert slider.value == 0.9, "→ must add one step (0.05) each"
        await pilot.press("shift+right")
        assert slider.value == 1.15, "Shift+→ must add the big step (0.25)"
        await pilot.press(*["shift+right"] * 10)
        assert slider.value == 2.0, "the value must stop at the maximum"
        await pilot.press("left")
        assert slider.value == 1.95
        await pilot.press(*["shift+left"] * 20)
        assert slider.value == 0.0, "the value must stop at the minimum"
        await pilot.press("end")
        assert slider.value == 2.0 and app.changes[-1] == 2.0, "End jumps to the maximum and says so"
        await pilot.press("home")
        assert slider.value == 0.0
        assert str(slider.query_one(Input).value) == "0.00", "the value is shown beside the track"


async def test_integer_slider_stays_whole() -> None:
    app = SliderApp()
    async with app.run_test() as pilot:
        slider = app.query_one("#top-k", Slider)
        slider.focus()
        await pilot.press("shift+left", "shift+left", "left")
        assert slider.value == 0 and slider.text == "0", "top-k must clamp at 0 (off)"
        await pilot.press("shift+right", "right")
        assert slider.value == 26 and isinstance(slider.value, float) and slider.text == "26"


async def test_typed_value_is_exact_and_clamped() -> None:
    app = SliderApp()
    async with app.run_test() as pilot:
        slider = app.query_one("#temperature", Slider)
        slider.focus()
        await pilot.press("enter", "1", ".", "3", "7", "enter")
        assert slider.value == 1.37, "a typed value is taken exactly, not snapped to the step"
        assert slider.has_focus, "Enter gives the focus back to the slider"
        await pilot.press("enter", "9", "enter")
        assert slider.value == 2.0, "a typed value beyond the maximum clamps"
        await pilot.press("enter", "1", "escape")
        assert slider.value == 2.0 and slider.has_focus, "Escape leaves the field without a change"
        await pilot.press("enter", ".", ".", "enter")
        assert slider.value == 2.0, "text that is not a number changes nothing"


async def test_tab_skips_the_value_field() -> None:
    app = SliderApp()
    async with app.run_test() as pilot:
        app.query_one("#temperature", Slider).focus()
        await pilot.press("tab")
        assert app.focused is app.query_one("#top-k", Slider), "Tab goes slider to slider, not into the value field"


async def test_mouse_click_and_drag_move_the_knob() -> None:
    app = SliderApp()
    async with app.run_test(size=(80, 10)) as pilot:
        slider = app.query_one("#temperature", Slider)
        bar = slider.query_one("SliderBar")
        await pilot.click(bar, offset=(0, 0))
        assert slider.value == 0.0 and slider.has_focus, "a click at the left end sets the minimum and focuses"
        await pilot.click(bar, offset=(bar.size.width - 1, 0))
        assert slider.value == 2.0
        await pilot.click(bar, offset=(bar.size.width // 2, 0))
        assert 0.9 <= slider.value <= 1.1, f"the middle of the track is about half way, got {slider.value}"


class PanelApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SamplingPanel()


async def test_presets_set_the_sliders_and_seed_reads_back() -> None:
    app = PanelApp()
    async with app.run_test(size=(60, 20)) as pilot:
        panel = app.query_one(SamplingPanel)
        panel.apply_preset("precise")
        await pilot.pause()
        values = panel.values()
        assert (values.temperature, values.top_k, values.top_p) == (
            PRESETS["precise"]["temperature"], PRESETS["precise"]["top-k"], PRESETS["precise"]["top-p"])
        assert values.seed == 0, "the seed field starts at 0 so replies repeat"
        panel.query_one("#seed", Input).value = ""
        assert panel.values().seed >= 0, "a blank seed draws a fresh one"
