"""What every screen of the app shares: typed access to the app and its engine, run actions, errors shown."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual import on, work
from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from nanogpt_tui.app import Engine, NanoGPTApp

ResultType = TypeVar("ResultType")

# worker group of stop, resume and delete
RUN_ACTION = "run-action"


class AppScreen(Screen[ResultType]):
    """A screen of NanoGPTApp."""

    HELP_TITLE: ClassVar[str] = ""

    @property
    def nanogpt(self) -> NanoGPTApp:
        return cast("NanoGPTApp", self.app)

    @property
    def engine(self) -> Engine:
        return self.nanogpt.engine

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.SUCCESS:
            self.worker_succeeded(event.worker)
        elif event.state == WorkerState.ERROR and event.worker.error is not None:
            self.worker_failed(event.worker, event.worker.error)

    def worker_succeeded(self, worker: Worker[object]) -> None:
        """Called with each finished worker of this screen; one-shot workers deliver results here."""
        if worker.group == RUN_ACTION:
            self.notify(str(worker.result))

    @work(thread=True, group=RUN_ACTION, exit_on_error=False)
    def run_engine_action(self, done: str, name: str, call: Callable[[str], object]) -> str:
        """Call `call(name)` off the UI thread; `done` is what the user is told when it returns."""
        call(name)
        return f"{name}: {done}"

    def notify_file_problems(self, problems: Iterable[str]) -> None:
        """Each problem with a file the app read (it names the file), shown once per session as a warning."""
        shown = self.nanogpt.file_problems_shown
        for problem in problems:
            if problem not in shown:
                shown.add(problem)
                self.notify(problem, title="Part of a file was not used", severity="warning", timeout=10)

    def resume_run(self, name: str, state: str) -> None:
        """Resume a run; a finished one only once the user has agreed to what that changes."""
        if state != "finished":
            self.run_engine_action("resumed", name, self.engine.resume)
            return
        from nanogpt_tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_engine_action("resumed", name, partial(self.engine.resume, rerun_finished=True))

        question = (f"Run [b]{name}[/b] already finished. Resuming trains its last steps again, "
                    "replaces its final checkpoint and adds to its metrics.\nResume it anyway?")
        self.app.push_screen(ConfirmScreen(question, "Resume"), answered)

    def worker_failed(self, worker: Worker[object], error: BaseException) -> None:
        """Any worker error is shown; the screen stays usable."""
        self.nanogpt.show_error(error)
