"""Job ids: UUIDs of version 7, each later than the one before in this process."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from django_pgjobs.jobs.ids import new_job_id, new_job_ids


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
