"""What a worker does as a process rather than as a loop: signals, the scheduler thread beside
it, and logging for the command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType, TracebackType

from django.conf import settings

from django_pgjobs.observability.display import local_time, printable
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


class LogFormatter(logging.Formatter):
    """The worker's log line: the time in ``TIME_ZONE`` with its offset, like every time pgjobs
    prints, and stored text escaped (tracebacks keep their line breaks, nothing else)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return local_time(datetime.fromtimestamp(record.created, UTC))

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(
        self,
        ei: tuple[type[BaseException], BaseException, TracebackType | None]
        | tuple[None, None, None],
    ) -> str:
        return "\n".join(map(printable, super().formatException(ei).split("\n")))


def configure_logging(verbosity: int) -> None:
    """Log to stderr with :class:`LogFormatter` unless the project configured logging:

    - ``-v 0``: warnings and errors only;
    - ``-v 1`` (the default): also the worker's own life (start, stop, rescues, outages) and a
      summary of what it did every minute (:class:`~.stats.Summary`), but not a line per job
      that went well: at thousands of jobs a second that line cost a drain a sixth of its rate
      (``django_pgjobs.jobs`` and the Tasks framework's logger at WARNING);
    - ``-v 2``: a line per job too (completions, snoozes, a task's state changes);
    - ``-v 3``: debug lines as well (each claim).

    (Stored text is escaped in every pgjobs record whoever formats it: the app adds the filter
    at start-up.) The Tasks framework's own lines (``Task id=... state=...``) are handled the same
    way when tasks are in use, except while ``DEBUG`` is on: Django's default logging shows them
    itself then."""
    if logging.getLogger().handlers:
        return
    level = {0: logging.WARNING, 1: logging.INFO, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    per_job = logging.WARNING if verbosity <= 1 else level
    for logger in (logging.getLogger("django_pgjobs"), _tasks_framework_logger()):
        if logger is None or logger.handlers:
            continue
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LogFormatter())
        if logger.name != "django_pgjobs":
            handler.addFilter(lambda record: not settings.DEBUG)
        logger.addHandler(handler)
        logger.setLevel(level if logger.name == "django_pgjobs" else per_job)
    jobs = logging.getLogger("django_pgjobs.jobs")
    if jobs.level == logging.NOTSET:
        jobs.setLevel(per_job)


def _tasks_framework_logger() -> logging.Logger | None:
    """The logger of the Tasks framework in use, if the app loaded it (TASKS names our
    backend: see PgJobsConfig.ready)."""
    framework = sys.modules.get("django_pgjobs.tasks.framework")
    return None if framework is None else framework.signals.logger
