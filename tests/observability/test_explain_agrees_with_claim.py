"""explain_job's verdict against the claim itself: in each situation, built with real rows, every
live worker claims (its own queues and handlers, on this real connection, each claim rolled
back so the next sees the same rows). A job called claimable must be taken by one of them; a
job said to be blocked by none."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from django_pgjobs import enqueue, explain_job
from django_pgjobs.observability.explain import Blocker
from django_pgjobs.observability.explanation import COUNT_CAP, silent_seconds
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queries.explain import blocked_counts
from django_pgjobs.queues import pause_queue, set_queue_limits
from tests.observability.test_explain import live_worker

pytestmark = pytest.mark.django_db(transaction=True)

# The workers of these situations have test.record; test.fail is a handler some lack.
RUNS = "test.record"
OTHER = "test.fail"


class _Undo(Exception):
    pass


def taken_by_some_claim() -> set[uuid.UUID]:
    """The jobs the next claim of each live worker takes, each claim undone after it."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id, ARRAY(SELECT jsonb_array_elements_text(queues)), "
            "ARRAY(SELECT jsonb_array_elements_text(handlers)) FROM pgjobs_workers ORDER BY id"
        )
        workers = cur.fetchall()
    taken: set[uuid.UUID] = set()
    for worker_id, queues, handlers in workers:
        try:
            with transaction.atomic(), connection.cursor() as cur:
                jobs = claim_jobs(
                    cur, worker_id=worker_id, limit=100, lease_seconds=60,
                    queues=list(queues) or None, job_names=list(handlers),
                )  # fmt: skip
                taken.update(job.id for job in jobs)
                raise _Undo
        except _Undo:
            pass
    return taken


def _key_head_behind(**limits: Any) -> Callable[[], uuid.UUID]:
    def build() -> uuid.UUID:
        live_worker("w1", handlers=[RUNS])
        set_queue_limits("q", **limits)
        with transaction.atomic():
            enqueue(OTHER, queue="q", partition_key="a")
            subject = enqueue(RUNS, queue="q", partition_key="a")
            enqueue(RUNS, queue="q", partition_key="b")
        return subject

    return build


def _behind_a_runnable_head_and_one_no_worker_runs() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    set_queue_limits("q", partition_concurrency=1)
    with transaction.atomic():
        enqueue(RUNS, queue="q", partition_key="a")
        enqueue(OTHER, queue="q", partition_key="a")
        return enqueue(RUNS, queue="q", partition_key="a")


def _unkeyed_head_behind() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    set_queue_limits("q", partition_concurrency=2)
    with transaction.atomic():
        enqueue(OTHER, queue="q")
        return enqueue(RUNS, queue="q")


def _head_run_by_a_worker_with_both() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    live_worker("w2", handlers=[RUNS, OTHER])
    set_queue_limits("q", partition_concurrency=2)
    with transaction.atomic():
        enqueue(OTHER, queue="q", partition_key="a")
        return enqueue(RUNS, queue="q", partition_key="a")


def _head_another_worker_runs_but_not_this_job() -> uuid.UUID:
    # w2 runs the head but lacks this job's handler; w1 has it but stops at the head.
    live_worker("w1", handlers=[RUNS])
    live_worker("w2", handlers=[OTHER])
    set_queue_limits("q", fair=True)
    with transaction.atomic():
        enqueue(OTHER, queue="q", partition_key="a")
        return enqueue(RUNS, queue="q", partition_key="a")


def _plain_queue_passes_a_job_it_cannot_run() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    with transaction.atomic():
        enqueue(OTHER, queue="q", priority=5)
        return enqueue(RUNS, queue="q")


def _limited_queue_passes_a_job_it_cannot_run() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    set_queue_limits("q", concurrency=5)
    with transaction.atomic():
        enqueue(OTHER, queue="q", priority=5)
        return enqueue(RUNS, queue="q")


def _head_of_another_key() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    set_queue_limits("q", fair=True)
    with transaction.atomic():
        enqueue(OTHER, queue="q", partition_key="a")
        return enqueue(RUNS, queue="q", partition_key="b")


def _job_heads_its_key() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    set_queue_limits("q", fair=True)
    with transaction.atomic():
        subject = enqueue(RUNS, queue="q", partition_key="a")
        enqueue(OTHER, queue="q", partition_key="a")
    return subject


def _head_not_due_yet() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    set_queue_limits("q", fair=True)
    enqueue(OTHER, queue="q", partition_key="a", scheduled_for=timedelta(hours=1))
    return enqueue(RUNS, queue="q", partition_key="a")


def _behind_in_a_limited_queue(**limits: Any) -> Callable[[], uuid.UUID]:
    def build() -> uuid.UUID:
        live_worker("w1", handlers=[RUNS])
        set_queue_limits("q", **limits)
        with transaction.atomic():
            enqueue(RUNS, queue="q", priority=5)
            return enqueue(RUNS, queue="q")

    return build


def _key_order() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    set_queue_limits("q", partition_concurrency=1)
    with transaction.atomic():
        enqueue(RUNS, queue="q", partition_key="a")
        return enqueue(RUNS, queue="q", partition_key="a")


def _in_turns(
    subject: tuple[str, int], *, cursor: str | None = None, keys: str = "AAAB"
) -> Callable[[], uuid.UUID]:
    """A fair queue with room for two starts, a job for each letter of ``keys`` (its key), in
    that order; the job ``subject`` names (its key, its number in the key)."""

    def build() -> uuid.UUID:
        live_worker("w1", handlers=[RUNS])
        set_queue_limits("q", fair=True, concurrency=2)
        with transaction.atomic():
            jobs = {(key, keys[:n].count(key)): enqueue(RUNS, queue="q", partition_key=key)
                    for n, key in enumerate(keys)}  # fmt: skip
        with connection.cursor() as cur:
            cur.execute("UPDATE pgjobs_queues SET key_cursor = %s WHERE name = 'q'", [cursor])
        return jobs[subject]

    return build


def _paused() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    pause_queue("q")
    return enqueue(RUNS, queue="q")


def _no_handler() -> uuid.UUID:
    live_worker("w1", handlers=[RUNS])
    return enqueue(OTHER, queue="q")


def _no_worker_of_the_queue() -> uuid.UUID:
    live_worker("w1", queues=["elsewhere"], handlers=[RUNS])
    return enqueue(RUNS, queue="q")


SITUATIONS: dict[str, tuple[Callable[[], uuid.UUID], Blocker]] = {
    "partitioned key behind a head no worker runs": (
        _key_head_behind(partition_concurrency=2),
        Blocker.KEY_HEAD,
    ),
    # One job at a time per key: the key's room is one start and a job is before it, yet it
    # was said to wait for its key's order (KEY_ORDER), as if that job would start first.
    "one job per key, behind a head no worker runs": (
        _key_head_behind(partition_concurrency=1),
        Blocker.KEY_HEAD,
    ),
    "one job per key, behind a job no worker runs after the head": (
        _behind_a_runnable_head_and_one_no_worker_runs,
        Blocker.KEY_HEAD,
    ),
    "key rate limit, key behind a head no worker runs": (
        _key_head_behind(partition_rate_limit=5, rate_period=60),
        Blocker.KEY_HEAD,
    ),
    "fair key behind a head no worker runs": (_key_head_behind(fair=True), Blocker.KEY_HEAD),
    "unkeyed jobs behind a head no worker runs": (_unkeyed_head_behind, Blocker.KEY_HEAD),
    "a worker with both handlers takes head and job": (
        _head_run_by_a_worker_with_both,
        Blocker.CLAIMABLE,
    ),
    "the head's worker lacks the job's handler": (
        _head_another_worker_runs_but_not_this_job,
        Blocker.KEY_HEAD,
    ),
    "a plain queue passes a job it cannot run": (
        _plain_queue_passes_a_job_it_cannot_run,
        Blocker.CLAIMABLE,
    ),
    "a limited queue passes a job it cannot run": (
        _limited_queue_passes_a_job_it_cannot_run,
        Blocker.CLAIMABLE,
    ),
    "a head no worker runs in another key": (_head_of_another_key, Blocker.CLAIMABLE),
    "the job heads its key": (_job_heads_its_key, Blocker.CLAIMABLE),
    "the head no worker runs is not due yet": (_head_not_due_yet, Blocker.CLAIMABLE),
    "concurrency 1, a job before it": (
        _behind_in_a_limited_queue(concurrency=1),
        Blocker.QUEUE_ORDER,
    ),
    "rate limit 1, a job before it": (
        _behind_in_a_limited_queue(rate_limit=1, rate_period=60),
        Blocker.QUEUE_ORDER,
    ),
    "concurrency 2, a job before it": (
        _behind_in_a_limited_queue(concurrency=2),
        Blocker.CLAIMABLE,
    ),
    "a key's second job with room for one": (_key_order, Blocker.KEY_ORDER),
    "fair, room for two: the first key's second job": (_in_turns(("A", 1)), Blocker.FAIR_TURN),
    "fair, room for two: the second key's first job": (_in_turns(("B", 0)), Blocker.CLAIMABLE),
    "fair, room for two, B's turn first: A's first job": (
        _in_turns(("A", 0), cursor="A"),
        Blocker.CLAIMABLE,
    ),
    "fair, room for two, B's turn first: A's second job": (
        _in_turns(("A", 1), cursor="A"),
        Blocker.FAIR_TURN,
    ),
    "fair, room for two: a third key's job": (_in_turns(("C", 0), keys="ABC"), Blocker.FAIR_TURN),
    "paused": (_paused, Blocker.PAUSED),
    "no handler": (_no_handler, Blocker.NO_HANDLER),
    "no worker of the queue": (_no_worker_of_the_queue, Blocker.NO_WORKER),
}


@pytest.mark.parametrize(
    ("build", "expected"), list(SITUATIONS.values()), ids=list(SITUATIONS.keys())
)
def test_explain_says_claimable_exactly_when_a_claim_takes_the_job(
    build: Callable[[], uuid.UUID], expected: Blocker
) -> None:
    subject = build()
    said = explain_job(subject)
    assert said.blocker is expected, said.message
    assert (subject in taken_by_some_claim()) == (said.blocker is Blocker.CLAIMABLE)
    # The dashboard's counts classify the same job the same way.
    with connection.cursor() as cur:
        counts = blocked_counts(cur, queues=["q"], silent_seconds=silent_seconds(), cap=COUNT_CAP)
    assert counts["q"].get(str(expected), 0) >= 1


def test_key_head_names_the_earlier_jobs_and_their_handler() -> None:
    live_worker("w1", handlers=[RUNS])
    set_queue_limits("q", partition_concurrency=2)
    with transaction.atomic():
        head = enqueue(OTHER, queue="q", partition_key="a")
        subject = enqueue(RUNS, queue="q", partition_key="a")
    said = explain_job(subject)
    assert said.blocking_job_ids == (head,)
    assert f"{head} ('{OTHER}')" in said.message
    assert "a claim stops at the first job of a key it cannot run" in said.message
