"""The threads that run a worker's handlers: a fixed pool fed by a simple queue.

Lighter than ``concurrent.futures`` (no Future, Condition and Semaphore per job, which together
were a tenth of a worker's CPU when draining short jobs) and shaped to what the worker needs:
cancelling work that has not started, waiting until every task is done, and running a clean-up
in each thread as it exits (Django's connections belong to the thread that opened them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from queue import SimpleQueue

logger = logging.getLogger("django_pgjobs.worker")


class Task:
    """One submitted call. ``started`` and ``cancelled`` change under the pool's lock."""

    __slots__ = ("call", "cancelled", "started")

    def __init__(self, call: Callable[[], None]) -> None:
        self.call = call
        self.started = False
        self.cancelled = False


class HandlerPool:
    def __init__(self, size: int, *, name: str, on_thread_exit: Callable[[], None]) -> None:
        self._size = size
        self._name = name
        self._on_thread_exit = on_thread_exit
        self._queue: SimpleQueue[Task | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0  # submitted, neither finished nor cancelled

    def submit(self, call: Callable[[], None]) -> Task:
        task = Task(call)
        with self._lock:
            self._unfinished += 1
            if len(self._threads) < self._size:
                self._start_thread()
        self._queue.put(task)
        return task

    def cancel(self, task: Task) -> bool:
        """Stop ``task`` from starting; False if it already started."""
        with self._lock:
            if task.started:
                return False
            if not task.cancelled:
                task.cancelled = True
                self._finished()
            return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted task has finished or been cancelled."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    def shutdown(self, *, wait: bool) -> None:
        """Let the threads finish their current task and exit. Queued tasks still run unless
        cancelled first; ``wait=False`` returns at once (the threads are daemons)."""
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
        self._threads = []

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._loop, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _finished(self) -> None:
        # Called with the lock held.
        self._unfinished -= 1
        if self._unfinished == 0:
            self._idle.notify_all()

    def _loop(self) -> None:
        try:
            while (task := self._queue.get()) is not None:
                with self._lock:
                    if task.cancelled:
                        continue
                    task.started = True
                try:
                    task.call()
                except BaseException:
                    # The worker's calls report their own errors; this is a last resort that
                    # keeps the thread alive.
                    logger.exception("A task of %s raised", self._name)
                finally:
                    with self._lock:
                        self._finished()
        finally:
            self._on_thread_exit()
