"""One model on one thread: waiting requests are decoded together as one batch, in FIFO order.

The Generator holds one KV cache and a new generation supersedes a running one, so generations
must not overlap. Instead of running requests one after the other, the worker takes every request
waiting when a batch starts (up to max_batch, 8 by default, with prompts of similar length) and decodes them as
the rows of one `Generator.generate_rows` call: each row has its own sampling settings, seed and
cancel event, so each streams what it would stream alone (benchmarks/serve.py measures the gain).
Requests that arrive while a batch runs wait for the next one. Events reach the asyncio side
through `loop.call_soon_threadsafe`; a cancelled job (client gone) stops before its next token.
With max_batch 1 (`serve --max-batch 1`) requests are answered one at a time in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.inference.generate import FAILED, Row, TokenChunk

log = logging.getLogger(__name__)

# the most requests decoded in one batch, by default
MAX_BATCH = 8
# a prompt this many tokens longer than the batch's shortest is fed one token per step while the
# others sample; beyond it, the request waits for a batch of its own length instead
MAX_PROMPT_SPREAD = 64
# while requests have been overlapping (in the last CONCURRENT_S), a batch waits up to GATHER_S
# for more before it starts: clients that start together then share one batch instead of the
# first running alone while the others wait for it. A lone client never waits.
GATHER_S, CONCURRENT_S = 0.03, 2.0


class Work(Protocol):
    """A request as the worker runs it: a row of a batch, and the events its chunks become."""

    def prepare(self, cancel: threading.Event) -> Row: ...

    def events(self, chunk: TokenChunk) -> Iterator[Any]: ...


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
        self.ended = asyncio.Event()  # END has arrived (set on the loop)
        self._lock = threading.Lock()
        self._wake_pending = False  # a wake-up is already on its way to the loop
        self._waiting = False  # the reader is blocked in next_event (else it takes what is there when it comes back)

    def post(self, event: Any) -> None:
        """Hand an event to the asyncio side; called from the worker thread.

        The loop is woken once for all events posted until it runs, and only when the reader
        waits for them (a stream gathering tokens for its next event does not) or for the end:
        each wake-up costs the loop a pass and takes the GIL from the generating thread.
        """
        with self._lock:
            self._events.append(event)
            if self._wake_pending or not (self._waiting or event is END):
                return
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the event loop has closed (server shutting down); nobody is listening
            self.cancel.set()

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
            if self._events and self._events[-1] is END:
                self.ended.set()
        self._ready.set()

    async def next_event(self) -> Any:
        while True:
            with self._lock:
                if self._events:
                    return self._events.popleft()
                self._waiting = True
                self._ready.clear()
            try:
                await self._ready.wait()
            finally:
                with self._lock:
                    self._waiting = False

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
    batches: int = 0
    largest_batch: int = 0


class ModelWorker:
    """Runs submitted jobs in batches, in order, on a daemon thread; `decode` is Generator.generate_rows."""

    def __init__(self, decode: Callable[[Sequence[Row]], Iterator[TokenChunk]], max_batch: int = MAX_BATCH) -> None:
        self.decode = decode
        self.max_batch = max_batch  # 1: a FIFO queue, one request at a time
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._ready: deque[tuple[Job, Row]] = deque()  # prepared, waiting for a batch their prompts suit
        self.stats = WorkerStats()
        self._lock = threading.Lock()
        self._overlapping_until = 0.0  # time.monotonic() until which requests count as overlapping
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
        closing = False
        while not closing or self._ready:
            if not self._ready:
                job = self._jobs.get()
                if job is None:
                    return
                self._prepare(job)
            gathering = self.max_batch > 1 and time.monotonic() < self._overlapping_until
            gather_until = time.monotonic() + GATHER_S if gathering else 0.0
            while True:  # everything else already waiting (or arriving while gathering) joins the choice of this batch
                try:
                    job = self._jobs.get(timeout=max(0.0, gather_until - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    closing = True
                    break
                self._prepare(job)
            batch = self._take_batch()
            if not batch:
                continue
            with self._lock:
                self.stats.busy = True
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            try:
                self._run_batch(batch)
            finally:
                with self._lock:
                    self.stats.busy = False
                if len(batch) > 1 or self._ready or not self._jobs.empty():
                    self._overlapping_until = time.monotonic() + CONCURRENT_S

    def _prepare(self, job: Job) -> None:
        """Make the job's row (its prompt); a job that is cancelled or cannot be prepared ends here."""
        if job.cancel.is_set():  # the client left while waiting in the queue
            self._dequeued(cancelled=True)
            job.post(END)
            return
        try:
            row = job.work.prepare(job.cancel)
        except Exception as err:  # noqa: BLE001 - any failure of one request must reach its client, not kill the worker
            self._dequeued()
            self._fail(job, err)
            return
        self._ready.append((job, row))  # still counted as queued until a batch takes it

    def _dequeued(self, cancelled: bool = False) -> None:
        with self._lock:
            self.stats.queued -= 1
            self.stats.cancelled += cancelled

    def _take_batch(self) -> list[tuple[Job, Row]]:
        """The oldest ready job and the next ones (FIFO) whose prompts are within MAX_PROMPT_SPREAD of it."""
        batch: list[tuple[Job, Row]] = []
        waiting: deque[tuple[Job, Row]] = deque()
        while self._ready:
            job, row = self._ready.popleft()
            if job.cancel.is_set():
                self._dequeued(cancelled=True)
                job.post(END)
                continue
            shortest = min((len(r.prompt) for _, r in batch), default=len(row.prompt))
            longest = max((len(r.prompt) for _, r in batch), default=len(row.prompt))
            fits = max(longest, len(row.prompt)) - min(shortest, len(row.prompt)) <= MAX_PROMPT_SPREAD
            (batch if fits and len(batch) < self.max_batch else waiting).append((job, row))
        self._ready = waiting
        for _ in batch:
            self._dequeued()
        return batch

    def _run_batch(self, batch: list[tuple[Job, Row]]) -> None:
        open_jobs = dict(enumerate(batch))  # row index -> (job, row) still streaming
        try:
            for chunk in self.decode([row for _, row in batch]):
                job, row = batch[chunk.sample]
                for event in job.work.events(chunk):
                    job.post(event)
                if chunk.finish_reason is None:
                    continue
                del open_jobs[chunk.sample]
                if chunk.finish_reason == FAILED and row.error is not None:
                    self._fail(job, row.error)
                    continue
                if job.cancel.is_set():
                    self.stats.cancelled += 1
                else:
                    self.stats.completed += 1
                job.post(END)
        except Exception as err:  # noqa: BLE001 - the batch's failure reaches each of its clients
            for job, _ in open_jobs.values():
                self._fail(job, err)
            return
        for job, _ in open_jobs.values():  # never expected: every row ends with a finish_reason
            self._fail(job, RuntimeError("the generation ended without finishing this request"))

    def _fail(self, job: Job, err: BaseException) -> None:
        log.error("a request failed: %s: %s", type(err).__name__, err, exc_info=err)
        self.stats.failed += 1
        job.post(JobFailed(err))
        job.post(END)
