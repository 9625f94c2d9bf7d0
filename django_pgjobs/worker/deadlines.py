"""When the loop must next look for attempts running past their timeout, and which those are.

An attempt's clock starts when its handler begins (a job claimed ahead waits for a thread
without using its time), and the handler thread records that moment; the loop decides. So the
loop needs to look only when some deadline may have passed: it keeps one time, the earliest
any held attempt could time out (a started one's deadline; for one not started yet, now plus
its timeout, since it cannot start earlier), and scans its attempts only once that time has come.
A busy worker with the default one-hour timeout scans about once an hour, not once a loop.
"""

from __future__ import annotations

from collections.abc import Iterable

from django_pgjobs.worker.inflight import InFlight


class Deadlines:
    def __init__(self) -> None:
        self._next_check: float | None = None  # monotonic; None: no held attempt has a timeout

    def dispatched(self, entry: InFlight, *, now: float) -> None:
        """A new attempt is held: it cannot time out before ``now`` plus its timeout."""
        if entry.timeout is not None:
            self._look_by(now + entry.timeout.seconds)

    def seconds_until_check(self, *, now: float) -> float | None:
        """How long the loop may wait before it must look (0: now); None: no need to."""
        return None if self._next_check is None else max(self._next_check - now, 0.0)

    def expired(self, held: Iterable[InFlight], *, now: float) -> list[InFlight]:
        """The attempts in ``held`` whose handler has run past its deadline, once a check is due
        (else none), and when the next check is due."""
        if self._next_check is None or now < self._next_check:
            return []
        self._next_check = None
        expired = []
        for entry in held:
            if entry.timeout is None or entry.reported or entry.timed_out:
                continue
            # ``started`` is set after ``deadline`` by the handler thread: read it first.
            deadline = entry.deadline if entry.started else None
            if deadline is None:
                self._look_by(now + entry.timeout.seconds)
            elif deadline <= now:
                expired.append(entry)
            else:
                self._look_by(deadline)
        return expired

    def _look_by(self, when: float) -> None:
        if self._next_check is None or when < self._next_check:
            self._next_check = when
