"""What the flow-controlled claim counts (migration 0021): the queue's totals its limits need, and
per key only the keys its walk reaches; exact all the same, with real concurrent connections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.queries.claim import claim_statement
from django_pgjobs.queues import set_queue_limits
from tests.helpers import second_connection
from tests.queries.test_flow import claim

pytestmark = pytest.mark.django_db(transaction=True)

BUSY = 5000  # keys outside the walk: no due job, each running or started in the window


def busy_keys(*, running: bool, started: bool, count: int = BUSY) -> None:
    """``count`` keys of queue q, sorted after every key the tests enqueue, with no due job:
    the claim's walk never reaches them, but they hold running jobs and starts."""
    with connection.cursor() as cur:
        if running:
            cur.execute(
                "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key, status, attempt, "
                "locked_by, locked_at, lease_expires_at, lease_token) "
                "SELECT 'test.record', 'q', 'z' || g, 'running', 1, 'other', now(), "
                "now() + interval '1 hour', gen_random_uuid() FROM generate_series(1, %s) AS g",
                [count],
            )
        if started:
            cur.execute(
                "INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs) "
                "SELECT 'q', 'z' || g, now(), 1 FROM generate_series(1, %s) AS g",
                [count],
            )
        cur.execute("ANALYZE pgjobs_job_queue")
        cur.execute("ANALYZE pgjobs_queue_starts")


def test_walked_keys_keep_their_own_limits_among_busy_keys_outside_the_walk() -> None:
    set_queue_limits("q", partition_concurrency=1, partition_rate_limit=2, rate_period=60)
    busy_keys(running=True, started=True)
    with transaction.atomic():
        for key in ("a", "a", "b", "b", "c", "c"):
            enqueue("test.record", {}, queue="q", partition_key=key)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs) "
            "VALUES ('q', 'b', now(), 2)"
        )
        first = claim(cur)
        # a and c run one each (b started twice in the window); the 5,000 busy keys are not
        # walked, and neither their running jobs nor their starts hold a or c back.
        assert Counter(j.partition_key for j in first) == {"a": 1, "c": 1}
        assert claim(cur) == []  # a and c run their one job each; b still at its rate
        cur.execute("UPDATE pgjobs_job_queue SET status = 'completed', completed_at = now() "
                    "WHERE partition_key IN ('a', 'c') AND status = 'running'")  # fmt: skip
        # Each started once in the window: one more each, then their rate is spent.
        assert Counter(j.partition_key for j in claim(cur)) == {"a": 1, "c": 1}


def test_queue_totals_count_the_keys_outside_the_walk() -> None:
    """``concurrency`` and ``rate_limit`` are the queue's: every key's running jobs and starts
    count, walked or not."""
    set_queue_limits("q", concurrency=BUSY + 2, partition_concurrency=5)
    busy_keys(running=True, started=False)
    enqueue_many("test.record", [{}] * 5, queue="q", partition_key="a")
    with connection.cursor() as cur:
        assert len(claim(cur)) == 2
        set_queue_limits("q", rate_limit=BUSY + 3, rate_period=60, partition_concurrency=5)
        cur.execute("UPDATE pgjobs_job_queue SET status = 'completed', completed_at = now() "
                    "WHERE status = 'running'")  # fmt: skip
        busy_keys(running=False, started=True)
        # BUSY starts of other keys, 2 of a's: room for one more start.
        cur.execute(
            "INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs) "
            "VALUES ('q', 'a', now(), 2)"
        )
        assert len(claim(cur)) == 1


def test_the_unkeyed_partition_counts_its_own_running_jobs() -> None:
    set_queue_limits("q", partition_concurrency=1)
    busy_keys(running=True, started=False)
    enqueue_many("test.record", [{}] * 2, queue="q")
    enqueue_many("test.record", [{}] * 2, queue="q", partition_key="a")
    with connection.cursor() as cur:
        assert Counter(j.partition_key for j in claim(cur)) == {None: 1, "a": 1}
        assert claim(cur) == []


def test_worker_concurrency_counts_this_worker_among_many_running_jobs() -> None:
    set_queue_limits("q", worker_concurrency=2)
    busy_keys(running=True, started=False)  # another worker's
    enqueue_many("test.record", [{}] * 5, queue="q")
    with connection.cursor() as cur:
        assert len(claim(cur, worker="here")) == 2
        assert claim(cur, worker="here") == []


@pytest.fixture
def nested_plans() -> Iterator[tuple[psycopg.Connection[Any], list[str]]]:
    """A connection whose statements' plans, and those of the statements inside functions they
    call, come back as notices (auto_explain with ANALYZE): what the claim's counts really read."""
    conn = second_connection()
    plans: list[str] = []
    conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    try:
        conn.execute("LOAD 'auto_explain'")
    except psycopg.errors.InsufficientPrivilege:
        conn.close()
        pytest.skip("LOAD 'auto_explain' needs a superuser on this server")
    for setting, value in (
        ("log_min_duration", "0"),
        ("log_nested_statements", "on"),
        ("log_analyze", "on"),
        ("log_level", "notice"),
    ):
        conn.execute("SELECT set_config(%s, %s, false)", [f"auto_explain.{setting}", value])
    try:
        yield conn, plans
    finally:
        conn.close()


def test_the_counts_read_the_walked_keys_through_their_indexes(
    nested_plans: tuple[psycopg.Connection[Any], list[str]],
) -> None:
    conn, plans = nested_plans
    set_queue_limits(
        "q",
        concurrency=BUSY * 2,
        worker_concurrency=10,
        partition_concurrency=1,
        partition_rate_limit=1,
        rate_period=60,
    )
    busy_keys(running=True, started=True)
    with transaction.atomic():
        for key in ("a", "b", "c"):
            enqueue("test.record", {}, queue="q", partition_key=key)
    with connection.cursor() as cur:
        cur.execute("ANALYZE pgjobs_job_queue")
    sql, params = claim_statement(
        worker_id="here", limit=10, lease_seconds=60, queues=["q"], job_names=None, flow=True
    )
    with conn.transaction():
        rows = conn.execute(sql, params).fetchall()
        read = conn.execute(
            "SELECT seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables "
            "WHERE relname = 'pgjobs_queue_starts'"
        ).fetchone()
    assert sorted(r[9] for r in rows if r[0] == "claimed") == ["a", "b", "c"]
    counts = [p for p in plans if "Query Text: SELECT count(*)" in p or "sum(s.jobs)" in p]
    key_starts = [p for p in counts if "s.partition_key = $2" in p]
    key_running = [p for p in counts if "j.partition_key = $2" in p]
    here = [p for p in counts if "j.locked_by = $2" in p]
    assert len(key_starts) == 3 and len(key_running) == 3, plans  # a, b and c: not 5,000 keys
    assert all("pgjobs_queue_starts_key" in p for p in key_starts), key_starts
    assert all("pgjobs_job_running" in p for p in key_running), key_running
    assert here and all("pgjobs_job_running_worker" in p for p in here), here
    # (The queue's own running count reads up to `concurrency` rows, however it likes.)
    narrow = key_starts + key_running + here
    assert not any("Seq Scan" in p.split("SubPlan")[0] for p in narrow), narrow
    # The starts read: the queue's own window (up to its rate limit, which it has none of) and
    # a, b and c's, none of the 5,000 other keys' rows.
    assert read is not None and read[0] == 0 and read[1] == 0, read


def test_the_next_rate_room_reads_the_first_start_of_each_window() -> None:
    """A worker whose due jobs a rate holds back asks when the earliest start leaves its
    window: the first entry of the window's index, not the 5,000 starts in it."""
    from django_pgjobs.queries import seconds_until_rate_room

    set_queue_limits("q", partition_rate_limit=1, rate_period=3600)
    set_queue_limits("other", concurrency=5)  # no rate: a leftover start holds nothing back
    set_queue_limits("idle", rate_limit=1, rate_period=60)  # no due job: nothing held back
    enqueue("test.record", queue="q", partition_key="z1")
    enqueue("test.record", queue="idle", scheduled_for=timedelta(hours=1))
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs) "
            "SELECT 'q', 'z' || g, now() - interval '10 minutes' + g * interval '1 ms', 1 "
            "FROM generate_series(1, %s) AS g",
            [BUSY],
        )
        cur.execute(
            "INSERT INTO pgjobs_queue_starts (queue, started_at, jobs) "
            "VALUES ('other', now(), 1), ('idle', now(), 1)"
        )
        cur.execute("ANALYZE pgjobs_queue_starts")
    with second_connection(autocommit=False) as conn:
        seconds = seconds_until_rate_room(conn.cursor(), queues=None)
        read = conn.execute(
            "SELECT seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables "
            "WHERE relname = 'pgjobs_queue_starts'"
        ).fetchone()
    assert seconds is not None and 2990 < seconds <= 3000  # the first start, 50 minutes on
    assert read is not None and read[0] == 0 and read[1] <= 1, read
