"""A busy worker's next claim goes behind the completions, in one pipeline (queries.claim_behind):
sent as soon as a claim comes back full, its jobs claimed ahead and handed out once the last
claim's are, and so on while claims come back full (Claims.take). Whatever fails on the way,
no job is lost or run twice."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue_many, queries
from django_pgjobs.models import Job
from django_pgjobs.queries import claim_behind
from django_pgjobs.queries.claim import claim_statement
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker import Worker
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import Completer
from tests.helpers import second_connection, wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM: dict[str, Any] = {"worker_id": "w", "lease_seconds": 60, "queues": None, "job_names": None}


def claims_behind(monkeypatch: pytest.MonkeyPatch, before: Any = None) -> list[int]:
    """The size of each claim sent behind completions from now on; ``before(n)`` runs as the
    n-th (from 0) is about to be sent."""
    sizes: list[int] = []
    real = queries.ClaimBehind

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, conn: psycopg.Connection[Any], **kwargs: Any) -> None:
            if before is not None:
                before(len(sizes))
            sizes.append(kwargs["claim"]["limit"])
            super().__init__(conn, **kwargs)

    monkeypatch.setattr(queries, "ClaimBehind", Spy)
    return sizes


def ran_once_each(count: int) -> None:
    """Every one of ``count`` test.record jobs (labels 0..count-1) ran exactly once."""
    runs = Counter(Run.objects.values_list("label", flat=True))
    assert runs == Counter(str(n) for n in range(count))
    assert set(Job.objects.values_list("status", "attempt")) == {("completed", 1)}


def succeeded_claim(conn: psycopg.Connection[Any]) -> tuple[Completer, list[queries.ClaimedJob]]:
    """A completer, and its claim of 3 jobs whose attempts all succeeded (their completions
    waiting to be written)."""
    completer = Completer(wake=lambda: None, on_written=lambda written: None)
    jobs = completer.claim(conn, **CLAIM, limit=3)
    for job in jobs:
        completer.finished(job, AttemptResult(took=0.01))
    return completer, jobs


def failing_completion(*args: object) -> tuple[bytes, list[bytes], None, None]:
    """In place of the completions' statement: one the server answers with an error."""
    return b"SELECT 1/0", [], None, None


def enqueue_records(count: int) -> None:
    enqueue_many("test.record", [{"label": str(n)} for n in range(count)])


def test_a_busy_worker_sends_its_next_claims_behind_the_completions(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = claims_behind(monkeypatch)
    enqueue_records(600)
    worker = make_worker(concurrency=2)
    worker.run(burst=True)
    ran_once_each(600)
    assert sizes, "no claim went behind the completions"
    assert worker.stats.claimed == 600 and not worker._link.lost_claims


def test_the_claim_behind_takes_its_jobs_ahead_under_its_own_token(
    conn: psycopg.Connection[Any],
) -> None:
    enqueue_records(6)
    completer = Completer(wake=lambda: None, on_written=lambda written: None)
    first, second = uuid.uuid4(), uuid.uuid4()
    asked: list[int] = []

    def follow(taken: int) -> dict[str, Any] | None:
        asked.append(taken)
        return {**CLAIM, "limit": 3, "start_now": 0, "lease_token": second}

    jobs = completer.claim(conn, follow=follow, **CLAIM, limit=3, start_now=3, lease_token=first)
    assert asked == [3] and completer.following is not None
    more = completer.claim_following(conn, completer.following, then=lambda jobs: None, follow=None)
    assert completer.following is None
    assert {j.lease_token for j in jobs} == {first} and {j.lease_token for j in more} == {second}
    assert len({j.id for j in jobs + more}) == 6
    rows = {r.id: r for r in Job.objects.all()}
    assert {rows[j.id].status for j in jobs + more} == {"running"}
    assert all(rows[j.id].locked_at is not None for j in jobs)
    # Claimed ahead: their starts are recorded once they begin (worker.ahead).
    assert all(rows[j.id].locked_at is None for j in more)


def test_completions_that_fail_leave_the_claim_behind_them_standing(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_records(6)
    completer, jobs = succeeded_claim(conn)
    monkeypatch.setattr(claim_behind, "completion_statement", failing_completion)
    follow = {**CLAIM, "limit": 3, "start_now": 3, "lease_token": uuid.uuid4()}
    completer.claim(conn, follow=lambda taken: follow, **CLAIM, limit=0)
    assert completer.following is not None and completer.pending()  # kept
    assert not Job.objects.filter(status="completed").exists()
    # The claim behind them stands; they go behind it in turn (written by then).
    more = completer.claim_following(conn, completer.following, then=lambda jobs: None, follow=None)
    assert len(more) == 3 and {j.id for j in more}.isdisjoint(j.id for j in jobs)
    assert not completer.pending()
    assert set(Job.objects.filter(status="completed").values_list("id", flat=True)) == {
        j.id for j in jobs
    }


def test_a_claim_behind_the_server_refuses_loses_nothing(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = claim_statement
    refused: list[bool] = []

    def statement(**claim: Any) -> tuple[str, dict[str, Any]]:
        if not refused:  # the first one only: LIMIT -1 is an error the server answers
            refused.append(True)
            claim["limit"] = -1
        return real(**claim)

    monkeypatch.setattr(claim_behind, "claim_statement", statement)
    sizes = claims_behind(monkeypatch)
    enqueue_records(600)
    worker = make_worker(concurrency=2)
    worker.run(burst=True)
    assert refused and len(sizes) > 1 and worker.stats.db_errors == 1
    ran_once_each(600)
    assert not worker._link.lost_claims  # refused: nothing it took to give back


def test_jobs_a_claim_behind_took_are_given_back_when_its_reply_is_lost(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(concurrency=2)
    real = claim_behind.ClaimBehind.reply
    cut: list[uuid.UUID] = []
    took: list[int] = []

    def reply(self: claim_behind.ClaimBehind) -> list[queries.Token]:
        if not cut:  # the connection goes once both statements committed, their replies unread
            cut.append(self.lease_token)
            with second_connection() as other:
                took.append(
                    wait_for(
                        lambda: other.execute(
                            "SELECT count(*) FROM pgjobs_job_queue WHERE lease_token = %s",
                            [self.lease_token],
                        ).fetchone()[0],  # type: ignore[index]
                        what="the claim behind committed",
                    )
                )
            assert worker._link.conn is not None
            worker._link.conn.close()
        return real(self)

    monkeypatch.setattr(claim_behind.ClaimBehind, "reply", reply)
    enqueue_records(600)
    worker.run(burst=True)
    assert cut and worker.stats.db_errors == 1
    # The claim's jobs, given back after the reconnect, ran once each all the same, under
    # other claims' tokens.
    assert worker.stats.released >= took[0] > 0 and not worker._link.lost_claims
    assert not Job.objects.filter(lease_token=cut[0]).exists()
    ran_once_each(600)


def test_a_stop_request_sends_no_more_claims_behind(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(concurrency=2)

    def stop_at_the_second(n: int) -> None:
        if n == 1:
            worker.request_stop()

    sizes = claims_behind(monkeypatch, before=stop_at_the_second)
    enqueue_records(2000)
    worker.run()
    assert len(sizes) == 2  # the one on its way when the stop came, and none after
    done = Job.objects.filter(status="completed").count()
    assert Run.objects.count() == done
    # Those claimed and never started went back as they were: no attempt counted.
    assert set(Job.objects.exclude(status="completed").values_list("status", "attempt")) == {
        ("pending", 0)
    }
    assert not worker._link.lost_claims


def test_max_jobs_bounds_the_claims_behind(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = claims_behind(monkeypatch)
    enqueue_records(1000)
    worker = make_worker(concurrency=2, max_jobs=300)
    worker.run()
    assert sizes
    assert worker.stats.claimed == 300 and Run.objects.count() == 300
    assert Job.objects.filter(status="pending").count() == 700


def test_flow_control_found_by_a_claim_behind_takes_over(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    def limit_the_queue(n: int) -> None:
        if n == 0:  # committed on Django's connection, not the worker's
            set_queue_limits("default", concurrency=40)

    sizes = claims_behind(monkeypatch, before=limit_the_queue)
    enqueue_records(600)
    worker = make_worker(concurrency=2)
    worker.run(burst=True)
    ran_once_each(600)
    assert len(sizes) == 1  # the flow-controlled claims that follow send none behind them
    assert worker._claims.restricted
    set_queue_limits("default", concurrency=None)


def test_a_worker_holds_at_most_its_threads_and_twice_the_prefetch_while_claims_go_behind(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs of 10 ms on two threads: a claim may take the free threads and about 50 ms of work
    ahead (at most 10 jobs), so the worker holds at most 2 + 2 x 10, counting the claim on its
    way behind the jobs being handed out, however fast claims come back."""
    sizes = claims_behind(monkeypatch)
    worker = make_worker(concurrency=2)
    held: list[int] = []
    seen = 0
    real = worker._slots.dispatch

    def dispatch(jobs: list[queries.ClaimedJob], **kwargs: Any) -> None:
        nonlocal seen
        real(jobs, **kwargs)
        # The claim sent behind these jobs (if any) went out before they were handed out.
        held.append(worker._slots.busy + sum(sizes[seen:]))
        seen = len(sizes)

    monkeypatch.setattr(worker._slots, "dispatch", dispatch)
    enqueue_many("test.on_host", [{"seconds": 0.01}] * 300)
    worker.run(burst=True)
    assert sizes and max(held) <= 22
    assert set(Job.objects.values_list("status", "attempt")) == {("completed", 1)}


def test_after_a_write_behind_fails_no_claim_goes_behind_until_one_succeeds(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_records(9)
    completer, _ = succeeded_claim(conn)
    assert completer.may_claim_behind()
    with monkeypatch.context() as patched:
        patched.setattr(claim_behind, "completion_statement", failing_completion)
        follow = {**CLAIM, "limit": 3, "start_now": 3, "lease_token": uuid.uuid4()}
        completer.claim(conn, follow=lambda taken: follow, **CLAIM, limit=0)
    assert completer.following is not None
    assert not completer.may_claim_behind()  # the loop sends none behind the next claim
    completer.claim_following(conn, completer.following, then=lambda jobs: None, follow=None)
    assert completer.may_claim_behind()  # written behind that one: claims may go behind again
