"""Cancellable polling for thread workers: screens and widgets that follow files on disk use these."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.worker import get_current_worker

from engine.errors import EngineError

# how often a sleeping worker looks whether it was cancelled (bounds the delay of quitting)
CANCEL_CHECK_S = 0.1


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
