"""When an idle worker's next job is due: the earliest pending job it could run, over every
priority, passing over paused queues' jobs and jobs of queues or handlers it does not serve."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from django_pgjobs import enqueue, queries
from django_pgjobs.observability import dashboard
from django_pgjobs.queues import pause_queue
from tests.queries.test_claim_plan import entries_read

pytestmark = pytest.mark.django_db(transaction=True)


def next_due(
    queues: Sequence[str] | None = None, job_names: Sequence[str] | None = ("test.record",)
) -> float | None:
    with connection.cursor() as cur:
        return queries.seconds_until_next_due(cur, queues=queues, job_names=job_names)


def test_nothing_pending_is_none() -> None:
    assert next_due() is None


def test_the_earliest_job_of_any_priority_is_next() -> None:
    enqueue("test.record", scheduled_for=timedelta(seconds=300), priority=10)
    enqueue("test.record", scheduled_for=timedelta(seconds=100), priority=-5)
    enqueue("test.record", scheduled_for=timedelta(seconds=200), priority=0)
    assert 95 < (next_due() or 0) <= 100
    enqueue("test.record", scheduled_for=timedelta(seconds=0), priority=3)
    assert next_due() == 0.0


def test_jobs_of_paused_queues_and_of_others_are_passed_over() -> None:
    enqueue("test.record", queue="held", scheduled_for=timedelta(seconds=0))
    enqueue("test.record", queue="other", scheduled_for=timedelta(seconds=10))
    enqueue(
        "test.fail", queue="mine", scheduled_for=timedelta(seconds=20)
    )  # a handler this worker does not have
    enqueue("test.record", queue="mine", scheduled_for=timedelta(seconds=30))
    pause_queue("held")
    assert 5 < (next_due() or 0) <= 10
    assert 25 < (next_due(queues=["mine"]) or 0) <= 30
    assert 25 < (next_due(queues=["mine", "held"]) or 0) <= 30
    assert next_due(queues=["held"]) is None
    assert 15 < (next_due(queues=["mine"], job_names=None) or 0) <= 20


@pytest.fixture(params=[True, False], ids=["stale-statistics", "fresh-statistics"])
def stale(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def burst(stale: bool, sql: str) -> None:
    """20,000 finished jobs, then ``sql``'s burst: analyzed before it (statistics that expect
    no pending job) or after it."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, attempt, completed_at) "
            "SELECT 'test.record', 'default', 'completed', 1, now() FROM generate_series(1, 20000)"
        )
        if stale:
            cur.execute("ANALYZE pgjobs_job_queue")
        cur.execute(sql)
        if not stale:
            cur.execute("ANALYZE pgjobs_job_queue")


def statement_of(call: Any) -> tuple[str, dict[str, Any]]:
    """The statement ``call(cursor)`` would run, and its parameters."""
    sent: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def execute(self, sql: str, params: dict[str, Any]) -> None:
            sent.append((sql, params))

        def fetchone(self) -> tuple[None]:
            return (None,)

    call(Recorder())
    return sent[0]


def test_the_look_up_reads_an_entry_a_priority_whatever_the_statistics(stale: bool) -> None:
    """100,000 reminders an hour ahead over 50 priorities: min() over each priority's first
    NEXT_DUE_SCAN jobs read them all (a bitmap scan and a sort each, with fresh statistics:
    120,000 entries, 160 ms after every claim that came back short, as reviewed)."""
    burst(
        stale,
        "INSERT INTO pgjobs_job_queue (job_name, queue, priority, scheduled_for) "
        "SELECT 'test.record', 'default', (g % 50)::smallint, "
        "now() + interval '1 hour' + g * interval '1 ms' FROM generate_series(1, 100000) AS g",
    )
    sql, params = statement_of(
        lambda cur: queries.seconds_until_next_due(cur, queues=None, job_names=["test.record"])
    )
    # Per priority: the walk's descent and the first job (50 each), and the paused queues.
    assert entries_read(sql, params) <= 3 * 50, (sql, params)


def test_the_dashboard_reads_the_window_not_an_old_backlog(stale: bool) -> None:
    """A backlog created and due three hours ago is outside the 60-minute window: neither
    branch of the due arrivals reads it (a value from a CTE bounded no index scan, and a
    flattened subquery read every pending job: 100,000 entries here), counting the rows a
    scan read and filtered out (with statistics from before the burst, the jobs created in
    the window were read by a sequential scan of all 120,000)."""
    burst(
        stale,
        "INSERT INTO pgjobs_job_queue (job_name, queue, priority, created_at, scheduled_for) "
        "SELECT 'test.record', 'held', (g % 3)::smallint, now() - interval '3 hours', "
        "now() - interval '3 hours' FROM generate_series(1, 100000) AS g",
    )
    read = entries_read(
        dashboard._PER_MINUTE,
        {"window": dashboard.WINDOW_MINUTES},
        filtered=True,
        settings=dashboard.PER_MINUTE_SETTINGS,
    )
    # The 20,000 jobs completed in the window, as completions; the branch of jobs due before the
    # window and created in it reads pending jobs only (pgjobs_job_pending_created): none here.
    assert read <= 20_010, read
