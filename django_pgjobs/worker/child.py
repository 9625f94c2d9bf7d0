"""What runs in a handler's child process (``pgjobs_worker --pool process``): Django set up on
its own, the attempts its slot sends, their progress and outcome sent back.

The child is a fresh interpreter's fork (see :mod:`.children`), so it finds handlers the way any
process does: in the ``jobs``, ``tasks`` and ``workflows`` modules its apps import at start-up,
or in the module the worker names with the attempt. It has its own Django connections, and runs
every handler in its main thread, exactly as a handler thread would (:func:`run_attempt`).

It says ``("ready",)`` once set up (the worker's first claim waits for that), then for each
attempt ``("started", t)`` as the handler begins at ``t`` (time.monotonic(), the same clock in
every process of the machine), unless it is a rate-limited job it would begin later than its
claim counted it (worker.start_lag): that one it does not run, and its result says so.

Signals: SIGINT is ignored and the child has a process group of its own, so a Ctrl-C in a
terminal (sent to the whole foreground group) stops the worker gracefully instead of failing the
running attempts; SIGTERM keeps its default action, so the worker's kill at a timeout works.
A child also exits at once if the worker goes away (killed, it never says so): a watcher thread
sees the worker's end of the pipe close, even while a handler runs. (The child's parent is the
forkserver, which outlives the worker as long as any child does: its parent process id says
nothing.)
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import select
import signal
import threading
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from django_pgjobs.jobs.context import RunningAttempt

logger = logging.getLogger("django_pgjobs.worker")


def serve(conn: Connection, cancelled: Any = None, stopping: Any = None) -> None:
    """The child's main function: set up, then run each ``("run", job, module)`` it receives
    until ``("stop",)`` or the pipe closes. ``cancelled`` and ``stopping``: shared memory the
    worker sets when the running attempt loses its job and when it is asked to stop (see
    :class:`SharedAttempt`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpgid(0, 0)
    _exit_with_the_worker(conn)

    import django

    django.setup()  # cheap when the forkserver did it already: the apps are loaded

    from django.db import connections

    from django_pgjobs.jobs.registry import registry
    from django_pgjobs.tracing import otel
    from django_pgjobs.worker.attempt import run_attempt
    from django_pgjobs.worker.start_lag import checked_begin

    sending = threading.Lock()  # progress may come from another thread (an async handler's)

    def send(message: tuple[Any, ...]) -> None:
        with sending:
            conn.send(message)

    send(("ready",))  # the worker waits for this before its first claim (ChildRunner.open)
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return  # the worker is gone
            if message[0] == "stop":
                return
            _, job, module = message
            handler = registry.get(job.job_name)
            if handler is None and module:
                # Registered by a module nothing imported at start-up: the worker names it.
                try:
                    importlib.import_module(module)
                except Exception:
                    logger.exception("Importing %s for job %s failed", module, job.job_name)
                handler = registry.get(job.job_name)  # None: the attempt fails saying so
            # The attempt's clock starts as the handler begins, not at a slow set-up; a start
            # too late is refused (the result says so, and the worker gives the job back).
            begin = checked_begin(job, lambda now: send(("started", now)))

            result = run_attempt(
                handler,
                job,
                lambda _job, value, text: send(("progress", value, text)),
                None if cancelled is None else SharedAttempt(job, cancelled, stopping),
                begin,
            )
            send(("done", *_without_callback(result)))
    finally:
        connections.close_all()
        # A child ends without running atexit hooks (multiprocessing's os._exit), so an SDK's
        # batch of spans would be lost with it.
        otel.flush()


class SharedAttempt(RunningAttempt):
    """The running attempt as the child's handler sees it: its flags are the worker's, in
    shared memory the worker writes as soon as it learns of a cancel or a stop
    (:class:`~.children.ChildProcess`). Reading one is a load from memory, as in a thread."""

    __slots__ = ("_cancelled", "_stopped")

    def __init__(self, job: Any, cancelled: Any, stopping: Any) -> None:
        super().__init__(job)
        self._cancelled = cancelled
        self._stopped = stopping

    def is_cancelled(self) -> bool:
        return bool(self._cancelled.value)

    @property
    def stopping(self) -> bool:
        return self._stopped is not None and bool(self._stopped.value)


def _without_callback(result: Any) -> tuple[Any, bytes | None]:
    """The attempt's result, and its ``on_written`` callback pickled apart: the worker runs it
    once the outcome is written. One that cannot be pickled is dropped, and the log says so."""
    notes = result.notes
    if notes is None or notes.on_written is None:
        return result, None
    try:
        callback = pickle.dumps(notes.on_written)
    except Exception as exc:
        logger.warning(
            "The callback after the outcome of an attempt (a Django task's task_finished) cannot "
            "be sent to the worker, and will not run: %s",
            exc,
        )
        callback = None
    return replace(result, notes=replace(notes, on_written=None)), callback


def _exit_with_the_worker(conn: Connection) -> None:
    """Exit at once when the worker's end of the pipe closes: the worker is gone, and whatever
    the handler still does would run unwatched (its job is rescued and run again elsewhere)."""
    poller = select.poll()
    # No POLLIN: only a hang-up (always reported) or, on Linux, the peer's shutdown wakes it.
    poller.register(conn.fileno(), getattr(select, "POLLRDHUP", 0))

    def watch() -> None:
        poller.poll()
        os._exit(1)

    threading.Thread(target=watch, name="pgjobs-worker-watch", daemon=True).start()
