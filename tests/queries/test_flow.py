"""The flow-controlled claim, statement by statement, with real concurrent connections."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from django_pgjobs import enqueue, enqueue_many, queries
from django_pgjobs.queries.base import ClaimedJob
from django_pgjobs.queries.claim import claim_jobs, claim_statement
from django_pgjobs.queries.flow import LOCK_CLASS
from django_pgjobs.queues import pause_queue, set_queue_limits
from tests.helpers import second_connection, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def claim(cur: Any, limit: int = 100, worker: str = "w", **kw: Any) -> list[ClaimedJob]:
    return claim_jobs(
        cur, worker_id=worker, limit=limit, lease_seconds=60, queues=kw.pop("queues", None),
        job_names=kw.pop("job_names", None), **kw,
    )  # fmt: skip


def waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cur.fetchone()
    return bool(row and row[0])


def test_two_claims_at_once_never_take_more_than_the_limit() -> None:
    """The first claim holds the queue's lock until it commits; the second, waiting for it,
    then counts what the first took (its own snapshot is older than that commit)."""
    set_queue_limits("q", concurrency=5)
    enqueue_many("test.record", [{}] * 20, queue="q")
    first = second_connection(autocommit=False)
    second = second_connection()
    try:
        taken_first = claim(first.cursor(), limit=3)
        got: list[list[ClaimedJob]] = []
        waiting = threading.Thread(target=lambda: got.append(claim(second.cursor(), limit=10)))
        waiting.start()
        # The second claim is waiting for the queue's lock (the assertion holds either way).
        pid = second.info.backend_pid
        wait_for(lambda: waiting_on_a_lock(pid), what="the second claim to wait for the lock")
        first.commit()
        waiting.join(timeout=10)
        assert len(taken_first) == 3
        assert len(got[0]) == 2  # 5 - 3, not 5
    finally:
        first.close()
        second.close()


def test_a_paused_queue_gives_nothing_and_others_go_on() -> None:
    pause_queue("held")
    enqueue_many("test.record", [{}] * 3, queue="held")
    enqueue_many("test.record", [{}] * 3, queue="open")
    with connection.cursor() as cur:
        assert Counter(j.queue for j in claim(cur)) == {"open": 3}


def test_worker_concurrency_counts_only_that_worker() -> None:
    set_queue_limits("q", worker_concurrency=2)
    enqueue_many("test.record", [{}] * 10, queue="q")
    with connection.cursor() as cur:
        assert len(claim(cur, worker="a")) == 2
        assert len(claim(cur, worker="a")) == 0
        assert len(claim(cur, worker="b")) == 2


def test_a_partition_rate_limit_counts_each_key() -> None:
    set_queue_limits("q", partition_rate_limit=2, rate_period=60)
    with transaction.atomic():
        for n in range(12):
            enqueue("test.record", {}, queue="q", partition_key=f"k{n % 3}")
    with connection.cursor() as cur:
        first = claim(cur)
        assert Counter(j.partition_key for j in first) == {"k0": 2, "k1": 2, "k2": 2}
        # Finished or not, a start counts for the whole window.
        cur.execute("UPDATE pgjobs_job_queue SET status = 'completed' WHERE status = 'running'")
        assert claim(cur) == []


def test_taking_turns_lets_a_small_tenant_start_before_a_big_backlog() -> None:
    set_queue_limits("q", fair=True)
    enqueue_many("test.record", [{}] * 50, queue="q", partition_key="big")
    enqueue_many("test.record", [{}] * 3, queue="q", partition_key="small")
    with connection.cursor() as cur:
        jobs = claim(cur, limit=6)
    assert Counter(j.partition_key for j in jobs) == {"big": 3, "small": 3}
    # Started in turns: big, small, big, small ... (the claim's order is the start order).
    assert [j.partition_key for j in jobs[:2]] == ["big", "small"]


def test_without_turns_the_oldest_jobs_go_first() -> None:
    set_queue_limits("q", concurrency=100)
    enqueue_many("test.record", [{}] * 50, queue="q", partition_key="big")
    enqueue_many("test.record", [{}] * 3, queue="q", partition_key="small")
    with connection.cursor() as cur:
        assert Counter(j.partition_key for j in claim(cur, limit=6)) == {"big": 6}


def test_a_key_waits_behind_a_job_this_worker_cannot_run() -> None:
    """Per-key order: if the head of a key has no handler here, its later jobs wait too."""
    set_queue_limits("q", partition_concurrency=5)
    with transaction.atomic():
        enqueue("elsewhere.only", {}, queue="q", partition_key="a")
        enqueue("test.record", {}, queue="q", partition_key="a")
        enqueue("test.record", {}, queue="q", partition_key="b")
    with connection.cursor() as cur:
        jobs = claim(cur, job_names=["test.record"])
    assert [j.partition_key for j in jobs] == ["b"]


def test_unkeyed_jobs_of_a_partitioned_queue_are_one_partition() -> None:
    set_queue_limits("q", partition_concurrency=1)
    enqueue_many("test.record", [{}] * 3, queue="q")
    with connection.cursor() as cur:
        assert len(claim(cur)) == 1


def test_a_rate_limit_spans_claims_of_other_workers() -> None:
    set_queue_limits("q", rate_limit=4, rate_period=60)
    enqueue_many("test.record", [{}] * 10, queue="q")
    other = second_connection()
    try:
        assert len(claim(other.cursor(), worker="a", limit=3)) == 3
        with connection.cursor() as cur:
            assert len(claim(cur, worker="b")) == 1
    finally:
        other.close()


@pytest.mark.parametrize("queues", [None, ["q", "other"]], ids=["all queues", "two queues"])
def test_the_flow_claim_reads_its_indexes_not_the_table(queues: list[str] | None) -> None:
    set_queue_limits("q", partition_concurrency=1)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key) "
            "SELECT 'test.record', CASE WHEN n % 4 = 0 THEN 'other' ELSE 'q' END, "
            "'k' || (n % 500) FROM generate_series(1, 20000) AS n"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        sql, params = claim_statement(
            worker_id="w",
            limit=50,
            lease_seconds=30,
            queues=queues,
            job_names=["test.record"],
            flow=True,
        )
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert "Seq Scan on pgjobs_job_queue" not in plan, plan
    assert "pgjobs_job_partition_claim" in plan, plan  # the keys and each key's jobs
    assert "pgjobs_job_queue_claim" in plan, plan  # the open queue's jobs


def test_a_worker_learns_that_flow_control_applies_and_that_it_no_longer_does() -> None:
    """The plain statement never claims from restricted queues; its hint sends the worker's
    next claims to the flow-controlled statement, and back once the rows are gone."""
    from django_pgjobs.models import Queue
    from django_pgjobs.queries import FlowHint

    hint = FlowHint()
    enqueue_many("test.record", [{}] * 4, queue="q")
    set_queue_limits("q", concurrency=1)
    with connection.cursor() as cur:
        assert len(claim(cur, hint=hint)) == 1  # found out, and claimed within the limit
        assert hint.restricted
        Queue.objects.all().delete()
        assert len(claim(cur, hint=hint)) == 3
        assert not hint.restricted


def test_claimed_jobs_carry_their_timeouts_and_key() -> None:
    set_queue_limits("q", timeout=7)
    job_id = enqueue("test.record", {}, queue="q", partition_key="p", timeout=3)
    with connection.cursor() as cur:
        (job,) = claim(cur)
    assert (job.id, job.partition_key, job.timeout, job.queue_timeout) == (job_id, "p", 3.0, 7.0)
    assert isinstance(job.id, uuid.UUID) and isinstance(psycopg.__version__, str)


def test_a_claim_that_waited_for_the_lock_stamps_its_starts_when_it_got_it() -> None:
    """A claim's transaction starts before it waits for the queue's lock: stamped with that
    start, its starts would leave the next claim's window early (the review's repro)."""
    set_queue_limits("q", rate_limit=1, rate_period=1)
    enqueue_many("test.record", [{}] * 5, queue="q")
    blocker = second_connection(autocommit=False)  # stands in for a slow claim of the queue
    first, second = second_connection(), second_connection()
    try:
        blocker.execute("SELECT pg_advisory_xact_lock(%s, hashtext('q'))", [LOCK_CLASS])
        got: list[list[ClaimedJob]] = []
        waiting = threading.Thread(target=lambda: got.append(claim(first.cursor(), limit=10)))
        waiting.start()
        time.sleep(0.9)  # the claim waits; its transaction's start stays behind
        blocker.commit()
        waiting.join(timeout=10)
        assert len(got[0]) == 1
        time.sleep(0.2)
        assert claim(second.cursor(), limit=10) == []  # 1 a second: the window still holds it
    finally:
        for conn in (blocker, first, second):
            conn.close()


def test_many_limited_queues_without_jobs_take_no_locks() -> None:
    """A lock per limited queue with due jobs, not per row: 20,000 per-tenant rows would fill
    PostgreSQL's shared lock table (64 x 100 slots by default) and fail every claim."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_queues (name, concurrency) "
            "SELECT 'tenant-' || g, 5 FROM generate_series(1, 20000) AS g"
        )
    enqueue_many("test.record", [{}] * 3, queue="tenant-1")
    with connection.cursor() as cur:
        assert len(claim(cur, limit=10)) == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [("rate_period", "300000 years"), ("rate_period", "2 days"), ("timeout", "400 days")],
)
def test_sql_cannot_write_a_queue_duration_the_claim_cannot_add(column: str, value: str) -> None:
    set_queue_limits("q", rate_limit=5)
    with (
        pytest.raises(IntegrityError, match="pgjobs_queue_durations_positive"),
        connection.cursor() as cur,
    ):
        cur.execute(f"UPDATE pgjobs_queues SET {column} = %s::interval WHERE name = 'q'", [value])
    enqueue_many("test.record", [{}] * 3, queue="other")
    with connection.cursor() as cur:
        assert len(claim(cur)) == 3


def test_a_forged_cancel_notify_marks_nothing_the_rows_do_not_confirm() -> None:
    from django_pgjobs.queries import no_longer_held

    enqueue_many("test.record", [{}] * 2)
    with connection.cursor() as cur:
        held = [job.token for job in claim(cur)]
        cur.execute("UPDATE pgjobs_job_queue SET status = 'cancelled' WHERE id = %s", [held[0][0]])
        assert no_longer_held(cur, tokens=held) == [held[0]]


def test_a_claim_walks_keys_until_it_has_its_room_and_the_next_walks_on() -> None:
    """A partitioned queue's claim stops walking once it has found its room in keys that can
    start a job (one here), and the next claim walks on from after the last key it read: its
    cost follows its batch, not the queue's number of keys, and every key gets its turn."""
    set_queue_limits("q", partition_concurrency=1)
    with transaction.atomic():
        for n in range(10):
            enqueue("test.record", {}, queue="q", partition_key=f"k{n}")
    seen: list[str | None] = []
    walked: list[str | None] = []
    with connection.cursor() as cur:
        for _ in range(3):
            jobs = claim(cur, limit=1)
            assert len(jobs) == 1
            seen += [job.partition_key for job in jobs]
            cur.execute("SELECT key_cursor FROM pgjobs_queues WHERE name = 'q'")
            walked.append(cur.fetchone()[0])
            cur.execute("UPDATE pgjobs_job_queue SET status = 'completed', completed_at = now() "
                        "WHERE status = 'running'")  # fmt: skip
    # Keys in text order, one a claim (room 1), and the cursor at the last key walked.
    assert seen == ["k0", "k1", "k2"]
    assert walked == ["k0", "k1", "k2"]


def test_a_fair_claim_walks_keys_until_it_has_twice_its_room() -> None:
    """A queue that takes turns walks twice its room in keys that can start a job (each key
    offers a share), and stops there: the cursor is at the second key of a claim of one."""
    set_queue_limits("q", fair=True)
    with transaction.atomic():
        for n in range(10):
            enqueue("test.record", {}, queue="q", partition_key=f"k{n}")
    with connection.cursor() as cur:
        assert [job.partition_key for job in claim(cur, limit=1)] == ["k0"]
        cur.execute("SELECT key_cursor FROM pgjobs_queues WHERE name = 'q'")
        # k1 was offered and not taken: the next claim starts at it (its turn).
        assert cur.fetchone()[0] == "k0"


def test_a_claim_walks_a_bounded_number_of_keys_that_cannot_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys at their limit do not count towards what the walk looks for, but the walk still
    stops after MIN_KEY_WALK keys (or four times its batch): a claim's cost stays bounded
    when thousands of keys are busy (the review's 100,000 keys), and the next one walks on."""
    from django_pgjobs.queries import flow

    set_queue_limits("q", partition_concurrency=1)
    with transaction.atomic():
        for n in range(8):
            enqueue("test.record", {}, queue="q", partition_key=f"k{n}")
    with connection.cursor() as cur:
        assert len(claim(cur, limit=8, worker="busy")) == 8  # k0-k7 each run one job
        with transaction.atomic():
            for n in range(10):
                enqueue("test.record", {}, queue="q", partition_key=f"k{n}")
        cur.execute("UPDATE pgjobs_queues SET key_cursor = NULL WHERE name = 'q'")
        monkeypatch.setattr(flow, "MIN_KEY_WALK", 4)
        seen = [[job.partition_key for job in claim(cur, limit=1)] for _ in range(4)]
    # k0-k3 busy, k4-k7 busy, then k8 (its room found, the walk stops), then k9.
    assert seen == [[], [], ["k8"], ["k9"]]


def test_a_walk_for_jobs_to_claim_ahead_stops_at_a_run_of_keys_it_cannot_use() -> None:
    """Once free threads have theirs (start_now), the walk stops after AHEAD_RUN keys in a row
    that cannot start a job (other workers' jobs hold them) instead of walking all of them for
    jobs to claim ahead; the next claim walks on from there. Until then it walks past them."""
    from django_pgjobs.queries import flow_keys

    set_queue_limits("q", partition_concurrency=1)
    busy = flow_keys.AHEAD_RUN + 8
    keys = [f"k{n:03}" for n in range(busy + 11)]  # k000 free, then busy ones, then 10 free
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key, status, attempt, "
            "locked_by, locked_at, lease_expires_at, lease_token) "
            "SELECT 'test.record', 'q', k, 'running', 1, 'other', now(), "
            "now() + interval '1 hour', gen_random_uuid() FROM unnest(%s::text[]) AS k",
            [keys[1 : busy + 1]],
        )
    with transaction.atomic():
        for key in keys:
            enqueue("test.record", {}, queue="q", partition_key=key)
    with connection.cursor() as cur:
        first = claim(cur, limit=20, start_now=1)
        second = claim(cur, limit=20, start_now=1)
    # k000 for the free thread, then AHEAD_RUN busy keys: the walk stops.
    assert [j.partition_key for j in first] == ["k000"]
    # From there: the 8 busy keys left (no thread has a job yet), then the 10 free keys.
    assert sorted(str(j.partition_key) for j in second) == keys[busy + 1 :]


def test_a_claim_walks_round_past_the_last_key_to_fill_its_batch() -> None:
    set_queue_limits("q", partition_concurrency=1)
    with transaction.atomic():
        for key in ("k0", "k1", "k2", "k9"):
            enqueue("test.record", {}, queue="q", partition_key=key)
    with connection.cursor() as cur:
        cur.execute("UPDATE pgjobs_queues SET key_cursor = 'k8' WHERE name = 'q'")
        # k9, then round: k0, k1, k2 (not k9 alone, then a short claim).
        taken = sorted(job.partition_key or "" for job in claim(cur, limit=4))
    assert taken == ["k0", "k1", "k2", "k9"]


def test_a_fair_queue_gives_a_late_tenant_its_turn_in_the_first_round() -> None:
    """Keys take turns round robin, in key order from where the last claim took its last:
    a tenant that enqueues behind 20 tenants' backlogs starts in the round that gives each of
    them its first start (claims of 4: the window walked is larger than what each takes)."""
    set_queue_limits("q", fair=True)
    with transaction.atomic():
        for n in range(20):
            for _ in range(2):
                enqueue("test.record", {}, queue="q", partition_key=f"k{n:02d}")
    enqueue_many("test.record", [{}] * 2, queue="q", partition_key="late")
    claims: list[list[str | None]] = []
    with connection.cursor() as cur:
        for _ in range(11):
            claims.append([job.partition_key for job in claim(cur, limit=4)])
            cur.execute("UPDATE pgjobs_job_queue SET status = 'completed', completed_at = now() "
                        "WHERE status = 'running'")  # fmt: skip
    seen: list[str | None] = []
    for number, keys in enumerate(claims):
        if "late" in keys:
            break
        assert not set(keys) & set(seen), f"claim {number} started a second job before 'late'"
        seen += keys
    assert len(seen) == 20  # k00-k19 in the five claims before, then late


def test_a_fair_queue_keeps_its_turns_when_other_queues_fill_the_claim() -> None:
    """A claim of one that another queue's better job fills takes none of the fair queue's
    keys, so none loses its turn: the next claims give A, B, C one start each. The cursor moved
    over every key the fair queue offered, taken or not, so keys whose offers the final cut
    dropped were passed over (a new user saw C C B C A with four other queues)."""
    set_queue_limits("fair", fair=True)
    with transaction.atomic():
        for key in ("A", "B", "C"):
            enqueue_many("test.record", [{}] * 3, queue="fair", partition_key=key)
    started: list[str | None] = []
    with connection.cursor() as cur:
        for _ in range(6):
            # Two jobs of a plain queue come first (priority), each claim takes one.
            enqueue_many("test.record", [{}] * 2, queue="other", priority=5)
            for _ in range(2):
                assert [job.queue for job in claim(cur, limit=1)] == ["other"]
            started += [job.partition_key for job in claim(cur, limit=1)]
    assert started == ["A", "B", "C", "A", "B", "C"]


def test_a_fair_queue_cut_short_by_the_claim_keeps_its_walk_order() -> None:
    """When other queues' jobs leave room for only some of a fair queue's offers, it gets
    those its walk came to first (the next keys in turn), not those due first, and the next
    claim goes on from there."""
    set_queue_limits("fair", fair=True)
    with transaction.atomic():
        for key in ("A", "B", "C", "D"):
            enqueue_many("test.record", [{}] * 2, queue="fair", partition_key=key)
    with connection.cursor() as cur:
        cur.execute("UPDATE pgjobs_queues SET key_cursor = 'B' WHERE name = 'fair'")
        enqueue_many("test.record", [{}] * 2, queue="other", priority=5)
        first = claim(cur, limit=4)
        second = claim(cur, limit=2)
    assert [(job.queue, job.partition_key) for job in first] == [
        ("other", None), ("other", None), ("fair", "C"), ("fair", "D"),
    ]  # fmt: skip
    assert [job.partition_key for job in second] == ["A", "B"]


def test_a_claim_never_waits_for_a_queue_row_an_application_holds() -> None:
    """pause_queue() in an application's open transaction holds the queue's row: a claim of the
    queue skips moving its key cursor instead of waiting (it waited without end, the loop's
    heartbeats stopped and another worker ran its jobs again, as reviewed)."""
    set_queue_limits("keyed", partition_concurrency=1)
    for key in ("k1", "k2"):
        enqueue("test.record", queue="keyed", partition_key=key)
    app = second_connection(autocommit=False)
    try:
        queries.pause_queue(app.cursor(), "keyed")  # not committed: the claim sees it open
        with second_connection() as worker_conn:
            worker_conn.execute("SET lock_timeout = '5s'")  # a wait would end in an error
            jobs = claim(worker_conn.cursor(), queues=["keyed"])
        assert sorted(job.partition_key or "" for job in jobs) == ["k1", "k2"]
    finally:
        app.rollback()
        app.close()
    with connection.cursor() as cur:
        cur.execute("SELECT key_cursor FROM pgjobs_queues WHERE name = 'keyed'")
        assert cur.fetchone() == (None,)  # skipped, not moved
