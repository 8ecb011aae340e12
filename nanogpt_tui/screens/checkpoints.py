"""The checkpoints screen: every checkpoint grouped by run (imports too), its metadata and config, and actions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Header, Static
from textual.worker import Worker

from nanogpt_tui.messages.checkpoints import CheckpointConfigRead, CheckpointsListed, ServersListed, ServerStarted
from engine.runs.protocol import CheckpointEntry
from nanogpt_tui.screens.base import RUN_ACTION, AppScreen
from nanogpt_tui.polling import keep_polling
from nanogpt_tui.screens.confirm import ConfirmScreen
from nanogpt_tui import format as fmt
from nanogpt_tui.clipboard import copy_text
from nanogpt_tui.widgets.nav import NavTabs
from nanogpt_tui.widgets.path_input import display_path
from nanogpt_tui.widgets.footer import KeyBar

if TYPE_CHECKING:
    from engine.importer import ImportResult
    from engine.runs import RunInfo
    from engine.serve.processes import ServerInfo
    from nanogpt_tui.app import NanoGPTApp

REFRESH_S = 5.0
COLUMNS = ("Run", "Kind", "Step", "Tokens", "Val loss", "Val bpb", "Params", "Size", "Tokenizer", "Created", "Parent")
KIND_STYLES = {"finetune": "magenta", "import": "cyan"}


def shown(entry: CheckpointEntry, key: str) -> str:
    """A text field of the sidecar, "—" when it is missing or not a string (anyone can edit a sidecar)."""
    value = entry.meta.get(key)
    return value if isinstance(value, str) and value else "—"


def metadata_text(entry: CheckpointEntry) -> Text:
    """The details pane: what the sidecar says, one fact per line."""
    meta = entry.meta
    parent = meta.get("parent")
    lines = [
        ("Path", display_path(entry.path)),
        ("Run", f"{entry.run} ({entry.kind})"),
        ("Step", str(entry.step)),
        ("Tokens seen", fmt.count(entry.number("tokens_seen") or 0)),
        ("Val loss", fmt.loss(entry.number("val_loss"))),
        ("Val bpb", fmt.loss(entry.number("val_bpb"))),
        ("Parameters", fmt.count(entry.number("num_params") or 0)),
        ("Size", fmt.size(entry.number("size_bytes") or 0)),
        ("Tokenizer", shown(entry, "tokenizer")),
        ("Preset", shown(entry, "preset")),
        ("Created", fmt.started(entry.number("created_at"))),
        ("Parent", display_path(Path(parent)) if isinstance(parent, str) and parent else "—"),
        ("Answers chats", "yes (fine-tuned)" if entry.finetuned else "no: a base model continues text"),
    ]
    text = Text()
    for label, value in lines:
        text.append(f"{label:<14}", style="bold")
        text.append(value + "\n")
    notes = meta.get("notes")
    for note in notes if isinstance(notes, list) else []:
        text.append(f"note: {note}\n", style="italic")
    return text


async def open_checkpoint_in(app: App[None], mode: str, entry: CheckpointEntry) -> None:
    """Switch to a mode and hand its screen the checkpoint (the chat and evaluate screens take one)."""
    await app.switch_mode(mode)
    for screen in app.screen_stack:
        opener = getattr(screen, "open_checkpoint", None)
        if opener is not None:
            opener(entry)
            return


class CheckpointsScreen(AppScreen[None]):
    """Checkpoints from their sidecars, newest run first; the highlighted one's details below."""
    CSS_PATH = "css/checkpoints.tcss"  # loaded when the screen is first shown, not for the first frame

    HELP_TITLE = "Checkpoints"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "chat", "Chat"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("f", "finetune", "Fine-tune"),
        Binding("i", "import_checkpoint", "Import"),
        Binding("s", "serve", "Serve"),
        Binding("d", "delete", "Delete"),
        Binding("y", "copy_path", "Copy path"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[str, CheckpointEntry] = {}
        self._shown: tuple[CheckpointEntry, ...] = ()
        self._select_after_refresh: str | None = None
        self._servers: tuple[ServerInfo, ...] = ()
        self._servers_listed_at = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavTabs("checkpoints")
        table: DataTable[object] = DataTable(id="checkpoints", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="servers")
        yield Static("No checkpoints yet. Runs save them as they train; press i to import a modded-nanogpt "
                     "checkpoint.", id="no-checkpoints")
        with Horizontal(id="ckpt-details"):
            with VerticalScroll(id="ckpt-meta-box"):
                yield Static("", id="ckpt-meta")
            with VerticalScroll(id="ckpt-config-box"):
                yield Static("", id="ckpt-config")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#ckpt-meta-box").border_title = "Checkpoint"
        self.query_one("#ckpt-config-box").border_title = "Config (config.toml of its run)"
        self.query_one("#checkpoints", DataTable).focus()
        self.query_one("#servers").display = False
        self._poll()

    @work(thread=True, exclusive=True, group="checkpoints-refresh", exit_on_error=False)
    def _poll(self) -> None:
        while True:
            entries = tuple(self.engine.list_checkpoints())
            self.post_message(CheckpointsListed(entries, tuple(self.engine.checkpoint_problems())))
            listed_at = time.monotonic()
            self.post_message(ServersListed(tuple(self.engine.list_servers()), listed_at))
            if not keep_polling(REFRESH_S):
                return

    @on(CheckpointsListed)
    def _listed(self, event: CheckpointsListed) -> None:
        self.notify_file_problems(event.problems)
        self.query_one("#no-checkpoints").display = not event.entries
        self.query_one("#ckpt-details").display = bool(event.entries)
        if event.entries == self._shown:
            return
        self._shown = event.entries
        self._entries = {str(entry.path): entry for entry in event.entries}
        table = self.query_one("#checkpoints", DataTable)
        keep = self._select_after_refresh or self._selected_key()
        self._select_after_refresh = None
        table.clear()
        previous_run = None
        for entry in event.entries:
            table.add_row(*self._cells(entry, show_run=entry.run != previous_run), key=str(entry.path))
            previous_run = entry.run
        keys = list(self._entries)
        if keep in keys:
            table.move_cursor(row=keys.index(keep), animate=False)
        self._show_details()

    @staticmethod
    def _cells(entry: CheckpointEntry, *, show_run: bool) -> tuple[object, ...]:
        parent = entry.meta.get("parent")
        return (
            Text(entry.run, style="bold") if show_run else "",
            Text(entry.kind, style=KIND_STYLES.get(entry.kind, "")),
            str(entry.step),
            fmt.count(entry.number("tokens_seen") or 0),
            fmt.loss(entry.number("val_loss")),
            fmt.loss(entry.number("val_bpb")),
            fmt.count(entry.number("num_params") or 0),
            fmt.size(entry.number("size_bytes") or 0),
            Text(shown(entry, "tokenizer")),  # sidecar text: a str cell would be read as markup
            fmt.started(entry.number("created_at")),
            Text(_short_parent(parent)) if isinstance(parent, str) and parent else "—",
        )

    def _selected_key(self) -> str | None:
        table = self.query_one("#checkpoints", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def selected(self, *, warn: bool = True) -> CheckpointEntry | None:
        key = self._selected_key()
        if key is None:
            if warn:
                self.notify("There is no checkpoint yet: train a run, or press i to import one.", severity="warning")
            return None
        return self._entries[key]

    @on(DataTable.RowHighlighted)
    def _show_details(self) -> None:
        entry = self.selected(warn=False)
        if entry is None:
            return
        self.query_one("#ckpt-meta", Static).update(metadata_text(entry))
        self._read_config(entry)

    @work(thread=True, exclusive=True, group="checkpoint-config", exit_on_error=False)
    def _read_config(self, entry: CheckpointEntry) -> None:
        self.post_message(CheckpointConfigRead(entry.path, self.engine.checkpoint_config(entry)))

    @on(CheckpointConfigRead)
    def _config_read(self, event: CheckpointConfigRead) -> None:
        entry = self.selected(warn=False)
        if entry is not None and entry.path == event.path:
            self.query_one("#ckpt-config", Static).update(Text(event.text))

    @on(DataTable.RowSelected)
    async def _row_chosen(self) -> None:
        await self.action_chat()

    async def action_chat(self) -> None:
        entry = self.selected()
        if entry is not None:
            await open_checkpoint_in(self.app, "chat", entry)

    async def action_evaluate(self) -> None:
        entry = self.selected()
        if entry is not None:
            await open_checkpoint_in(self.app, "evaluate", entry)

    def action_finetune(self) -> None:
        from nanogpt_tui.screens.finetune_form import FinetuneFormScreen

        entry = self.selected()
        if entry is not None:
            self.app.push_screen(FinetuneFormScreen(entry), self._finetune_launched)

    def _finetune_launched(self, run: RunInfo | None) -> None:
        if run is None:
            return
        from nanogpt_tui.screens.dashboard import DashboardScreen

        app: NanoGPTApp = self.nanogpt
        app.switch_mode("runs")
        app.push_screen(DashboardScreen(run.name))

    def action_import_checkpoint(self) -> None:
        from nanogpt_tui.screens.import_form import ImportFormScreen

        self.app.push_screen(ImportFormScreen(), self._imported)

    def _imported(self, result: ImportResult | None) -> None:
        if result is not None:
            self._select_after_refresh = str(result.checkpoint)
            self.action_refresh()

    def action_delete(self) -> None:
        entry = self.selected()
        if entry is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_engine_action("deleted", entry.label, lambda _label: self.engine.delete_checkpoint(entry))

        question = (f"Delete checkpoint [b]{entry.label}[/b]?\n{entry.path}\n"
                    "Its weights and metadata are removed. This cannot be undone.")
        self.app.push_screen(ConfirmScreen(question, "Delete"), answered)

    def worker_succeeded(self, worker: Worker[object]) -> None:
        super().worker_succeeded(worker)
        if worker.group == RUN_ACTION:
            self.action_refresh()

    def action_copy_path(self) -> None:
        entry = self.selected()
        if entry is not None:
            copy_text(self, str(entry.path), f"the path of {entry.label}")

    def action_refresh(self) -> None:
        self._poll()

    @on(ServersListed)
    def _servers_listed(self, event: ServersListed) -> None:
        if event.listed_at < self._servers_listed_at:
            return
        self._servers_listed_at = event.listed_at
        self._servers = event.servers
        panel = self.query_one("#servers", Static)
        panel.display = bool(event.servers)
        text = Text()
        for server in event.servers:
            text.append("Serving ", style="bold green")
            text.append(f"{server.model} ", style="bold")
            text.append(server.url or "(starting)")
            text.append(f"  ({display_path(server.checkpoint_path)}; s on it stops)\n", style="dim")
        panel.update(text)

    def server_of(self, entry: CheckpointEntry) -> ServerInfo | None:
        return next((server for server in self._servers if server.checkpoint_path == entry.path), None)

    def action_serve(self) -> None:
        """Start an OpenAI-compatible server for the checkpoint, or stop the one serving it (asks first)."""
        entry = self.selected()
        if entry is None:
            return
        server = self.server_of(entry)
        if server is None:
            self.notify(f"Starting a server for {entry.label}…")
            self._start_server(entry)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_engine_action("server stopped", server.model,
                                       lambda _name: self.engine.stop_server(server))

        self.app.push_screen(ConfirmScreen(f"Stop the server of [b]{entry.label}[/b] at {server.url}?", "Stop"),
                             answered)

    @work(thread=True, group="server-start", exit_on_error=False)
    def _start_server(self, entry: CheckpointEntry) -> None:
        self.post_message(ServerStarted(self.engine.start_server(entry)))

    @on(ServerStarted)
    def _server_started(self, event: ServerStarted) -> None:
        self.notify(f"Serving {event.server.model} at {event.server.url} (OpenAI-compatible)", timeout=10)
        self.action_refresh()


def _short_parent(parent: str) -> str:
    """A parent checkpoint as run/file, which is what tells fine-tunes apart."""
    parts = parent.replace("\\", "/").split("/")
    return "/".join(parts[-3::2]) if len(parts) >= 3 and parts[-2] == "checkpoints" else parts[-1]
