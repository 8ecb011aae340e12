"""A keyboard-first slider: ←/→ step, Shift+←/→ big step, Home/End, mouse click and drag, Enter to type a value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult, RenderResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Label

KNOB = "●"
FILLED = "━"
EMPTY = "─"


class SliderBar(Widget):
    """The track of a Slider; a click or a drag moves the knob there."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"slider-bar--filled", "slider-bar--knob", "slider-bar--empty"}
    DEFAULT_CSS = """
    SliderBar { width: 1fr; height: 1; min-width: 6; }
    SliderBar > .slider-bar--filled { color: $accent; }
    SliderBar > .slider-bar--knob { color: $text; text-style: bold; }
    SliderBar > .slider-bar--empty { color: $text-muted; }
    """

    def __init__(self, slider: Slider) -> None:
        super().__init__()
        self.slider = slider
        self._dragging = False

    def render(self) -> RenderResult:
        width = max(2, self.size.width)
        knob = round(self.slider.fraction * (width - 1))
        return Text.assemble(
            (FILLED * knob, self.get_component_rich_style("slider-bar--filled")),
            (KNOB, self.get_component_rich_style("slider-bar--knob")),
            (EMPTY * (width - 1 - knob), self.get_component_rich_style("slider-bar--empty")),
        )

    def _move_to(self, x: int) -> None:
        self.slider.set_fraction(x / max(1, self.size.width - 1))

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self._dragging = True
        self.capture_mouse()
        self.slider.focus()
        self._move_to(event.x)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self._dragging:
            self._move_to(event.x)

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self._dragging:
            self._dragging = False
            self.release_mouse()


class ExactInput(Input):
    """The slider's value as text; focusable only while the user types an exact value, so Tab skips it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel_edit", "Cancel", show=False)]

    def __init__(self, value: str) -> None:
        super().__init__(value, compact=True, restrict=r"[0-9.eE+-]*", select_on_focus=True)
        self.can_focus = False

    def action_cancel_edit(self) -> None:
        parent = self.parent
        assert isinstance(parent, Slider), "ExactInput lives inside a Slider"
        parent.stop_editing()


class Slider(Widget, can_focus=True):
    """A number between `minimum` and `maximum`; integer-valued when `decimals` is 0."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "step(-1)", "Less", show=False),
        Binding("right", "step(1)", "More", show=False),
        Binding("shift+left", "big_step(-1)", "Much less", show=False),
        Binding("shift+right", "big_step(1)", "Much more", show=False),
        Binding("home", "to_bound(False)", "Minimum", show=False),
        Binding("end", "to_bound(True)", "Maximum", show=False),
        Binding("enter", "edit", "Type a value"),
    ]
    DEFAULT_CSS = """
    Slider { layout: horizontal; height: 1; width: 1fr; }
    Slider > Label { width: 14; color: $text-muted; }
    Slider:focus-within > Label { color: $text; text-style: bold; }
    Slider:focus SliderBar { background: $boost; }
    Slider > ExactInput { width: 8; margin-left: 1; }
    """

    value: reactive[float] = reactive(0.0, init=False)

    @dataclass
    class Changed(Message):
        """The slider's value changed (by key, mouse, typed value or code)."""

        slider: Slider
        value: float

        @property
        def control(self) -> Slider:
            return self.slider

    def __init__(self, label: str, minimum: float, maximum: float, value: float, *, step: float,
                 big_step: float, decimals: int = 2, id: str | None = None) -> None:
        super().__init__(id=id)
        assert minimum < maximum, f"slider {label}: minimum {minimum} is not below maximum {maximum}"
        self.label, self.minimum, self.maximum = label, minimum, maximum
        self.step, self.big_step, self.decimals = step, big_step, decimals
        self.set_reactive(Slider.value, self._clamp(value))
        self._bar = SliderBar(self)
        self._input = ExactInput(self.text)

    @property
    def fraction(self) -> float:
        return (self.value - self.minimum) / (self.maximum - self.minimum)

    @property
    def text(self) -> str:
        return f"{self.value:.{self.decimals}f}"

    @property
    def editing(self) -> bool:
        return self._input.has_focus

    def compose(self) -> ComposeResult:
        yield Label(self.label)
        yield self._bar
        yield self._input

    def _clamp(self, value: float) -> float:
        value = round(min(self.maximum, max(self.minimum, float(value))), self.decimals)
        return float(int(value)) if self.decimals == 0 else value

    def validate_value(self, value: float) -> float:
        return self._clamp(value)

    def watch_value(self, value: float) -> None:
        self._bar.refresh()
        if not self.editing:
            self._input.value = self.text
        self.post_message(self.Changed(self, value))

    def set_fraction(self, fraction: float) -> None:
        """Move to a point of the track (0 = minimum, 1 = maximum), snapped to the step."""
        raw = self.minimum + min(1.0, max(0.0, fraction)) * (self.maximum - self.minimum)
        self.value = self.minimum + round((raw - self.minimum) / self.step) * self.step

    def action_step(self, direction: int) -> None:
        self.value = self.value + direction * self.step

    def action_big_step(self, direction: int) -> None:
        self.value = self.value + direction * self.big_step

    def action_to_bound(self, upper: bool) -> None:
        self.value = self.maximum if upper else self.minimum

    def action_edit(self) -> None:
        """Move focus into the value field, the old value selected so typing replaces it."""
        self._input.can_focus = True
        self._input.focus()

    def stop_editing(self) -> None:
        self._input.value = self.text
        self.focus()
        self._input.can_focus = False

    def on_click(self, event: events.Click) -> None:
        if event.widget is self._input and not self.editing:
            self.action_edit()

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            typed = float(event.value)
        except ValueError:
            self.app.bell()
            self.notify(f"{self.label}: {event.value!r} is not a number", severity="warning")
            self.stop_editing()
            return
        self.value = typed
        self.stop_editing()

    @on(Input.Blurred)
    def _left_field(self, event: Input.Blurred) -> None:
        event.stop()
        self._input.value = self.text
        self._input.can_focus = False
