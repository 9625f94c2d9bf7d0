"""A partitioned queue's key counts read once a claim (``pgjobs_key_loads``, migration 0025), or
key by key past the walk's bound."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from django.db import connection, transaction

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.queries import flow
from django_pgjobs.queries.base import ClaimedJob
from django_pgjobs.queues import set_queue_limits
from tests.helpers import second_connection, wait_for
from tests.queries.test_flow import claim, waiting_on_a_lock

pytestmark = pytest.mark.django_db(transaction=True)


def loads(
    queue: str = "q",
    *,
    finishing: Sequence[tuple[uuid.UUID, uuid.UUID]] = (),
    running: bool = True,
    starts: bool = True,
    bound: int = 100,
) -> Any:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pgjobs_key_loads(%s, %s::uuid[], %s::uuid[], clock_timestamp(), %s, %s, %s)",
            [queue, [i for i, _ in finishing], [t for _, t in finishing], running, starts, bound],
        )
        value = cur.fetchone()[0]
    return json.loads(value) if isinstance(value, str) else value


def run_jobs(queue: str, keys: list[str | None]) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """A running job of ``queue`` for each of ``keys``; returns their (id, lease token)."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key, status, attempt, "
            "locked_by, locked_at, lease_expires_at, lease_token) "
            "SELECT 'test.record', %s, k, 'running', 1, 'other', now(), "
            "now() + interval '1 hour', gen_random_uuid() FROM unnest(%s::text[]) AS k "
            "RETURNING id, lease_token",
            [queue, keys],
        )
        return [(row[0], row[1]) for row in cur.fetchall()]


def test_loads_count_each_keys_running_jobs_and_starts_in_the_window() -> None:
    set_queue_limits("q", partition_concurrency=3, partition_rate_limit=10, rate_period=60)
    ran = run_jobs("q", ["a", "a", "b", None])
    run_jobs("other", ["a"])
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs) VALUES "
            "('q', 'a', now(), 2), ('q', 'c', now() - interval '10 seconds', 3), "
            "('q', 'c', now() - interval '2 minutes', 5), ('q', NULL, now(), 4), "
            "('other', 'a', now(), 7)"
        )
    # Keyed rows of this queue only; starts inside the 60 s window only.
    assert loads() == {"a": [2, 2], "b": [1, 0], "c": [0, 3]}
    # An attempt the same statement completes (matched by its lease token) is not running.
    assert loads(finishing=[ran[0]]) == {"a": [1, 2], "b": [1, 0], "c": [0, 3]}
    assert loads(finishing=[(ran[0][0], uuid.uuid4())])["a"] == [2, 2]
    # Only what the queue's limits need is read.
    assert loads(starts=False) == {"a": [2, 0], "b": [1, 0]}
    assert loads(running=False) == {"a": [0, 2], "c": [0, 3]}
    assert loads("empty") == {}


def test_loads_give_way_to_key_by_key_counts_past_their_bound() -> None:
    set_queue_limits("q", partition_concurrency=1)
    run_jobs("q", ["a", "b", "c"])
    assert loads(bound=3) == {"a": [1, 0], "b": [1, 0], "c": [1, 0]}
    assert loads(bound=2) is None  # more running jobs than a walk's worth
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs) "
            "SELECT 'q', 'k' || g, now(), 1 FROM generate_series(1, 3) AS g"
        )
    assert loads(running=False, bound=2) is None
    assert loads(running=False, bound=3) == {"k1": [0, 1], "k2": [0, 1], "k3": [0, 1]}


@pytest.mark.parametrize("key_by_key", [False, True], ids=["loads", "key by key"])
def test_both_ways_of_counting_keep_every_keys_limits(
    key_by_key: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever way the keys are counted, a key at its limit gives nothing, the others give
    up to theirs, and the jobs without a key keep their own count. With the walk's bound at 4
    (a claim of 1), the 6 running jobs are past it and each walked key is counted alone."""
    set_queue_limits("q", partition_concurrency=2)
    if key_by_key:
        monkeypatch.setattr(flow, "MIN_KEY_WALK", 4)
    run_jobs("q", ["a", "a", "b", "x", "y", "z"])
    # The claims' bound: max(MIN_KEY_WALK, 4 * their limit of 1).
    assert (loads(bound=flow.MIN_KEY_WALK) is None) is key_by_key
    with transaction.atomic():
        for key in ("a", "b", "b", "b", "c", None, None, None):
            enqueue("test.record", {}, queue="q", partition_key=key)
    with connection.cursor() as cur:
        claims = [claim(cur, limit=1) for _ in range(6)]
    assert [len(jobs) for jobs in claims] == [1, 1, 1, 1, 0, 0]
    taken = Counter(job.partition_key for jobs in claims for job in jobs)
    # a is full; b has room for one; c for its one job; the unkeyed partition for two.
    assert taken == {"b": 1, "c": 1, None: 2}


@pytest.mark.parametrize("busy", [0, 600], ids=["loads", "key by key"])
def test_a_claim_that_waited_counts_what_the_claim_before_it_took(busy: int) -> None:
    """The loads are read after the lock, with a snapshot of their own, as the key-by-key
    counts are: the job the first claim took (committed while the second waited) keeps the key
    full (600 other running keys: past the walk's bound of 500, counted key by key; the same
    test once lived in test_flow_counts.py with 5,000)."""
    set_queue_limits("q", partition_concurrency=1)
    run_jobs("q", [f"z{n}" for n in range(busy)])
    enqueue_many("test.record", [{}] * 3, queue="q", partition_key="a")
    first = second_connection(autocommit=False)
    second = second_connection()
    try:
        assert len(claim(first.cursor(), worker="one")) == 1
        got: list[list[ClaimedJob]] = []
        waiting = threading.Thread(target=lambda: got.append(claim(second.cursor(), worker="two")))
        waiting.start()
        pid = second.info.backend_pid
        wait_for(lambda: waiting_on_a_lock(pid), what="the second claim to wait for the lock")
        first.commit()
        waiting.join(timeout=10)
        assert got == [[]]
    finally:
        first.close()
        second.close()


def test_a_claim_that_waited_walks_on_from_where_the_claim_before_it_stopped() -> None:
    """The cursor is read after the queue's lock (the row's newest version): a claim that
    waited walks the keys after those the claim before it took, not from the cursor its own
    snapshot saw, whose heads that claim took (it would find them taken and get nothing)."""
    set_queue_limits("q", partition_concurrency=2)
    with transaction.atomic():
        for key in ("k0", "k1", "k2"):
            for _ in range(3):
                enqueue("test.record", {}, queue="q", partition_key=key)
    first = second_connection(autocommit=False)
    second = second_connection()
    try:
        assert [j.partition_key for j in claim(first.cursor(), limit=1, worker="one")] == ["k0"]
        got: list[list[ClaimedJob]] = []
        waiting = threading.Thread(
            target=lambda: got.append(claim(second.cursor(), limit=1, worker="two"))
        )
        waiting.start()
        pid = second.info.backend_pid
        wait_for(lambda: waiting_on_a_lock(pid), what="the second claim to wait for the lock")
        first.commit()
        waiting.join(timeout=10)
        assert [j.partition_key for j in got[0]] == ["k1"]
    finally:
        first.close()
        second.close()
