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
    """Log to stderr with :class:`LogFormatter`, filling in only what the project's logging left
    unconfigured:

    - the root logger has a handler: the project logs somewhere; nothing is configured;
    - a logger the project configured is the project's: one named in ``LOGGING["loggers"]``,
      itself or a logger above it (``django_pgjobs`` for ``django_pgjobs.jobs``, ``django``
      for the Tasks framework's ``django.tasks``), or one with a handler or level of its own.
      It gets no handler and no level from the worker, and neither do the loggers below it;
    - the others get a stderr handler (``django_pgjobs``, ``django.tasks``) and a level by
      verbosity: ``-v 0`` warnings and errors only; ``-v 1`` (the default) also the worker's
      own life (start, stop, rescues, outages) and a summary of what it did every minute
      (:class:`~.stats.Summary`), but not a line per job that went well
      (``django_pgjobs.jobs`` and ``django.tasks`` at WARNING: at thousands of jobs a second
      that line cost a drain a sixth of its rate); ``-v 2`` a line per job too; ``-v 3`` debug
      lines as well (each claim).

    (Stored text is escaped in every pgjobs record whoever formats it: the app adds the filter
    at start-up.) The Tasks framework's lines (``Task id=... state=...``) are left out of the
    worker's handler while ``DEBUG`` is on: Django's default logging shows them itself then."""
    if logging.getLogger().handlers:
        return
    level = {0: logging.WARNING, 1: logging.INFO, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    per_job = logging.WARNING if verbosity <= 1 else level
    named = _named_in_settings()
    package = logging.getLogger("django_pgjobs")
    if _fill_in(package, level, named):
        # Only under a package logger the worker configured: below the project's, the project's
        # level (or its absence) is what it asked for.
        _fill_in(logging.getLogger("django_pgjobs.jobs"), per_job, named, handler=False)
    tasks = _tasks_framework_logger()
    if tasks is not None and _fill_in(tasks, per_job, named):
        tasks.handlers[-1].addFilter(lambda record: not settings.DEBUG)


def _named_in_settings() -> set[str]:
    """The loggers the project's ``LOGGING`` names (when Django applied it)."""
    config = getattr(settings, "LOGGING", None)
    if getattr(settings, "LOGGING_CONFIG", None) is None or not isinstance(config, dict):
        return set()
    loggers = config.get("loggers")
    return set(loggers) if isinstance(loggers, dict) else set()


def _fill_in(logger: logging.Logger, level: int, named: set[str], *, handler: bool = True) -> bool:
    """Give ``logger`` the worker's level (and a stderr handler) unless the project configured
    it (see :func:`configure_logging`); whether it did."""
    parts = logger.name.split(".")
    above = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    if above & named or logger.handlers or logger.level != logging.NOTSET:
        return False
    if handler:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(LogFormatter())
        logger.addHandler(stream)
    logger.setLevel(level)
    return True


def _tasks_framework_logger() -> logging.Logger | None:
    """The logger of the Tasks framework in use, if the app loaded it (TASKS names our
    backend: see PgJobsConfig.ready)."""
    framework = sys.modules.get("django_pgjobs.tasks.framework")
    return None if framework is None else framework.signals.logger
