"""Our statements through PgBouncer in transaction mode, where consecutive transactions of one
client run on different server sessions: nothing prepared on one may be looked for on another."""

from __future__ import annotations

import functools
import threading

import pytest
from django.db import connections, transaction

from django_pgjobs import enqueue, enqueue_many, queries
from django_pgjobs.database import through_pooler
from django_pgjobs.models import Job
from django_pgjobs.prepared import _may_prepare
from django_pgjobs.worker import Worker
from tests.helpers import in_thread
from tests.testapp.models import Run

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "pooled"]),
    pytest.mark.usefixtures("pgbouncer"),
]

CLIENTS = 8  # twice the pool's server connections
ENQUEUES = 60  # each: far past the sixth run, where a statement would be prepared


def raw(alias: str) -> object:
    connections[alias].ensure_connection()
    return connections[alias].connection


def test_a_connection_through_the_pooler_is_told_apart_from_a_direct_one() -> None:
    assert through_pooler(raw("pooled"))  # type: ignore[arg-type]
    assert not through_pooler(raw("default"))  # type: ignore[arg-type]


def test_many_clients_enqueue_through_the_pooler_without_a_prepared_statement_error() -> None:
    """Measured before: 84 of 800 enqueues failed ("prepared statement "_pg3_0" does not
    exist") or ran another client's statement. Each client here keeps its connection."""
    failures: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def client(n: int) -> None:
        start.wait()  # all at once: the pooler hands each transaction any free session
        try:
            for i in range(ENQUEUES):
                if i % 10 == 9:  # inside a transaction too, where no retry can hide it
                    with transaction.atomic(using="pooled"):
                        enqueue_many("test.record", [{"c": n, "i": i}], using="pooled")
                else:
                    enqueue("test.record", {"c": n, "i": i}, using="pooled")
        except BaseException as exc:
            failures.append(exc)

    threads = [in_thread(functools.partial(client, n)) for n in range(CLIENTS)]
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert Job.objects.count() == CLIENTS * ENQUEUES
    rows = Job.objects.values_list("payload", flat=True)
    assert {(p["c"], p["i"]) for p in rows} == {
        (c, i) for c in range(CLIENTS) for i in range(ENQUEUES)
    }


def test_workers_claim_through_the_pooler_and_never_prepare_their_claim(
    make_worker: type[Worker],
) -> None:
    """Straight to PostgreSQL a worker prepares its idle claim (prepared.preparing_cursor);
    through the pooler it must not: the next claim would look for it on another session.
    Several workers, each far past the sixth claim, sharing the pool's sessions."""
    workers = [make_worker(concurrency=1, using="pooled", listen=False) for _ in range(CLIENTS)]
    for n in range(ENQUEUES // 4):
        for worker in workers:
            enqueue("test.record", {"label": f"pooled {n}"})
            assert worker.run_once().completed == 1
    for worker in workers:
        assert worker._link.conn is not None
        assert not _may_prepare(worker._link.conn)
    assert Job.objects.filter(status="completed").count() == CLIENTS * (ENQUEUES // 4)


def test_busy_workers_send_their_claims_behind_completions_through_the_pooler(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy worker's next claim goes behind its completions in one pipeline of two
    transactions (queries.claim_behind): through the pooler each may run on another session."""
    behind: list[int] = []
    real = queries.ClaimBehind

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            behind.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(queries, "ClaimBehind", Counted)
    enqueue_many("test.record", [{"label": str(n)} for n in range(1500)])
    workers = [make_worker(concurrency=2, using="pooled", listen=False) for _ in range(3)]
    threads = [in_thread(functools.partial(w.run, burst=True)) for w in workers]
    for thread in threads:
        thread.join(120)
    assert behind, "no claim went behind the completions"
    assert sum(w.stats.db_errors for w in workers) == 0
    assert set(Job.objects.values_list("status", "attempt")) == {("completed", 1)}
    assert sorted(Run.objects.values_list("label", flat=True)) == sorted(
        str(n) for n in range(1500)
    )
