"""The completer tells a batch's attempts apart by lease token, not by job id: a batch can hold
a stale attempt of a job beside the job's new one (its lease ran out, the rescue gave it back and
this same worker claimed it again while the stale handler still ran). Only the attempt holding
the row completes it; the stale one's outcome is dropped (LOST), and its result is never kept."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.jobs.context import AttemptNotes
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import Completer
from django_pgjobs.worker.outcomes import Outcome, Written

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM: dict[str, Any] = {
    "worker_id": "w",
    "limit": 1,
    "lease_seconds": 60,
    "queues": None,
    "job_names": None,
}


def _claimed_again(conn: psycopg.Connection[Any]) -> tuple[queries.ClaimedJob, queries.ClaimedJob]:
    """A job claimed, then held by a new attempt of the same worker: (stale, fresh)."""
    enqueue("test.record")
    (stale,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    token = uuid.uuid4()
    conn.execute(
        "UPDATE pgjobs_job_queue SET lease_token = %s, attempt = attempt + 1 WHERE id = %s",
        [token, stale.id],
    )
    return stale, dataclasses.replace(stale, lease_token=token, attempt=stale.attempt + 1)


def _succeeded(result: Any) -> AttemptResult:
    return AttemptResult(took=0.01, notes=AttemptNotes(result=json.dumps(result)))


@pytest.mark.parametrize("stale_first", [True, False])
@pytest.mark.parametrize("carried", [False, True])
def test_only_the_attempt_holding_the_row_completes_it(
    conn: psycopg.Connection[Any], stale_first: bool, carried: bool
) -> None:
    """Written alone or carried by a claim, in either order."""
    stale, fresh = _claimed_again(conn)
    completed: list[list[queries.ClaimedJob]] = []
    written: list[Written] = []
    completer = Completer(
        wake=lambda: None, on_written=written.append, on_completed=completed.append
    )
    pairs = [(stale, "stale"), (fresh, "fresh")]
    for job, result in pairs if stale_first else reversed(pairs):
        completer.finished(job, _succeeded(result))
    if carried:
        completer.claim(conn, **CLAIM)
    else:
        completer.write(conn)
    assert completed == [[fresh]]
    assert [(w.job, w.outcome) for w in written] == [(stale, Outcome.LOST)]
    assert not completer.pending()
    row = get_job(fresh.id)
    assert (row.status, row.result) == ("completed", "fresh")


def test_an_attempt_in_doubt_is_out_of_doubt_once_its_completion_matched(
    conn: psycopg.Connection[Any],
) -> None:
    """Its earlier write lost its reply and did not commit: this one matched, and it is handed
    on with the batch as completed."""
    enqueue("test.record")
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    completed: list[list[queries.ClaimedJob]] = []
    written: list[Written] = []
    completer = Completer(
        wake=lambda: None, on_written=written.append, on_completed=completed.append
    )
    completer._doubt._tokens.add(job.token)
    completer.finished(job, AttemptResult(took=0.0))
    completer.write(conn)
    assert (completed, written, completer._doubt._tokens) == ([[job]], [], set())
    assert get_job(job.id).status == "completed"
