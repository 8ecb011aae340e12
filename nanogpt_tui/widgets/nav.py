"""The row of mode names on top-level screens; 1–4 (or a click on a name) switch the app's mode."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widget import Widget

SCREEN_TABS = (("runs", "1 Runs"), ("checkpoints", "2 Checkpoints"), ("evaluate", "3 Evaluate"), ("chat", "4 Chat"))
# blank columns left and right of each name, as Textual's tabs pad them
PAD = 1


class NavTabs(Widget):
    """The app's modes with `current` highlighted and underlined, drawn as one widget.

    It looks like Textual's Tabs but is not focusable (the keys 1–4 switch modes) and renders in
    one pass: a Tabs widget with its Tab children and animated underline was a tenth of the CPU
    time to the app's first frame.
    """

    DEFAULT_CSS = """
    NavTabs {
        height: 2;
        width: 1fr;
    }
    NavTabs > .nav--name {
        color: $foreground 50%;
    }
    NavTabs > .nav--current {
        color: $foreground;
        text-style: bold;
    }
    NavTabs > .nav--bar {
        color: $foreground 10%;
    }
    NavTabs > .nav--current-bar {
        color: $block-cursor-background;
    }
    """
    COMPONENT_CLASSES = {"nav--name", "nav--current", "nav--bar", "nav--current-bar"}

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def _spans(self) -> list[tuple[str, int, int]]:
        """(mode, first column, end column) of each name with its padding."""
        spans, column = [], 0
        for mode, label in SCREEN_TABS:
            width = len(label) + 2 * PAD
            spans.append((mode, column, column + width))
            column += width
        return spans

    def render(self) -> Text:
        names, bar = Text(), Text()
        style = self.get_component_rich_style
        for (mode, label), (_, start, end) in zip(SCREEN_TABS, self._spans()):
            current = mode == self.current
            names.append(" " * PAD + label + " " * PAD, style("nav--current" if current else "nav--name"))
            bar.append("━" * (end - start), style("nav--current-bar" if current else "nav--bar"))
        width = self.size.width
        bar.append("━" * max(0, width - bar.cell_len), style("nav--bar"))
        return Text("\n").join([names, bar])

    def mode_at(self, x: int) -> str | None:
        """The mode whose name covers column x, if any."""
        return next((mode for mode, start, end in self._spans() if start <= x < end), None)

    def on_click(self, event: events.Click) -> None:
        mode = self.mode_at(event.x)
        if mode is not None and mode != self.current:
            self.app.switch_mode(mode)
