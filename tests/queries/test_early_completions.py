"""complete_and_claim writes its completions before the queue's lock, so one can be skipped:
another claim of the queue holds the row (its FOR UPDATE locked the newest version of a row its
older snapshot saw pending, and the recheck rejected it). The counts must not then hand that
attempt's slot on: they subtract nothing, and see what the completions wrote."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from django_pgjobs import enqueue_many
from django_pgjobs.queries import FlowHint
from django_pgjobs.queries.claim import complete_and_claim
from django_pgjobs.queues import set_queue_limits
from tests.helpers import second_connection, wait_for
from tests.queries.test_flow import claim, waiting_on_a_lock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "limits", [{"concurrency": 2}, {"worker_concurrency": 2}], ids=["queue", "worker"]
)
def test_a_completion_skipped_before_the_lock_is_still_counted(limits: dict[str, Any]) -> None:
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
        result: list[Any] = []
        t = threading.Thread(
            target=lambda: result.append(
                complete_and_claim(
                    completing.cursor(),
                    tokens=[mine[0].token],
                    worker_id="w",
                    limit=1,
                    lease_seconds=60,
                    queues=None,
                    job_names=None,
                    hint=FlowHint(restricted=True),
                )
            )
        )
        t.start()
        wait_for(lambda: waiting_on_a_lock(completing.info.backend_pid), what="the queue's lock")
        second.commit()
        t.join(timeout=10)
        completed, claimed = result[0]
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pgjobs_job_queue WHERE status = 'running'")
            running = cur.fetchone()[0]
        # The completion may have been skipped (``second`` held the row), but then its row still
        # runs and its slot is not handed on.
        assert running <= 2, (completed, len(claimed))
    finally:
        first.close()
        second.close()
        completing.close()
