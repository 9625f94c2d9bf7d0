"""Job ids: UUIDs of version 7, each later than the one before in this process."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta

import pytest

from django_pgjobs.jobs import ids
from django_pgjobs.jobs.ids import earliest_id, new_job_id, new_job_ids


def test_an_id_is_a_version_7_uuid_of_now() -> None:
    before = time.time_ns() // 1_000_000
    made = new_job_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after + 1


def test_ids_grow_and_never_repeat() -> None:
    made = new_job_ids(20_000)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_they_grow_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_job_id()
    monkeypatch.setattr(time, "time_ns", lambda: 1_000_000_000)  # 1970
    assert new_job_id() > first


def test_threads_share_one_order() -> None:
    made: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(mine: list[uuid.UUID]) -> None:
        for _ in range(5_000):
            mine.append(new_job_id())

    threads = [threading.Thread(target=make, args=(m,)) for m in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(m == sorted(m) for m in made)
    assert len({i for m in made for i in m}) == 20_000


def test_a_child_forked_while_the_lock_is_held_makes_ids() -> None:
    """Forked while another thread of the parent held the lock, the child would have waited for
    it for ever (a review's finding: a worker's child processes enqueue too)."""
    before = new_job_id()
    with ids._lock, warnings.catch_warnings():
        # Python 3.12 warns of a fork while other threads run (earlier tests may leave some):
        # forking like that is what this test is about.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
        if pid == 0:  # the child: exits 0 if it makes an id later than the parent's
            signal.alarm(5)  # else SIGALRM ends it
            os._exit(0 if new_job_id() > before else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_earliest_id_of_a_time_bounds_the_ids_made_from_then_on() -> None:
    at = datetime.now(UTC)
    floor = earliest_id(at)
    assert floor.version == 7 and floor.variant == uuid.RFC_4122
    made = new_job_id()
    assert floor <= made
    # An id of the millisecond before is below it; one of the same millisecond is not.
    ms = floor.int >> 80
    assert earliest_id(at - timedelta(milliseconds=1)) < floor
    assert uuid.UUID(int=(ms - 1) << 80 | (floor.int & ((1 << 80) - 1)) | 0xFFFF) < floor
    assert earliest_id(datetime.fromtimestamp(ms / 1000, UTC)) == floor
    # Before 1970 it is the smallest id of all.
    assert earliest_id(datetime(1969, 1, 1, tzinfo=UTC)).int >> 80 == 0
