"""Under flow control the worker writes its successes just before it claims (worker.completer),
each in a transaction of its own, so the claim's counts see them. A completion can be skipped:
another claim of the queue holds the row (its FOR UPDATE locked the newest version of a row its
older snapshot saw pending, and the recheck rejected it). The attempt then still runs, and the
claim after it must count it: its slot is not handed on until the completion is written."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from django_pgjobs import enqueue_many, get_job
from django_pgjobs.queries import complete_jobs
from django_pgjobs.queues import set_queue_limits
from tests.helpers import second_connection, wait_for
from tests.queries.test_flow import claim, waiting_on_a_lock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "limits", [{"concurrency": 2}, {"worker_concurrency": 2}], ids=["queue", "worker"]
)
def test_a_completion_skipped_before_the_claim_is_still_counted(limits: dict[str, Any]) -> None:
    set_queue_limits("q", **limits)
    enqueue_many("test.record", [{}] * 10, queue="q")
    first = second_connection(autocommit=False)
    second = second_connection(autocommit=False)
    completing = second_connection()
    try:
        mine = claim(first.cursor(), limit=1, worker="w")
        got: list[Any] = []
        waiting = threading.Thread(
            target=lambda: got.append(claim(second.cursor(), limit=1, worker="w"))
        )
        waiting.start()
        wait_for(
            lambda: waiting_on_a_lock(second.info.backend_pid), what="the second claim to wait"
        )
        first.commit()
        waiting.join(timeout=10)
        assert len(got[0]) == 1  # 2 running now; ``second`` still holds the lock on mine's row
        # The worker's order: its successes, then its claim, which waits for ``second``'s lock.
        assert complete_jobs(completing.cursor(), tokens=[mine[0].token]) == []  # skipped
        result: list[Any] = []
        t = threading.Thread(
            target=lambda: result.append(claim(completing.cursor(), limit=1, worker="w"))
        )
        t.start()
        wait_for(lambda: waiting_on_a_lock(completing.info.backend_pid), what="the queue's lock")
        second.commit()
        t.join(timeout=10)
        assert result == [[]]  # mine still runs, and counts: 2 running, no room
        assert get_job(mine[0].id).status == "running"
        # Written again once the row is free (the completer keeps it): its slot is handed on.
        assert complete_jobs(completing.cursor(), tokens=[mine[0].token]) == [mine[0].token]
        assert len(claim(completing.cursor(), limit=1, worker="w")) == 1
    finally:
        first.close()
        second.close()
        completing.close()
