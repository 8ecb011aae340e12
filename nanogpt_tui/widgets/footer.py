"""The key bar at the bottom of every screen: the screen's bindings on one line, drawn as one widget."""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget


class _KeySpan(NamedTuple):
    start: int  # columns of the bar the key and its description take
    end: int
    key: str
    enabled: bool


class KeyBar(Widget, can_focus=False):
    """Shows what Textual's Footer shows (each action's first key and description, the command
    palette's key at the right) and presses a key when it is clicked.

    Textual's Footer mounts and styles one widget per key and does it again on every binding
    change; a screen's start publishes several changes, and at the app's first frame that was about
    a third of the CPU time. One line of text, redrawn once per refresh however many changes came
    before it, costs a few milliseconds.
    """

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description", "key-bar--disabled"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        text-wrap: nowrap;
        text-overflow: clip;
        .key-bar--key { color: $footer-key-foreground; background: $footer-key-background; text-style: bold; }
        .key-bar--description { color: $footer-description-foreground; background: $footer-description-background; }
        .key-bar--disabled { text-style: dim; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._spans: list[_KeySpan] = []
        self._redraw_pending = False

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if not self._redraw_pending and screen is self.screen:
            self._redraw_pending = True
            self.call_after_refresh(self._redraw)

    def _redraw(self) -> None:
        self._redraw_pending = False
        self.refresh()

    def keys(self) -> list[tuple[str, str, bool]]:
        """(key as shown, description, enabled) for each action the bar shows, in order; the keys of a
        binding group (F5/F6/F7: the sampling presets) share the group's description."""
        return [(display, description, enabled) for group in self._groups()
                for display, description, _key, enabled in group]

    def _groups(self) -> list[list[tuple[str, str, str, bool]]]:
        """The shown bindings, one per action, as Textual's Footer lists them: consecutive bindings of
        one Binding group together (shown as their keys and the group's description), the others alone."""
        seen: set[str] = set()
        groups: list[list[tuple[str, str, str, bool]]] = []
        last_group = None
        for _node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            group = binding.group
            description = group.description if group is not None else binding.description or tooltip
            entry = (self.app.get_key_display(binding), description, binding.key, enabled)
            if group is not None and group is last_group:
                groups[-1].append(entry)
            else:
                groups.append([entry])
            last_group = group
        return groups

    def _palette_entry(self) -> tuple[str, str, str, bool] | None:
        if not self.app.ENABLE_COMMAND_PALETTE:
            return None
        found = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
        if found is None:
            return None
        _node, binding, enabled, _tooltip = found
        return self.app.get_key_display(binding), binding.description, binding.key, enabled

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key")
        description_style = self.get_component_rich_style("key-bar--description")
        disabled_style = self.get_component_rich_style("key-bar--disabled")
        spans: list[_KeySpan] = []

        def add(text: Text, display: str, description: str, key: str, enabled: bool, offset: int = 0,
                pad: str = " ") -> None:
            start = len(text)
            dim = disabled_style if not enabled else None
            text.append(f"{pad}{display}{pad}", key_style + dim if dim else key_style)
            if description:
                text.append(f"{' ' if not pad else ''}{description} ", description_style + dim if dim else description_style)
            spans.append(_KeySpan(offset + start, offset + len(text), key, enabled))

        line, palette_entry = Text(no_wrap=True, overflow="crop"), self._palette_entry()
        for group in self._groups():
            group = [entry for entry in group if palette_entry is None or entry[2] != palette_entry[2]]
            for index, (display, description, key, enabled) in enumerate(group):
                # a group's keys side by side, its description once after the last
                add(line, display, description if index == len(group) - 1 else "", key, enabled)
        if palette_entry is not None:
            # docked at the right as in Textual's Footer; the other keys are cut short to make room
            palette = Text("▏", style=description_style)
            width = self.size.width
            room = max(0, width - len(palette) - len(f"{palette_entry[0]} {palette_entry[1]} "))
            line.truncate(room, pad=True)
            spans = [span._replace(end=min(span.end, room)) for span in spans if span.start < room]
            add(palette, *palette_entry, offset=room, pad="")
            line.append_text(palette)
        self._spans = spans
        return line

    def on_click(self, event: events.Click) -> None:
        for span in self._spans:
            if span.start <= event.x < span.end:
                if span.enabled:
                    self.app.simulate_key(span.key)
                else:
                    self.app.bell()
                return
