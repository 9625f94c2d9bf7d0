"""The rescue counts an attempt only if it started: jobs claimed ahead and never started go back
uncounted, once; the heartbeat records when a job claimed ahead starts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import enqueue, get_job, queries, start_workflow
from django_pgjobs.jobs import retry_dead_letter_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.queries import workflow_reads

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = {
    "id": "w",
    "hostname": "h",
    "pid": 1,
    "queues": "[]",
    "concurrency": 1,
    "instance_token": None,
}


def claim(limit: int, start_now: int | None) -> list[queries.ClaimedJob]:
    with connection.cursor() as cur:
        return queries.claim_jobs(
            cur,
            worker_id="w",
            limit=limit,
            lease_seconds=30,
            queues=None,
            job_names=None,
            start_now=start_now,
        )


def expire_and_rescue() -> queries.rescue.Rescued:
    Job.objects.filter(status="running").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with connection.cursor() as cur:
        return queries.rescue_expired_leases(cur)


def test_a_job_claimed_ahead_and_never_started_is_rescued_without_losing_an_attempt() -> None:
    started = enqueue("test.record", max_attempts=1, priority=1)
    ahead = enqueue("test.record", max_attempts=1)
    assert [j.id for j in claim(2, start_now=1)] == [started, ahead]
    assert Job.objects.get(id=started).locked_at is not None
    assert Job.objects.get(id=ahead).locked_at is None  # claimed ahead, not started
    rescued = expire_and_rescue()
    assert (rescued.retried, rescued.buried, rescued.unstarted) == (0, 1, 1)
    assert FailedJob.objects.filter(id=started).exists()  # it started: its attempt counts
    job = get_job(ahead)
    assert (job.status, job.attempt, job.locked_by, job.error) == ("pending", 0, None, None)


def test_a_job_rescued_unstarted_once_counts_its_next_claim_at_once() -> None:
    """A job that kills its worker before its start could be recorded is spared once, not for
    ever: it still ends in the dead letters."""
    job_id = enqueue("test.record", max_attempts=1)
    claim(1, start_now=0)
    assert expire_and_rescue().unstarted == 1
    assert Job.objects.get(id=job_id).attempt_spared
    claim(1, start_now=0)  # claimed ahead again, but it counts now
    assert Job.objects.get(id=job_id).locked_at is not None
    rescued = expire_and_rescue()
    assert (rescued.unstarted, rescued.buried) == (0, 1)
    assert FailedJob.objects.filter(id=job_id).exists()


def test_the_heartbeat_records_when_a_job_claimed_ahead_started() -> None:
    enqueue("test.record", max_attempts=1)
    (job,) = claim(1, start_now=0)
    with connection.cursor() as cur:
        queries.heartbeat(cur, worker=WORKER, tokens=[job.token], lease_seconds=30)
        assert Job.objects.get(id=job.id).locked_at is None  # not started yet
        queries.heartbeat(
            cur, worker=WORKER, tokens=[job.token], lease_seconds=30, started=[(job.token, 5.0)]
        )
        cur.execute("SELECT now()")
        now = cur.fetchone()[0]
    locked_at = Job.objects.get(id=job.id).locked_at
    assert locked_at is not None and abs((now - locked_at).total_seconds() - 5.0) < 0.5
    rescued = expire_and_rescue()
    assert (rescued.unstarted, rescued.buried) == (0, 1)  # it started: the attempt counts


def test_an_attempt_that_lost_its_connection_is_spared_once() -> None:
    """fail_job(spare=True): not counted the first time; a job whose every attempt loses its
    connection still ends in the dead letters."""
    job_id = enqueue("test.record", max_attempts=1)
    for expected in ("retried", "buried"):
        (job,) = claim(1, start_now=None)
        with connection.cursor() as cur:
            outcome = queries.fail_job(
                cur, token=job.token, error="OperationalError: gone", delay=0, spare=True
            )
        assert outcome == expected
        if expected == "retried":
            row = Job.objects.get(id=job_id)
            assert (row.status, row.attempt, row.attempt_spared) == ("pending", 0, True)
    assert FailedJob.objects.filter(id=job_id).exists()


def test_the_rescue_returns_each_job_it_buries_and_the_workflows_they_killed_are_found() -> None:
    """What the signals need: each dead letter with the dead worker that held it, and the
    workflows a dead letter made dead (written by the same transaction), not one dead before."""
    flow = start_workflow("test.greet", "Al").workflow_id
    Job.objects.filter(key=f"pgjobs.workflow:{flow}").update(max_attempts=1)
    [job] = claim(1, start_now=1)
    [dead] = expire_and_rescue().dead_letters
    assert (dead.id, dead.job_name, dead.queue, dead.attempt, dead.worker_id) == (
        job.id, job.job_name, job.queue, 1, "w"
    )  # fmt: skip
    assert dead.error.startswith("Lease expired: worker w stopped heartbeating during attempt 1")
    with connection.cursor() as cur:
        [killed] = workflow_reads.killed_by(cur, [job.id])
        assert (killed.workflow_id, killed.name) == (flow, "test.greet")
        assert killed.error == (
            "WorkflowDead: The workflow was moved to the dead letters after 1 attempts.\n"
            + dead.error
        )
    # Requeued, and buried again before it ran: the workflow was dead already.
    retry_dead_letter_job(job.id)
    claim(1, start_now=1)
    assert [d.id for d in expire_and_rescue().dead_letters] == [job.id]
    with connection.cursor() as cur:
        assert workflow_reads.killed_by(cur, [job.id]) == []
