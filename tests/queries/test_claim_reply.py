"""What claim_jobs does with the claim's reply: ``meanwhile`` (the completions the worker sends
behind the claim) goes out before the rows are read, and the jobs carry the lease token the
claim set, one object for the whole claim."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue_many, queries
from django_pgjobs.prepared import preparing_cursor
from django_pgjobs.queues import set_queue_limits
from tests.helpers import second_connection

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM: dict[str, Any] = {
    "worker_id": "w", "lease_seconds": 60, "queues": None, "job_names": None,
}  # fmt: skip


@pytest.fixture
def conn() -> Iterator[psycopg.Connection[Any]]:
    made = second_connection()
    yield made
    made.close()


class Recorded:
    """A cursor that notes its calls in ``calls``, for the order they come in."""

    def __init__(self, cur: psycopg.Cursor[Any], calls: list[str]) -> None:
        self._cur, self.calls = cur, calls

    def execute(self, query: Any, params: Any = None) -> Any:
        self.calls.append("execute")
        return self._cur.execute(query, params)

    def fetchone(self) -> Any:
        self.calls.append("fetch")
        return self._cur.fetchone()

    def fetchall(self) -> Any:
        self.calls.append("fetch")
        return self._cur.fetchall()

    @property
    def pgresult(self) -> Any:
        return self._cur.pgresult

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._cur.connection


@pytest.mark.parametrize("flow", [False, True], ids=["plain", "flow control"])
def test_what_goes_behind_the_claim_is_sent_before_its_rows_are_read(
    conn: psycopg.Connection[Any], flow: bool
) -> None:
    if flow:  # the plain statement finds the rules, and the flow-controlled one claims
        set_queue_limits("default", concurrency=5)
    enqueue_many("test.record", [{}] * 3)
    calls: list[str] = []
    hint = queries.FlowHint()
    jobs = queries.claim_jobs(
        Recorded(conn.cursor(), calls),
        limit=10,
        hint=hint,
        meanwhile=lambda taken: calls.append(f"meanwhile {taken}"),
        **CLAIM,
    )
    assert len(jobs) == 3 and hint.restricted is flow
    # Told how many the plain claim took (no claim goes behind a flow-controlled one: 0).
    assert calls == ["execute"] * (1 + flow) + [f"meanwhile {0 if flow else 3}", "fetch"]


def test_in_a_callers_pipeline_flow_control_is_told_from_the_rows(
    conn: psycopg.Connection[Any],
) -> None:
    """In ``conn.pipeline()`` the reply is read only at the fetch: no raw result to look at."""
    set_queue_limits("default", concurrency=5)
    enqueue_many("test.record", [{}] * 3)
    hint = queries.FlowHint()
    with conn.pipeline():
        jobs = queries.claim_jobs(preparing_cursor(conn), limit=10, hint=hint, **CLAIM)
    assert len(jobs) == 3 and hint.restricted


def test_a_claim_that_raises_sends_nothing_behind_it(conn: psycopg.Connection[Any]) -> None:
    enqueue_many("test.record", [{}])  # a due job: the claim's walk reads its LIMIT
    calls: list[str] = []
    with pytest.raises(psycopg.errors.InvalidRowCountInLimitClause):
        queries.claim_jobs(
            conn.cursor(), limit=-1, meanwhile=lambda taken: calls.append("meanwhile"), **CLAIM
        )
    assert calls == []


@pytest.mark.parametrize("flow", [False, True], ids=["plain", "flow control"])
@pytest.mark.parametrize("given", [False, True], ids=["made here", "the caller's"])
def test_the_jobs_carry_the_lease_token_the_claim_set(
    conn: psycopg.Connection[Any], flow: bool, given: bool
) -> None:
    if flow:
        set_queue_limits("default", concurrency=5)
    enqueue_many("test.record", [{}] * 3)
    token = uuid.uuid4() if given else None
    jobs = queries.claim_jobs(
        preparing_cursor(conn),
        limit=10,
        lease_token=token,
        hint=queries.FlowHint(restricted=flow),
        **CLAIM,
    )
    assert len(jobs) == 3
    first = jobs[0].lease_token
    assert all(job.lease_token is first for job in jobs)  # one object: written once
    assert isinstance(first, uuid.UUID) and (token is None or first is token)
    stored = conn.execute(
        "SELECT DISTINCT lease_token FROM pgjobs_job_queue WHERE id = ANY(%s)",
        [[job.id for job in jobs]],
    ).fetchall()
    assert stored == [(first,)]
