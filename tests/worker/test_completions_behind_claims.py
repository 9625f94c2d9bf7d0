"""The successes a claim finds waiting are written right behind it: sent once the claim's reply
is in, written while its jobs are made and handed to threads, their reply read before the claim
returns (Completer.claim). Under flow control they are written just before the claim instead,
and a busy worker's loop leaves them to its claim rather than writing them first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue, enqueue_many, get_job, prepared, queries
from django_pgjobs.queries.base import UNDO_CLAIM
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker import Worker
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import Completer
from django_pgjobs.worker.outcomes import Outcome

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM: dict[str, Any] = {
    "worker_id": "w", "lease_seconds": 60, "queues": None, "job_names": None,
}  # fmt: skip


def statements(monkeypatch: pytest.MonkeyPatch, *, claims: bool = False) -> list[str]:
    """The names of the completion statements (and with ``claims``, the claims) run from now
    on, in order."""
    ran: list[str] = []
    for name in ("send_completion", "complete_jobs", *(["claim_jobs"] if claims else [])):
        real = getattr(queries, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            ran.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(queries, name, spy)
    return ran


def while_claiming(monkeypatch: pytest.MonkeyPatch, report: Callable[[], object]) -> None:
    """``report`` (what a handler thread reports) runs while the next claim is on its way."""
    real = queries.claim_jobs

    def claim(*args: Any, **kwargs: Any) -> list[queries.ClaimedJob]:
        report()
        return real(*args, **kwargs)

    monkeypatch.setattr(queries, "claim_jobs", claim)


def finished(completer: Completer, jobs: list[queries.ClaimedJob]) -> None:
    for job in jobs:
        completer.finished(job, AttemptResult(took=0.01))


def test_the_successes_go_behind_the_claim_and_are_written_when_it_returns(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_many("test.record", [{}] * 5)
    completer = Completer(wake=lambda: None, on_written=lambda written: None)
    done = completer.claim(conn, limit=3, **CLAIM)
    finished(completer, done)
    ran = statements(monkeypatch)
    handed: list[list[queries.ClaimedJob]] = []
    jobs = completer.claim(conn, limit=2, then=handed.append, **CLAIM)
    assert ran == ["send_completion"]
    assert handed == [jobs] and len(jobs) == 2
    assert [get_job(job.id).status for job in done] == ["completed"] * 3
    assert [get_job(job.id).status for job in jobs] == ["running"] * 2
    assert not completer.pending()


def test_what_finishes_while_the_claim_runs_goes_behind_it_too(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_many("test.record", [{}] * 3)
    completer = Completer(wake=lambda: None, on_written=lambda written: None)
    (running,) = completer.claim(conn, limit=1, **CLAIM)
    while_claiming(monkeypatch, lambda: finished(completer, [running]))
    completer.claim(conn, limit=2, **CLAIM)
    assert get_job(running.id).status == "completed"
    assert not completer.pending()


@pytest.mark.parametrize(
    ("limits", "keys"),
    [({"concurrency": 2}, [None] * 3), ({"partition_concurrency": 1}, ["a", "b", "a"])],
    ids=["concurrency", "partitions"],
)
def test_under_flow_control_they_are_written_first_and_free_their_room(
    conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    limits: dict[str, Any],
    keys: list[str | None],
) -> None:
    set_queue_limits("default", **limits)
    for key in keys:
        enqueue("test.record", {}, partition_key=key)
    completer = Completer(wake=lambda: None, on_written=lambda written: None)
    hint = queries.FlowHint()
    done = completer.claim(conn, limit=5, hint=hint, **CLAIM)
    assert hint.restricted and len(done) == 2  # the limit binds
    finished(completer, done)
    ran = statements(monkeypatch, claims=True)
    jobs = completer.claim(conn, limit=5, hint=hint, **CLAIM)
    assert ran == ["complete_jobs", "claim_jobs"]
    assert [get_job(job.id).status for job in done] == ["completed"] * 2
    assert len(jobs) == 1  # the room they freed
    assert not completer.pending()


def test_a_send_that_fails_leaves_them_buffered_and_the_jobs_claimed_still_start(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_many("test.record", [{}] * 3)
    completer = Completer(wake=lambda: None, on_written=lambda written: None)
    done = completer.claim(conn, limit=1, **CLAIM)
    finished(completer, done)

    def broken(conn: psycopg.Connection[Any], **kwargs: Any) -> Any:
        conn.pgconn.finish()  # the connection drops as the completion goes out
        raise psycopg.OperationalError("sending query failed")

    monkeypatch.setattr(queries, "send_completion", broken)
    handed: list[list[queries.ClaimedJob]] = []
    jobs = completer.claim(conn, limit=2, then=handed.append, **CLAIM)
    assert handed == [jobs] and len(jobs) == 2  # the claim committed: its jobs start
    assert completer.pending()  # the success waits for the next write, in doubt
    assert get_job(done[0].id).status == "running"


def test_rows_that_cannot_be_read_still_leave_the_connection_free(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim committed and the successes went behind it, then reading its rows raised (a
    loader's error): their reply is read all the same, so the next statement runs."""
    enqueue_many("test.record", [{}] * 4)
    completer = Completer(wake=lambda: None, on_written=lambda written: None)
    done = completer.claim(conn, limit=2, **CLAIM)
    finished(completer, done)

    def unreadable(self: Any) -> Any:
        raise psycopg.DataError("cannot load the rows")

    with monkeypatch.context() as patched:
        patched.setattr(prepared._PreparingCursor, "fetchall", unreadable)
        with pytest.raises(psycopg.DataError):
            completer.claim(conn, limit=2, **CLAIM)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert [get_job(job.id).status for job in done] == ["completed"] * 2
    assert not completer.pending()


def test_a_turn_that_claims_leaves_the_successes_to_the_claim(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written first, the successes held the claim back until the threads had run out of jobs:
    a turn that claims leaves them to it (failures are written at once all the same)."""
    enqueue_many("test.record", [{}] * 4)
    worker = make_worker(concurrency=2)
    conn = worker._ensure_connected()
    first = queries.claim_jobs(conn.cursor(), limit=1, **CLAIM)
    finished(worker._completer, first)
    ran = statements(monkeypatch)
    worker._flush()  # jobs are due and threads are free: this turn claims
    assert ran == []
    worker.max_jobs = 0  # now it does not
    worker._flush()
    assert ran == ["complete_jobs"]
    second = queries.claim_jobs(conn.cursor(), limit=1, **CLAIM)
    worker._completer.finished(second[0], AttemptResult(took=0.01, error="it failed"))
    worker.max_jobs = None
    worker._flush()
    assert get_job(second[0].id).status == "pending"  # the failure is written: a retry


def test_a_drain_writes_its_successes_behind_its_claims(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_many("test.record", [{}] * 60)
    ran = statements(monkeypatch)
    stats = make_worker(concurrency=2).run(burst=True)
    assert stats.completed == 60
    assert "send_completion" in ran


def test_a_hand_back_reported_while_the_claim_runs_is_settled_not_sent(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow that waits hands its job back (and writes that itself): no error, no snooze,
    yet no completion either. Sent as one, it matched nothing and was reported lost."""
    enqueue_many("test.record", [{}] * 3)
    outcomes: list[Outcome] = []
    completer = Completer(wake=lambda: None, on_written=lambda w: outcomes.append(w.outcome))
    (waiting,) = completer.claim(conn, limit=1, **CLAIM)
    conn.execute(  # what its hand-back wrote (workflow_runs.suspend): the claim undone
        f"UPDATE pgjobs_job_queue AS j SET {UNDO_CLAIM}, "
        "scheduled_for = now() + interval '1 hour' WHERE id = %s",
        [waiting.id],
    )
    handed_back = AttemptResult(took=0.01, handed_back=3600.0)
    while_claiming(monkeypatch, lambda: completer.finished(waiting, handed_back))
    completer.claim(conn, limit=1, **CLAIM)
    assert outcomes == [Outcome.HANDED_BACK]


def test_while_claims_fail_the_successes_are_written_on_their_own(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that keeps failing (a statement timeout on a slow claim, say) must not hold the
    successes that would have gone behind it, nor a write behind claims that keeps failing be
    tried again at every claim: the loop writes them the usual way, which backs off."""
    enqueue_many("test.record", [{}] * 50)  # more than any claim here takes
    worker = make_worker(concurrency=2)
    worker._open()
    conn = worker._ensure_connected()
    first = queries.claim_jobs(conn.cursor(), limit=1, **CLAIM)
    finished(worker._completer, first)

    def timed_out(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    with monkeypatch.context() as patched:
        patched.setattr(queries, "claim_jobs", timed_out)
        with pytest.raises(psycopg.errors.QueryCanceled):
            worker._fill_slots()
    worker._flush()  # the next turn would claim again: it writes them first
    assert get_job(first[0].id).status == "completed"

    second = queries.claim_jobs(conn.cursor(), limit=1, **CLAIM)
    finished(worker._completer, second)

    def refused(conn: psycopg.Connection[Any], **kwargs: Any) -> Any:
        raise psycopg.DataError("a parameter cannot be sent in this encoding")

    with monkeypatch.context() as patched:
        patched.setattr(queries, "send_completion", refused)
        assert worker._fill_slots()  # claimed; the write behind it failed
    assert get_job(second[0].id).status == "running"
    worker._slots.wait_idle()  # its jobs have run: their successes wait too, and jobs are due
    worker._flush()
    assert get_job(second[0].id).status == "completed"
