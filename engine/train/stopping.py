"""Stop requests for a training process, installed before torch is imported.

No torch import here: entry points install the handler first thing, so a stop that arrives while
torch loads is honoured instead of killing the process with nothing recorded.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any


class StopSignal:
    """First SIGTERM asks for a checkpoint and a clean stop; a second one, later, exits at once.

    torchrun forwards the group's SIGTERM to its workers, so a worker may see the same stop twice
    within a moment: repeats inside `debounce_s` count as the first.
    """

    def __init__(self, debounce_s: float = 2.0) -> None:
        self.requested_at: float | None = None
        self.debounce_s = debounce_s
        # set by the Trainer once the config is known: how long a stop may take before we give up
        self.timeout_s: float = 60.0
        self.on_timeout: Callable[[], None] | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.requested_at is None:
            self.requested_at = now
            # a step can be long on a big model: bound the stop, atomic saves make exiting safe
            watchdog = threading.Timer(self.timeout_s, self._give_up)
            watchdog.daemon = True
            watchdog.start()
        elif now - self.requested_at > self.debounce_s:
            os._exit(128 + signum)

    def _give_up(self) -> None:
        if self.on_timeout is not None:
            self.on_timeout()
        os._exit(124)

    @property
    def requested(self) -> bool:
        return self.requested_at is not None
