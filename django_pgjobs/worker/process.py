"""What a worker does as a process rather than as a loop: signals, the scheduler thread beside
it, and logging for the command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from django_pgjobs.schedules.scheduler import Scheduler


class StopSignals:
    """SIGTERM/SIGINT: a graceful stop. A second one: exit at once; leases recover the jobs."""

    def __init__(self, request_stop: Callable[[], None]) -> None:
        self._request_stop = request_stop
        self.received: int | None = None

    def install(self) -> Callable[[], None]:
        """Install the handlers; returns a function that puts the previous ones back."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only async-signal-safe work here: the loop thread logs and shuts down.
            if self.received is not None:
                os.write(2, b"pgjobs: second signal, exiting now; leases will recover jobs\n")
                os._exit(1)
            self.received = signum
            self._request_stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


class SchedulerThread:
    """A scheduler firing due schedule ticks in a daemon thread while the worker runs."""

    def __init__(self, scheduler: Scheduler, *, name: str) -> None:
        self.scheduler = scheduler
        self._thread = threading.Thread(target=scheduler.run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.scheduler.request_stop()
        self._thread.join(timeout=10)  # a daemon thread: never hold the exit for it


def configure_logging(verbosity: int) -> None:
    """Log to stderr unless the project configured logging: -v 0 warnings and errors only,
    -v 1 (the default) one line per job, -v 2 debug."""
    logger = logging.getLogger("django_pgjobs")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
