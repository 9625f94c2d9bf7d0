"""A key's jobs never overtake one another, whatever happened while a claim waited for the queue's
lock or whatever an application holds (rev27):

- a job handed back (keeping its place) after a claim's snapshot was taken but before its lock
  was granted: the claim's counts see the key's slot free, its walk (the statement's snapshot)
  still saw that job running, and took the job behind it;
- a key with room for more than one job whose head an application transaction holds: the lock
  skipped the head and kept the jobs behind it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, transaction

from django_pgjobs import enqueue, queries
from django_pgjobs.queries import flow
from django_pgjobs.queries.base import ClaimedJob
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import set_queue_limits
from tests.helpers import second_connection, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def claim(cur: Any, limit: int = 100, worker: str = "w") -> list[ClaimedJob]:
    return claim_jobs(
        cur, worker_id=worker, limit=limit, lease_seconds=60, queues=None, job_names=None
    )


def labels(jobs: list[ClaimedJob]) -> list[str]:
    return [j.payload["label"] for j in jobs]


def waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cur.fetchone()
    return bool(row and row[0])


def claim_while_x(concurrency: int, key: str | None, *does: str) -> list[str]:
    """A claim that waits for the queue's lock while worker x, running the key's first jobs,
    does to each (in ``does``, one a job) what a worker does: hands it back (``release``),
    completes it (``complete``) or fails it into a retry an hour later (``fail``). What the
    claim takes."""
    set_queue_limits("q", partition_concurrency=concurrency)
    with transaction.atomic():
        for n in range(concurrency):
            enqueue("test.record", {"label": f"first{n}"}, queue="q", partition_key=key)
        enqueue("test.record", {"label": "second"}, queue="q", partition_key=key)
        enqueue("test.record", {"label": "other"}, queue="q", partition_key="m")
    with connection.cursor() as cur:
        held = claim(cur, limit=concurrency, worker="x")  # the key's first jobs run on x
    assert sorted(labels(held)) == [f"first{n}" for n in range(concurrency)]
    holder = second_connection(autocommit=False)  # another claim holds the queue's lock
    waiter = second_connection()
    try:
        assert labels(claim(holder.cursor(), limit=1, worker="a")) == ["other"]
        got: list[list[ClaimedJob]] = []
        thread = threading.Thread(
            target=lambda: got.append(claim(waiter.cursor(), limit=10, worker="b"))
        )
        thread.start()
        wait_for(lambda: waiting_on_a_lock(waiter.info.backend_pid), what="the claim to wait")
        by_label = {job.payload["label"]: job for job in held}
        with connection.cursor() as cur:
            for n, action in enumerate(does):
                token = by_label[f"first{n}"].token
                if action == "release":  # a graceful shutdown
                    assert queries.release_jobs(cur, tokens=[token]) == 1
                elif action == "complete":
                    assert len(queries.complete_jobs(cur, tokens=[token])) == 1
                else:
                    outcome = queries.fail_job(cur, token=token, error="boom", delay=3600)
                    assert outcome == "retried"
        holder.commit()
        thread.join(10)
        return labels(got[0])
    finally:
        holder.close()
        waiter.close()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_key_whose_job_completed_while_a_claim_waited_goes_on(concurrency: int) -> None:
    """Only a job that went back to pending holds its key back: one that completed (or failed
    into a later retry) while the claim waited leaves the key's next job its head."""
    assert claim_while_x(concurrency, "k", *["complete"] * concurrency) == ["second"]


def test_a_key_whose_job_failed_into_a_later_retry_while_a_claim_waited_goes_on() -> None:
    """rev28: the retry is pending again, but due an hour later, behind the key's due jobs."""
    assert claim_while_x(1, "k", "fail") == ["second"]


@pytest.mark.parametrize(
    "does",
    [("complete", "release"), ("release", "complete"), ("complete", "complete", "release")],
)
def test_a_job_handed_back_beside_others_that_completed_keeps_its_place(
    does: tuple[str, ...],
) -> None:
    """rev28: the probe read only one more of the key's jobs than the counts found running, so
    with one completed and one handed back it could ask about the completed one alone."""
    got = claim_while_x(len(does), "k", *does)
    assert "second" not in got


@pytest.mark.parametrize("concurrency", [1, 2])
@pytest.mark.parametrize("key", ["k", None], ids=["keyed", "unkeyed"])
def test_a_job_handed_back_while_a_claim_waits_keeps_its_place(
    concurrency: int, key: str | None
) -> None:
    assert "second" not in claim_while_x(concurrency, key, *["release"] * concurrency)
    with connection.cursor() as cur:  # the next claim takes them in order
        assert labels(claim(cur, limit=concurrency)) == [f"first{n}" for n in range(concurrency)]


@pytest.mark.parametrize(
    "options",
    [
        {"partition_concurrency": 2},
        {"partition_concurrency": 2, "fair": True},
        {"fair": True},
        {"partition_rate_limit": 5, "rate_period": 60},
        {"partition_concurrency": 1},
        {"partition_concurrency": 1, "fair": True},
    ],
    ids=["pc2", "pc2-fair", "fair", "prl5", "pc1", "pc1-fair"],
)
@pytest.mark.parametrize("key", ["k", None], ids=["keyed", "unkeyed"])
def test_a_held_head_is_not_overtaken_by_its_keys_next_job(
    options: dict[str, Any], key: str | None
) -> None:
    set_queue_limits("q", **options)
    with transaction.atomic():
        first = enqueue("test.record", {"label": "first"}, queue="q", partition_key=key)
        enqueue("test.record", {"label": "second"}, queue="q", partition_key=key)
        enqueue("test.record", {"label": "third"}, queue="q", partition_key=key)
        enqueue("test.record", {"label": "other"}, queue="q", partition_key="m")
    app = second_connection(autocommit=False)
    try:
        app.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE", [first])
        with connection.cursor() as cur:
            got = labels(claim(cur, limit=10))
        assert "other" in got  # other keys go on
        assert "second" not in got and "third" not in got
    finally:
        app.rollback()
        app.close()


@pytest.mark.parametrize(
    "limits",
    [{"partition_concurrency": 3}, {"partition_concurrency": 3, "fair": True}, {"concurrency": 5}],
    ids=["per key", "fair", "concurrency"],
)
def test_a_pending_job_updated_while_a_claim_waits_is_claimed_in_its_place(
    limits: dict[str, Any],
) -> None:
    """An application's update of a pending, due job (a deduplication key's upsert, any edit)
    commits after a claim's snapshot was taken, while the claim waits for the queue's lock: the
    claim's lock takes the row's newest version, and the update (by key, queries.claim
    _FLOW_CLAIMED) follows it there. Updated by the tuple id its lock returned, which the
    snapshot cannot see, the head stayed pending while the key's next jobs started (405a81f,
    reverted), and it used up one of the claim's start-now marks."""
    set_queue_limits("q", **limits)
    with transaction.atomic():
        for label in ("first", "second", "third"):
            enqueue("test.record", {"label": label}, queue="q", partition_key="k")
    holder = second_connection(autocommit=False)  # another claim holds the queue's lock
    waiter = second_connection()
    try:
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext('q'))", [flow.LOCK_CLASS])
        got: list[list[ClaimedJob]] = []
        claim_two_now = {
            "worker_id": "b", "limit": 10, "lease_seconds": 60, "queues": None,
            "job_names": None, "start_now": 2, "hint": queries.FlowHint(restricted=True),
        }  # fmt: skip
        thread = threading.Thread(
            target=lambda: got.append(claim_jobs(waiter.cursor(), **claim_two_now))  # type: ignore[arg-type]
        )
        thread.start()
        wait_for(lambda: waiting_on_a_lock(waiter.info.backend_pid), what="the claim to wait")
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE pgjobs_job_queue SET payload = payload || '{\"edited\": true}' "
                "WHERE payload->>'label' = 'first'"
            )
        holder.commit()
        thread.join(10)
    finally:
        holder.close()
        waiter.close()
    assert labels(got[0]) == ["first", "second", "third"]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT payload->>'label', status, locked_at IS NOT NULL FROM pgjobs_job_queue "
            "ORDER BY seq"
        )
        assert cur.fetchall() == [
            ("first", "running", True),
            ("second", "running", True),
            ("third", "running", False),  # claimed ahead: two start now
        ]
