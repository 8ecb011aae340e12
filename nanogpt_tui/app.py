"""The nanogpt-tui Textual app: one mode per top-level screen, the engine injected as a Protocol."""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from textual.app import App, InvalidThemeError, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.notifications import SeverityLevel
from textual.theme import Theme

from engine import paths
from engine.errors import ConfigError, describe
from nanogpt_tui.model_service import LocalModels, ModelCache, ModelEngine
from nanogpt_tui.screens.help import HelpScreen
from nanogpt_tui.screens.runs import RunsScreen
from engine.settings import DEFAULT_THEME, Settings, load_settings, save_settings, settings_path

if TYPE_CHECKING:
    from engine.config import Hyperparameters
    from engine.metrics import MetricsReader
    from engine.runs import RunInfo, RunManager, Workspace

# set by benchmarks/tui.py: the app exits as soon as its first frame is on screen
EXIT_AFTER_FIRST_FRAME_ENV = "NANOGPT_TUI_EXIT_AFTER_FIRST_FRAME"
# threads for workers: most of them poll and sleep, so many more than there are cores
WORKER_THREADS = 64


class Engine(ModelEngine, Protocol):
    """What the screens need from the engine; tests pass a fake or a RunManager over a temp dir."""

    def list_runs(self) -> list[RunInfo]: ...
    def get(self, name: str) -> RunInfo: ...
    def config(self, name: str) -> Hyperparameters: ...
    def create(self, hp: Hyperparameters, name: str | None = None, **options: Any) -> RunInfo: ...
    def launch(self, name: str, *, resume: bool = False) -> RunInfo: ...
    def create_and_launch(self, hp: Hyperparameters, name: str | None = None, **options: Any) -> RunInfo: ...
    def stop(self, name: str) -> None: ...
    def resume(self, name: str, *, rerun_finished: bool = False) -> RunInfo: ...
    def delete(self, name: str) -> None: ...
    def torchrun_command(self, name: str, *, node_rank: int | None = None) -> list[str]: ...
    def run_dir(self, name: str) -> Path: ...
    def metrics_reader(self, name: str) -> MetricsReader: ...
    def presets(self) -> list[str]: ...
    def preset(self, name: str) -> Hyperparameters: ...
    def detect_devices(self, device: str) -> tuple[str, int]: ...
    def measure_throughput(self, device: str) -> float: ...


class LocalEngine(LocalModels):
    """The app's adapter over the engine workspace (the CLI's too); modules load on first use, after the first frame."""

    def __init__(self, root: Path | None = None) -> None:
        # the runs folder; None follows the one data-root rule (NANOGPT_TUI_HOME, settings.toml, platform)
        self.root = Path(root) if root is not None else paths.runs_dir()
        self._workspace: Workspace | None = None
        self.model_cache = ModelCache()

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            from engine.runs.workspace import Workspace

            self._workspace = Workspace(self.root.parent, runs=self.new_manager())
        return self._workspace

    @property
    def manager(self) -> RunManager:
        return self.workspace.runs

    def new_manager(self) -> RunManager:
        from engine.runs import RunManager

        return RunManager(self.root)

    def list_runs(self) -> list[RunInfo]:
        return self.manager.list_runs()

    def get(self, name: str) -> RunInfo:
        return self.manager.get(name)

    def config(self, name: str) -> Hyperparameters:
        return self.manager.config(name)

    def create(self, hp: Hyperparameters, name: str | None = None, **options: Any) -> RunInfo:
        return self.manager.create(hp, name, **options)

    def launch(self, name: str, *, resume: bool = False) -> RunInfo:
        return self.manager.launch(name, resume=resume)

    def create_and_launch(self, hp: Hyperparameters, name: str | None = None, **options: Any) -> RunInfo:
        return self.manager.create_and_launch(hp, name, **options)

    def stop(self, name: str) -> None:
        self.manager.stop(name)

    def resume(self, name: str, *, rerun_finished: bool = False) -> RunInfo:
        return self.manager.resume(name, rerun_finished=rerun_finished)

    def delete(self, name: str) -> None:
        self.manager.delete(name)

    def torchrun_command(self, name: str, *, node_rank: int | None = None) -> list[str]:
        return self.manager.torchrun_command(name, node_rank=node_rank)

    def run_dir(self, name: str) -> Path:
        return self.manager.run_dir(name)

    def metrics_reader(self, name: str) -> MetricsReader:
        from engine.metrics import MetricsReader

        return MetricsReader(self.run_dir(name) / "metrics.jsonl")

    def presets(self) -> list[str]:
        from engine.config import PRESETS

        return list(PRESETS)

    def preset(self, name: str) -> Hyperparameters:
        from engine.config import preset

        return preset(name)

    def detect_devices(self, device: str) -> tuple[str, int]:
        from engine.runs import available_devices

        return available_devices(device)

    def measure_throughput(self, device: str) -> float:
        from engine.estimate import measure_matmul_flops

        return measure_matmul_flops(device)


def lazy_screen(module: str, name: str) -> Callable[[], Screen]:
    """A MODES factory that imports the screen's module when the screen is first shown, not at start-up."""

    def make() -> Screen:
        screen_class: type[Screen] = getattr(importlib.import_module(module), name)
        return screen_class()

    return make


def error_text(error: BaseException) -> str:
    """An error as the user reads it in a notification (engine.errors.describe: one wording for both faces)."""
    return describe(error)


class NanoGPTApp(App[None]):
    """Train, follow and compare modded-nanogpt runs from the terminal."""

    TITLE = "nanogpt-tui"
    CSS_PATH = "app.tcss"
    # one mode per top-level screen; a later screen plugs in by replacing its entry
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {
        "runs": RunsScreen,
        "checkpoints": lazy_screen("nanogpt_tui.screens.checkpoints", "CheckpointsScreen"),
        "evaluate": lazy_screen("nanogpt_tui.screens.evaluate", "EvaluateScreen"),
        "chat": lazy_screen("nanogpt_tui.screens.chat", "ChatScreen"),
    }
    DEFAULT_MODE = "runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('runs')", "Runs", show=False),
        Binding("2", "switch_mode('checkpoints')", "Checkpoints", show=False),
        Binding("3", "switch_mode('evaluate')", "Evaluate", show=False),
        Binding("4", "switch_mode('chat')", "Chat", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+t", "toggle_dark", "Dark/light"),
    ]

    def __init__(self, engine: Engine | None = None, settings: Settings | None = None, *,
                 clock: Callable[[], float] = time.time, exit_after_first_frame: bool = False) -> None:
        # a wrong value in settings.toml keeps its default and is reported once the app is up
        self._settings_problems: list[str] = []
        # problems with run files already shown (screens poll: each is told once)
        self.file_problems_shown: set[str] = set()
        self.settings = settings if settings is not None else load_settings(problems=self._settings_problems)
        self.engine: Engine = engine if engine is not None else LocalEngine(paths.data_dir(self.settings.data_dir) / "runs")
        # wall clock for durations of running runs; tests fix it so snapshots do not change
        self.clock = clock
        self._exit_after_first_frame = exit_after_first_frame
        super().__init__()
        try:
            self.theme = self.settings.theme
        except InvalidThemeError:
            self._settings_problems.append(f"{settings_path()}: theme: unknown theme {self.settings.theme!r}: "
                                           f"using {DEFAULT_THEME} instead")
            self.settings = dataclasses.replace(self.settings, theme=DEFAULT_THEME)
            self.theme = DEFAULT_THEME

    def on_load(self) -> None:
        # thread workers run in the loop's default executor, which asyncio sizes to cpu_count + 4: on
        # two cores, six polling workers (runs, checkpoints, two dashboards with their logs) would take
        # every thread and any later worker (load a model, find a checkpoint) would wait forever
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="nanogpt-worker"))

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._save_theme)
        for problem in self._settings_problems:
            self.notify(problem, title="Settings", severity="warning", timeout=12)
        if self._exit_after_first_frame:
            self.call_after_refresh(self.exit)

    def _save_theme(self, theme: Theme) -> None:
        if theme.name != self.settings.theme:
            self.update_settings(dataclasses.replace(self.settings, theme=theme.name))

    def update_settings(self, settings: Settings) -> None:
        self.settings = settings
        if self._settings_problems:
            # the file holds something the user wrote that we could not read: never overwrite it unasked
            self.notify(f"Not saved: fix or delete {settings_path()} first; the change lasts until you quit.",
                        title="Settings", severity="warning", timeout=8)
            return
        try:
            save_settings(settings)
        except ConfigError as err:
            self.show_error(err, title="Settings not saved")

    def set_default_preset(self, name: str) -> None:
        self.update_settings(dataclasses.replace(self.settings, default_preset=name))
        self.notify(f"New runs start from the {name} preset.")

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Always plain text: notifications quote paths, file contents and model output, which are not markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def show_error(self, error: BaseException, title: str = "Error") -> None:
        self.notify(error_text(error), title=title, severity="error", timeout=8)

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_sections(), settings_path()))

    def key_sections(self) -> list[tuple[str, list[Binding]]]:
        """Every key of the app and of each screen class, for the help screen."""
        from nanogpt_tui.screens.chat import ChatScreen
        from nanogpt_tui.screens.checkpoints import CheckpointsScreen
        from nanogpt_tui.screens.compare import CompareScreen
        from nanogpt_tui.screens.dashboard import DashboardScreen
        from nanogpt_tui.screens.evaluate import EvaluateScreen
        from nanogpt_tui.screens.finetune_form import FinetuneFormScreen
        from nanogpt_tui.screens.log import LogScreen
        from nanogpt_tui.screens.new_run import NewRunScreen

        sections = [("Everywhere", _bindings(type(self)))]
        for screen in (RunsScreen, NewRunScreen, DashboardScreen, CompareScreen, LogScreen, CheckpointsScreen,
                       FinetuneFormScreen, EvaluateScreen, ChatScreen):
            sections.append((screen.HELP_TITLE, _bindings(screen)))
        return sections

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode in self.MODES:
            yield SystemCommand(f"Go to {mode.title()}", f"Switch to the {mode} screen", partial(self.switch_mode, mode))
        yield SystemCommand("Help", "List every key", self.action_help)
        yield SystemCommand("Dark/light", "Toggle between the dark and the light theme", self.action_toggle_dark)
        for name in self.engine.presets():
            yield SystemCommand(f"Default preset: {name}", f"Preselect {name} in the new-run form (saved in settings)",
                                partial(self.set_default_preset, name))
        for binding in _bindings(type(screen)):
            yield SystemCommand(binding.description, f"{binding.key_display or binding.key} on this screen",
                                partial(screen.run_action, binding.action))


def _bindings(cls: type) -> list[Binding]:
    """The described bindings a class declares itself (not inherited ones)."""
    return [b for b in cls.__dict__.get("BINDINGS", []) if isinstance(b, Binding) and b.description]


def run_app() -> None:
    """Start the app in this terminal (what `nanogpt-tui` with no arguments does)."""
    NanoGPTApp(exit_after_first_frame=bool(os.environ.get(EXIT_AFTER_FIRST_FRAME_ENV))).run()
