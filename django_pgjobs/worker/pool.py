"""The threads that run a worker's handlers: a fixed pool fed by a simple queue.

Lighter than ``concurrent.futures`` (no Future, Condition and Semaphore per job, which together
were a tenth of a worker's CPU when draining short jobs) and shaped to what the worker needs:
cancelling work that has not started, waiting until every task is done, and running a clean-up
in each thread as it exits (Django's connections belong to the thread that opened them).

A task that raises never takes its thread with it: its submitter hears of it (``on_failure``: the
worker hands the job back) and the thread goes on. A thread that ends anyway, short of a
shutdown, is replaced, so the pool never shrinks while jobs are still given to it.

A task whose call does not return (a handler past its timeout) can be abandoned: Python cannot
stop a thread, so its thread is left to finish on its own, no longer counted, and a new thread
takes its place at once. When the abandoned call returns at last, its thread exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from queue import SimpleQueue

from django_pgjobs.jobs.error_text import log_exception

logger = logging.getLogger("django_pgjobs.worker")


class Task:
    """One submitted call. Its flags and ``thread`` change under the pool's lock.

    Once it has run or been cancelled its calls are dropped: a submitter that keeps its task
    (the worker's InFlight does, and the call holds the InFlight) would otherwise make a
    reference cycle of every job, which only the garbage collector frees: measured, a dozen
    objects a job, and a tenth of a drain of no-op jobs in the collector's middle generation.
    """

    __slots__ = ("abandoned", "call", "cancelled", "done", "on_failure", "started", "thread")

    def __init__(
        self, call: Callable[[], None], on_failure: Callable[[BaseException], None] | None
    ) -> None:
        self.call: Callable[[], None] | None = call
        self.on_failure = on_failure
        self.started = False
        self.cancelled = False
        self.done = False
        self.abandoned = False
        self.thread: threading.Thread | None = None  # the thread running it, once started


class HandlerPool:
    def __init__(self, size: int, *, name: str, on_thread_exit: Callable[[], None]) -> None:
        self._size = size
        self._name = name
        self._on_thread_exit = on_thread_exit
        self._queue: SimpleQueue[Task | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._abandoned: set[threading.Thread] = set()  # running an abandoned task still
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0  # submitted, neither finished nor cancelled
        self._started = 0  # threads started so far, for their names
        self._shutting_down = False

    def submit(
        self, call: Callable[[], None], *, on_failure: Callable[[BaseException], None] | None = None
    ) -> Task:
        """Run ``call`` in a thread; if it raises, ``on_failure`` gets the exception (in that
        thread) and the thread carries on."""
        (task,) = self.submit_many([(call, on_failure)])
        return task

    def submit_many(
        self, calls: Sequence[tuple[Callable[[], None], Callable[[BaseException], None] | None]]
    ) -> list[Task]:
        """:meth:`submit` for each (call, on_failure), in order, under one lock. A thread is
        started per task until the pool has its size."""
        tasks = [Task(call, on_failure) for call, on_failure in calls]
        with self._lock:
            self._unfinished += len(tasks)
            for _ in range(min(len(tasks), self._size - len(self._threads))):
                self._start_thread()
        for task in tasks:
            self._queue.put(task)
        return tasks

    def cancel(self, task: Task) -> bool:
        """Stop ``task`` from starting; False if it already started."""
        with self._lock:
            if task.started:
                return False
            if not task.cancelled:
                task.cancelled = True
                task.call = task.on_failure = None
                self._finished()
            return True

    def abandon(self, task: Task) -> bool:
        """Stop waiting for a started ``task`` whose call has not returned: it counts as
        finished, its thread is left to finish it alone (then exits) and a new thread takes its
        place. False if it has not started or has finished."""
        with self._lock:
            thread = task.thread
            if not task.started or task.done or task.abandoned or thread is None:
                return False
            task.abandoned = True
            if thread in self._threads:
                self._threads.remove(thread)
            self._abandoned.add(thread)
            self._finished()
            if not self._shutting_down and len(self._threads) < self._size:
                self._start_thread()
            return True

    @property
    def abandoned_threads(self) -> int:
        """Threads still running a task that was abandoned."""
        return len(self._abandoned)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted task has finished or been cancelled."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    @property
    def unfinished(self) -> int:
        """Tasks submitted and neither finished nor cancelled."""
        return self._unfinished

    def shutdown(self, *, wait: bool, timeout: float | None = None) -> bool:
        """Let the threads finish their current task and exit. Queued tasks still run unless
        cancelled first; ``wait=False`` returns at once (the threads are daemons), ``timeout``
        waits that long at most. True if every thread has exited."""
        with self._lock:
            self._shutting_down = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for thread in threads:
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        self._threads = []
        return wait and not any(thread.is_alive() for thread in threads)

    def _start_thread(self) -> None:
        # Called with the lock held.
        thread = threading.Thread(
            target=self._loop, name=f"{self._name}-{self._started}", daemon=True
        )
        self._started += 1
        self._threads.append(thread)
        thread.start()

    def _finished(self) -> None:
        # Called with the lock held.
        self._unfinished -= 1
        if self._unfinished == 0:
            self._idle.notify_all()

    def _loop(self) -> None:
        stopped = False
        try:
            while (task := self._queue.get()) is not None:
                with self._lock:
                    if task.cancelled:
                        continue
                    task.started = True
                    task.thread = threading.current_thread()
                try:
                    self._run(task)
                finally:
                    with self._lock:
                        task.done = True
                        task.call = task.on_failure = None
                        if not task.abandoned:
                            self._finished()
                if task.abandoned:
                    break  # another thread has its place already
            stopped = True
        finally:
            self._exited(replace=not stopped)

    def _run(self, task: Task) -> None:
        try:
            if task.call is not None:
                task.call()
        except BaseException as exc:
            # The worker's calls report their own errors; this is the last resort. The
            # submitter hears first (a log line could fail: see log_exception).
            if task.on_failure is not None:
                try:
                    task.on_failure(exc)
                except BaseException:
                    log_exception(logger, "The failure handler of a task of %s raised", self._name)
            log_exception(logger, "A task of %s raised", self._name)

    def _exited(self, *, replace: bool) -> None:
        """A thread ends: it closes what it kept open and, if it ended before a shutdown asked
        it to (an error got past every guard), a new thread takes its place."""
        try:
            self._on_thread_exit()
        except BaseException:
            log_exception(logger, "Cleaning up a thread of %s failed", self._name)
        with self._lock:
            thread = threading.current_thread()
            self._abandoned.discard(thread)
            if thread in self._threads:
                self._threads.remove(thread)
            if replace and not self._shutting_down:
                logger.error("A thread of %s ended unexpectedly; starting another", self._name)
                self._start_thread()
