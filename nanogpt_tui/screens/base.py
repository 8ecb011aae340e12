"""What every screen of the app shares: typed access to the app and its engine, cancellable polling."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual import on, work
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from engine.errors import EngineError

if TYPE_CHECKING:
    from nanogpt_tui.app import Engine, NanoGPTApp

ResultType = TypeVar("ResultType")

# how often a sleeping worker looks whether it was cancelled (bounds the delay of quitting)
CANCEL_CHECK_S = 0.1
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


# what a polling tick may meet when another viewer changes the runs folder under it
POLL_ERRORS = (EngineError, OSError, ValueError)


def poll(interval: float, tick: Callable[[], None], failed: Callable[[BaseException], None]) -> None:
    """Call `tick` every `interval` seconds until the worker is cancelled.

    A tick that fails (the run was deleted by another viewer, a folder vanished mid-listing) is
    reported through `failed` and the polling goes on, so the screen follows what comes next.
    """
    while True:
        try:
            tick()
        except POLL_ERRORS as err:
            failed(err)
        if not keep_polling(interval):
            return


def keep_polling(interval: float) -> bool:
    """Sleep `interval` seconds in a thread worker; False as soon as the worker is cancelled."""
    worker = get_current_worker()
    deadline = time.monotonic() + interval
    while not worker.is_cancelled:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, CANCEL_CHECK_S))
    return False
