"""One model, one generation at a time: requests wait in a FIFO queue and run on one thread.

The Generator holds one KV cache and a new generation supersedes a running one, so requests must
not overlap; run one after the other, each streams exactly what it would stream alone (the
benchmark measures what this costs against in-process generation). Events reach the asyncio side
through `loop.call_soon_threadsafe`; a cancelled job (client gone) stops before its next token.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# a job's work: called on the worker thread with the job's cancel event, yields events to stream back
Work = Callable[[threading.Event], Iterator[Any]]


@dataclass(frozen=True)
class JobFailed:
    """The work raised; `error` is the exception (shown to the client as a 500 or an error event)."""

    error: BaseException


class _End:
    """Marks the end of a job's events."""


END = _End()


class Job:
    """A submitted piece of work: its events arrive in order on the event loop, END last."""

    def __init__(self, work: Work, loop: asyncio.AbstractEventLoop) -> None:
        self.work = work
        self.loop = loop
        self.cancel = threading.Event()
        self._events: deque[Any] = deque()  # appended by the worker thread, popped by the loop (deque ops are atomic)
        self._ready = asyncio.Event()
        self._lock = threading.Lock()
        self._wake_pending = False  # a wake-up is already on its way to the loop

    def post(self, event: Any) -> None:
        """Hand an event to the asyncio side; called from the worker thread.

        The loop is woken once for all events posted until it runs, not once per token: each
        wake-up costs the loop a pass and takes the GIL from the generating thread.
        """
        with self._lock:
            self._events.append(event)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the event loop has closed (server shutting down); nobody is listening
            self.cancel.set()

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._ready.set()

    async def next_event(self) -> Any:
        while not self._events:
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()

    def take_waiting(self, kind: type) -> list[Any]:
        """The events of `kind` already waiting at the front (removed), without waiting for more."""
        taken = []
        while self._events and isinstance(self._events[0], kind):
            taken.append(self._events.popleft())
        return taken


@dataclass
class WorkerStats:
    queued: int = 0
    busy: bool = False
    completed: int = 0
    cancelled: int = 0
    failed: int = 0


class ModelWorker:
    """Runs submitted jobs one at a time, in order, on a daemon thread."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self.stats = WorkerStats()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> Job:
        """Queue `work`; must be called from the event loop that will read the job's events."""
        job = Job(work, asyncio.get_running_loop())
        with self._lock:
            self.stats.queued += 1
        self._jobs.put(job)
        return job

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self.stats.queued -= 1
                self.stats.busy = True
            try:
                self._run_job(job)
            finally:
                with self._lock:
                    self.stats.busy = False
                job.post(END)

    def _run_job(self, job: Job) -> None:
        if job.cancel.is_set():  # the client left while waiting in the queue
            self.stats.cancelled += 1
            return
        try:
            for event in job.work(job.cancel):
                job.post(event)
        except Exception as err:  # noqa: BLE001 - any failure of one request must reach its client, not kill the worker
            log.exception("a request failed")
            self.stats.failed += 1
            job.post(JobFailed(err))
            return
        if job.cancel.is_set():
            self.stats.cancelled += 1
        else:
            self.stats.completed += 1
