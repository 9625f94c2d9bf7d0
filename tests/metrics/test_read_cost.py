"""What a read of the database gauges costs, in index entries of pgjobs_job_queue (as
EXPLAIN ANALYZE counts them), never in time: a queue's count reads at most COUNT_CAP due and
COUNT_CAP scheduled entries however its jobs spread over priorities, plus one descent per
priority for the walk and for its oldest job."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection

from django_pgjobs.metrics import readings, statements
from django_pgjobs.metrics.readings import read_figures
from tests.metrics.scrapes import scrape_command

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 50
PRIORITIES = 100


def pending(queue: str, *, priorities: int, each: int, later: bool = False) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, priority, scheduled_for) "
            "SELECT 'test.record', %s, (i %% %s - 50)::smallint, now() + %s * interval '1 hour' "
            "FROM generate_series(0, %s - 1) AS i",
            [queue, priorities, 1 if later else 0, priorities * each],
        )


def statistics_before_the_burst() -> None:
    """Statistics taken while the table held only finished jobs, as before a burst: PostgreSQL
    expects one pending row. The counts must read the claim's index all the same (before
    migration 0023 they read an index on scheduled_for alone, every pending entry per
    priority: 515,200 here)."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, attempt, completed_at) "
            "SELECT 'test.record', 'done', 'completed', 1, now() FROM generate_series(1, 5000)"
        )
        cur.execute("ANALYZE pgjobs_job_queue")


def claim_index_entries_read() -> int:
    """Index entries of pgjobs_job_queue that _PENDING's scans returned, summed (the planner
    reads the claim's index or the partition claim's, which leads with the same columns)."""
    params = {
        "cap": CAP, "series": readings.MAX_SERIES, "pairs": readings.MAX_PAIRS,
        "priorities": readings.PRIORITIES_PER_QUEUE,
    }  # fmt: skip
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statements.PENDING, params)
        (plan,) = cur.fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def entries(node: dict[str, Any]) -> int:
        own = 0
        if node.get("Relation Name") == "pgjobs_job_queue":
            own = round(node["Actual Rows"] * node["Actual Loops"])
        return own + sum(entries(child) for child in node.get("Plans", []))

    return entries(plan[0]["Plan"])


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readings, "COUNT_CAP", CAP)


@pytest.mark.usefixtures("small_cap")
def test_a_queue_over_many_priorities_reads_the_cap_not_the_cap_per_priority() -> None:
    # 100 priorities of 50 due and 50 scheduled jobs each: counted one priority at a time up to
    # the cap each, that was 10,000 entries for a count that stops at 50.
    statistics_before_the_burst()
    pending("wide", priorities=PRIORITIES, each=CAP)
    pending("wide", priorities=PRIORITIES, each=CAP, later=True)
    read = claim_index_entries_read()
    # The due and the scheduled budget, then per priority: the walk's descent, its oldest, and
    # for the first ones the count that fills the budget stopping on one entry of the next.
    assert read <= 2 * CAP + 3 * PRIORITIES, read
    scrape = scrape_command()
    assert scrape("pgjobs_jobs", queue="wide", state="due") == CAP
    assert scrape("pgjobs_jobs", queue="wide", state="scheduled") == CAP
    assert scrape("pgjobs_oldest_due_job_age_seconds", queue="wide") is not None


@pytest.mark.usefixtures("small_cap")
def test_a_due_job_at_the_lowest_priority_is_counted_behind_a_full_scheduled_count() -> None:
    # The budget of due jobs is not spent by scheduled ones: the queue's only due job, at its
    # lowest priority, is counted and its age read.
    pending("late", priorities=PRIORITIES, each=CAP, later=True)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, priority, scheduled_for) "
            "VALUES ('test.record', 'late', -100, now() - interval '1 hour')"
        )
    scrape = scrape_command()
    assert scrape("pgjobs_jobs", queue="late", state="due") == 1
    assert scrape("pgjobs_jobs", queue="late", state="scheduled") == CAP
    assert scrape("pgjobs_oldest_due_job_age_seconds", queue="late") >= 3600  # type: ignore[operator]


def running(queue: str, count: int) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, attempt, locked_by, "
            "lease_token, lease_expires_at) SELECT 'test.record', %s, 'running', 1, 'w1', "
            "gen_random_uuid(), now() + interval '1 hour' FROM generate_series(1, %s)",
            [queue, count],
        )


@pytest.mark.usefixtures("small_cap")
def test_each_queues_running_count_stops_at_the_cap_of_its_own() -> None:
    """A cap over every queue's running jobs at once counted the first queue's and cut the
    others short (10,000 in all: 9,000 and 1,000 for 9,000 and 3,000, as reviewed)."""
    running("a-big", 3 * CAP)
    running("b-small", CAP // 2)
    readings = read_figures()
    assert {n: q.running for n, q in readings.queues.items()} == {"a-big": CAP, "b-small": CAP // 2}
    assert "pgjobs_jobs" in readings.truncated  # a-big's count stopped at the cap


def test_the_queues_of_finished_jobs_are_read_from_the_newest_finished_only() -> None:
    """A drained queue keeps its series through the jobs that finished last: the newest cap of
    them by pgjobs_job_finished, never every finished row (a table of millions of them)."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, attempt, completed_at) "
            "SELECT 'test.record', 'q' || (i % 7), 'completed', 1, "
            "now() - i * interval '1 second' FROM generate_series(1, 5000) AS i"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statements.FINISHED_QUEUES, {"cap": CAP})
        (plan,) = cur.fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    scans: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == "pgjobs_job_queue":
            scans.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    assert [(s["Node Type"], s.get("Index Name")) for s in scans] == [
        ("Index Scan", "pgjobs_job_finished")
    ], scans
    assert scans[0]["Actual Rows"] * scans[0]["Actual Loops"] <= CAP
