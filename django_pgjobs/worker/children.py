"""Handlers in child processes (``pgjobs_worker --pool process``): a hard timeout.

Each handler slot (a pool thread) owns one long-lived child process and hands it its attempts
over a pipe, one at a time; progress reports and the outcome come back the same way. At the
attempt's deadline the slot's thread kills the child (SIGTERM, then SIGKILL after
:data:`KILL_GRACE` seconds) and reports the timeout itself; its next attempt starts a new child.
A child that dies on its own (a segfault, ``os._exit``, the kernel's OOM killer) fails its
attempt instead of the worker.

Children come from a forkserver that has set Django up once (:mod:`.child_setup`): a new child
is a fork of a process with no threads and no connections, ready in about 10 ms where a spawned
interpreter pays a whole ``django.setup()`` (0.6 s for the test project, seconds for a large
one). Forking the worker itself would be cheaper still, but the worker has threads and an open
connection at any moment, and a fork copies a lock held by another thread for ever. Where there
is no forkserver (Windows), children are spawned.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import pickle
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from django_pgjobs.jobs.context import ProgressSink, RunningAttempt
from django_pgjobs.jobs.error_text import log_exception
from django_pgjobs.jobs.timeouts import TIMEOUT_EXCEPTION, timeout_error
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.worker import child
from django_pgjobs.worker.attempt import AttemptResult, run_attempt
from django_pgjobs.worker.inflight import InFlight

logger = logging.getLogger("django_pgjobs.worker")

# Told as a handler begins, with the time.monotonic() it began at (CLOCK_MONOTONIC: the same
# clock in every process of the machine).
Began = Callable[[float], None]
# The same for the slots' attempts: told which attempt began (Slots._began).
EntryBegan = Callable[[InFlight, float], None]

# Seconds a child gets between SIGTERM and SIGKILL: enough for a handler's own SIGTERM handler
# to clean up, short because the slot stays busy meanwhile.
KILL_GRACE = 5.0
# Seconds a child that was asked to stop gets to finish before it is killed.
STOP_GRACE = 5.0
# Seconds open() waits for its children to be set up before the worker claims anyway.
READY_WAIT = 30.0


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["django_pgjobs.worker.child_setup"])
    return context


class ChildProcess:
    """One child and the pipe to it, used by one slot thread at a time.

    What the handler's ``is_cancelled()`` and ``stopping`` read is shared memory the worker
    writes when it learns of a cancel or a stop, from the thread that learns it (the loop's, a
    signal handler): a read costs the handler nothing, and no thread copies flags to the child
    while it runs. ``stopping`` is the runner's, one for all its children; ``cancelled`` is
    this child's, set only for the attempt it runs now.
    """

    def __init__(self, context: Any, name: str, stopping: Any) -> None:
        self.conn, theirs = context.Pipe()
        self.cancelled = context.RawValue("b", 0)
        # The attempt the child runs now: a cancel of an earlier one must not reach it.
        self._running: RunningAttempt | None = None
        self._lock = threading.Lock()  # the loop's cancel and the slot thread's next attempt
        # Not daemonic: a daemonic process may not start processes of its own, and a handler may.
        self.process: BaseProcess = context.Process(
            target=child.serve,
            args=(theirs, self.cancelled, stopping),
            name=name,
            daemon=False,
        )
        self.process.start()
        theirs.close()
        self.killed_for: str | None = None  # why kill() was called: "timeout", "shutdown"
        self.name = name

    def run(
        self,
        job: Any,
        module: str | None,
        timeout: float | None,
        progressed: ProgressSink,
        attempt: RunningAttempt | None = None,
        on_started: Began | None = None,
    ) -> AttemptResult | None:
        """Run ``job`` in the child until it reports; None if the child is gone first: it died,
        or ran ``timeout`` seconds past the handler's start and was killed (``killed_for``).
        The clock starts when the child says the handler starts: a new child's set-up (the
        forkserver's ``django.setup()``, seconds in a large project) is not the job's time.
        A rate-limited job the child would begin too late is not begun (its result says so).
        ``attempt`` turning lost reaches the handler as the worker learns it."""
        self._attach(attempt)
        try:
            return self._run(job, module, timeout, progressed, on_started)
        finally:
            self._attach(None)

    def _run(
        self,
        job: Any,
        module: str | None,
        timeout: float | None,
        progressed: ProgressSink,
        on_started: Began | None,
    ) -> AttemptResult | None:
        try:
            self.conn.send(("run", job, module))
        except OSError:
            self.process.join(STOP_GRACE)
            return None
        deadline: float | None = None
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.kill("timeout")
                return None
            ready = wait([self.conn, self.process.sentinel], left)
            if not ready:
                continue
            # A child that exits right after reporting has both ready: read the pipe first.
            if self.conn not in ready and not self.conn.poll(0):
                self.process.join(STOP_GRACE)
                return None
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self.process.join(STOP_GRACE)
                return None
            if message[0] == "started":
                deadline = None if timeout is None else time.monotonic() + timeout
                if on_started is not None:
                    try:  # the child runs the handler meanwhile: this thread must wait for it
                        on_started(message[1])
                    except Exception:
                        log_exception(logger, "Telling of a handler's start in its child failed")
                continue
            if message[0] == "ready":
                continue  # a new child's set-up done: open() may not have waited for it
            if message[0] == "progress":
                progressed(job, message[1], message[2])
                continue
            result: AttemptResult = message[1]
            return _with_callback(result, message[2])

    def _attach(self, attempt: RunningAttempt | None) -> None:
        """The attempt the child runs from now on (None: none), its cancel flag cleared; the
        attempt tells it when lost (at once if it is already)."""
        with self._lock:
            self._running = attempt
            self.cancelled.value = 0
        if attempt is not None:
            attempt.tell_when_lost(functools.partial(self._cancel, attempt))

    def _cancel(self, attempt: RunningAttempt) -> None:
        """``attempt`` lost its job: its handler is told, if the child still runs it."""
        with self._lock:
            if self._running is attempt:
                self.cancelled.value = 1

    def wait_ready(self, until: float) -> bool:
        """Wait until the child says it is set up (or dies), at most until ``until``
        (monotonic); False if it did not say so in time."""
        ready = wait([self.conn, self.process.sentinel], max(until - time.monotonic(), 0.0))
        if self.conn not in ready:
            return False
        try:
            return bool(self.conn.recv() == ("ready",))
        except (EOFError, OSError):
            return False

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self, why: str) -> None:
        """SIGTERM, then SIGKILL after :data:`KILL_GRACE`: gone either way. Safe from another
        thread than the slot's (the pipe is the slot thread's to close)."""
        self.killed_for = why
        self.process.terminate()
        self.process.join(KILL_GRACE)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def stop(self) -> None:
        """Ask the child to exit between attempts; kill it if it does not."""
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        self.process.join(STOP_GRACE)
        if self.process.is_alive():
            self.kill("stop")
        self.conn.close()

    def death(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"


def _with_callback(result: AttemptResult, callback: bytes | None) -> AttemptResult:
    """The child's result with its ``on_written`` callback back in its notes, if any."""
    if callback is None or result.notes is None:
        return result
    try:
        result.notes.on_written = pickle.loads(callback)  # noqa: S301 - our own child wrote it
    except Exception as exc:
        logger.warning(
            "The callback after the outcome of an attempt (a Django task's task_finished) sent "
            "by its child process cannot be read here, and will not run: %s",
            exc,
        )
    return result


class ChildRunner:
    """Runs each attempt in its slot's child process, killing it at the attempt's deadline."""

    kills_on_timeout = True

    def __init__(self, *, name: str, progressed: ProgressSink) -> None:
        self._name = name
        self._progressed = progressed
        self._context = _context()
        # What every child's handler reads as ``stopping``: set once, by worker_stopping().
        self._stopping = self._context.RawValue("b", 0)
        self._local = threading.local()  # each slot thread's child
        self._children: set[ChildProcess] = set()
        self._lock = threading.Lock()
        self._count = 0
        self._spares: list[ChildProcess] = []  # see open()

    def __call__(self, entry: InFlight, began: EntryBegan) -> AttemptResult:
        job, handler = entry.job, entry.handler
        if (
            handler is None
            or isinstance(job.payload, UndecodableJSON)
            or entry.attempt.is_cancelled()
        ):
            # No handler code runs for it: it fails (or, cancelled while claimed ahead, is
            # given back) here, without starting a child for it.
            began(entry, entry.began)
            return run_attempt(handler, job, self._progressed, entry.attempt)
        process = self._child()
        module = getattr(handler.func, "__module__", None)
        timeout = None if entry.timeout is None else entry.timeout.seconds
        # Told when the handler begins in the child: later than this thread took the job (the
        # pipe, the child's own start), and the lag that counts for a rate limit is the child's.
        told = functools.partial(began, entry)
        result = process.run(job, module, timeout, self._progressed, entry.attempt, told)
        if result is not None:
            return result
        self._forget(process)
        process.conn.close()
        took = time.monotonic() - entry.began
        if process.killed_for == "shutdown":
            return AttemptResult(took=took, error="WorkerShutdown: its process was killed.")
        self._replace()
        if process.killed_for == "timeout" and entry.timeout is not None:
            error = timeout_error(entry.timeout, hard=True)
            logger.error(
                "Job %s %s (attempt %s/%s) ran past its timeout of %s: its process was killed",
                job.job_name, job.id, job.attempt, job.max_attempts, entry.timeout.describe(),
            )  # fmt: skip
            return AttemptResult(took=took, error=error, exception=TIMEOUT_EXCEPTION)
        error = (
            f"WorkerError: the handler's process died ({process.death()}) before it finished "
            "the attempt."
        )
        logger.error("Job %s %s: %s", job.job_name, job.id, error)
        return AttemptResult(took=took, error=error)

    def worker_stopping(self) -> None:
        """The worker was asked to stop: every child's handler reads ``stopping`` true from now
        on. A store to shared memory, no lock: safe from a signal handler."""
        self._stopping.value = 1

    def open(self, slots: int) -> None:
        """One child per slot, started before the first claim, each taken by the first slot
        thread that needs one: the first jobs never wait for the forkserver's django.setup(),
        which would begin them up to seconds after their claim (a rate-limited job begins at a
        time its claim fixed: queries.rate_starts). Blocks until each has set itself up (its
        imports, its signal handlers), at most :data:`READY_WAIT` seconds."""
        spares = [self._new_child() for _ in range(slots)]
        until = time.monotonic() + READY_WAIT
        for process in spares:
            if process.wait_ready(until):
                continue
            if process.alive:
                logger.warning(
                    "%s is not set up %ss after its start; the worker claims anyway",
                    process.name, READY_WAIT,
                )  # fmt: skip
            else:  # its slot starts another when it needs one
                logger.warning("%s ended during its set-up (%s)", process.name, process.death())
        with self._lock:
            self._spares.extend(spares)

    def thread_exit(self) -> None:
        """A slot thread ends: its child goes with it."""
        process = getattr(self._local, "child", None)
        if process is not None:
            self._forget(process)
            process.stop()

    def close(self) -> None:
        """Kill every child still there: those running attempts a shutdown handed back, and
        those no slot thread took (started by open())."""
        with self._lock:
            left, self._children, self._spares = list(self._children), set(), []
        for process in left:
            if process.alive:
                process.kill("shutdown")

    def _child(self) -> ChildProcess:
        process: ChildProcess | None = getattr(self._local, "child", None)
        if process is None or not process.alive:
            process = self._spare() or self._new_child()
            self._local.child = process
        return process

    def _replace(self) -> None:
        """A new child for this slot now, before its slot is free again: its next job does not
        wait for a child to start (a rate-limited one would begin later than its claim's
        margin: queries.rate_starts)."""
        try:
            self._local.child = self._new_child()
        except Exception:
            log_exception(logger, "Starting a child process to replace one that ended failed")

    def _spare(self) -> ChildProcess | None:
        with self._lock:
            while self._spares:
                process = self._spares.pop()
                if process.alive:
                    return process
                self._children.discard(process)
        return None

    def _new_child(self) -> ChildProcess:
        with self._lock:
            self._count += 1
            name = f"{self._name}-child-{self._count}"
        process = ChildProcess(self._context, name, self._stopping)
        with self._lock:
            self._children.add(process)
        return process

    def _forget(self, process: ChildProcess) -> None:
        with self._lock:
            self._children.discard(process)
        if getattr(self._local, "child", None) is process:
            self._local.child = None
