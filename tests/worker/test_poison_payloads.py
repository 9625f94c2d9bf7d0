"""A payload PostgreSQL accepts but Python's json cannot decode (written by SQL or another
language): only that job fails, dead-lettered at once; the rest of the batch runs and the worker
stays up."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from django.db import connection

from django_pgjobs import enqueue_many
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker
from tests.helpers import start_worker, stop
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

# Both are valid jsonb: 1e5000 is stored as a 5,001-digit number, past Python's int limit;
# 3,000 levels of nesting are past its recursion limit.
POISON = {
    "number": ("""'{"amount": 1e5000}'""", "ValueError: a number has more digits than Python"),
    "nesting": ("repeat('[', 3000) || repeat(']', 3000)", "RecursionError: nested deeper"),
}


def enqueue_from_sql(payload_sql: str, job_name: str = "test.record") -> uuid.UUID:
    with connection.cursor() as cur:
        cur.execute(f"SELECT pgjobs_enqueue(%s, ({payload_sql})::jsonb)", [job_name])
        return uuid.UUID(str(cur.fetchone()[0]))


@pytest.mark.parametrize("kind", sorted(POISON))
def test_only_the_poison_job_fails_dead_lettered_at_once_and_the_batch_runs(
    make_worker: type[Worker], kind: str
) -> None:
    payload_sql, reason = POISON[kind]
    good = enqueue_many("test.record", [{"label": f"good {n}"} for n in range(3)])
    poison = enqueue_from_sql(payload_sql)
    worker = make_worker(concurrency=4)
    stats = worker.run_once()
    # All four in one claim: the three others ran.
    assert (stats.claimed, stats.completed, stats.buried, stats.retried) == (4, 3, 1, 0)
    assert sorted(Run.objects.values_list("label", flat=True)) == ["good 0", "good 1", "good 2"]
    assert set(Job.objects.values_list("id", flat=True)) == set(good)
    dead = FailedJob.objects.get(id=poison)
    # At once: its first attempt, with two left that no retry could use.
    assert (dead.attempt, dead.max_attempts) == (1, 3)
    first_line = (dead.error or "").split("\n", 1)[0]
    assert first_line.startswith(
        f"django_pgjobs.exceptions.PayloadNotDecodable: payload cannot be decoded: {reason}"
    ), first_line
    # The dead letter keeps the payload exactly as stored.
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT payload = ({payload_sql})::jsonb FROM pgjobs_failed_jobs WHERE id = %s",
            [poison],
        )
        assert cur.fetchone()[0] is True
    # The worker is still usable.
    enqueue_many("test.record", [{"label": "after"}])
    assert worker.run_once().completed == 1


def test_a_worker_process_survives_poison_payloads_and_runs_the_rest(tmp_path: Path) -> None:
    good = enqueue_many("test.record", [{"label": f"good {n}"} for n in range(20)])
    poison = [enqueue_from_sql(sql) for sql, _ in POISON.values()]
    log = tmp_path / "worker.log"
    proc = start_worker("--burst", "--concurrency", "4", log=log)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not finish; its log:\n{log.read_text()}") from None
    finally:
        stop(proc)
    assert Run.objects.filter(label__startswith="good ").count() == 20
    assert set(Job.objects.filter(status="completed").values_list("id", flat=True)) == set(good)
    assert sorted(FailedJob.objects.values_list("id", flat=True)) == sorted(poison)
    text = log.read_text()
    assert "no retry can succeed: django_pgjobs.exceptions.PayloadNotDecodable" in text, text
    assert "Traceback" not in text, text
