"""The worker's background duties: rescuing expired leases, pruning finished jobs, forgetting
dead workers."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.observability.display import local_time
from django_pgjobs.worker import Worker

# Their workers' sweeps rescue expired leases: the server must have been up for the hold.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("rescuable")]


def test_rescue_retries_or_buries_expired_leases(make_worker: type[Worker]) -> None:
    retry_me = enqueue("test.record", {"label": "rescued"})
    bury_me = enqueue("test.record", max_attempts=1)
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="dead", limit=2, lease_seconds=30, queues=None, job_names=None
        )
    Job.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    stats = make_worker().run_once()
    assert stats.rescued == 2
    assert FailedJob.objects.get(id=bury_me).error.startswith("Lease expired: worker dead")  # type: ignore[union-attr]
    job = get_job(retry_me)
    assert (job.status, job.attempt) == ("completed", 2)


def test_the_rescue_line_names_the_dead_workers_and_the_first_jobs(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    job_ids = [enqueue("test.record", max_attempts=1 if n == 0 else 3) for n in range(7)]
    with connection.cursor() as cur:
        for worker_id, limit in (("dead-a", 4), ("dead-b", 3)):
            queries.claim_jobs(
                cur, worker_id=worker_id, limit=limit, lease_seconds=30, queues=None,
                job_names=None, start_now=limit,
            )  # fmt: skip
    Job.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with caplog.at_level(logging.WARNING, logger="django_pgjobs.worker"):
        assert make_worker().run_once().rescued == 7
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Rescued")]
    first = sorted(map(str, job_ids))[:5]
    assert record.getMessage() == (
        f"Rescued 7 jobs ({', '.join(first)} and 2 more) of 2 dead workers (dead-a, dead-b): "
        "1 dead-lettered, 0 never started"
    )
    assert (record.job_ids, record.dead_worker_ids, record.dead_workers) == (  # type: ignore[attr-defined]
        first,
        ["dead-a", "dead-b"],
        2,
    )
    assert (record.rescued, record.dead_lettered) == (7, 1)  # type: ignore[attr-defined]


@override_settings(TIME_ZONE="Europe/Paris")
def test_a_rescued_attempt_s_error_gives_its_start_as_every_pgjobs_time(
    make_worker: type[Worker],
) -> None:
    """In TIME_ZONE with the offset, to the second (display.local_time), not PostgreSQL's
    text of a timestamptz (``13:11:57.648235+00``)."""
    job_id = enqueue("test.record")
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="dead", limit=1, lease_seconds=30, queues=None, job_names=None
        )
    started = Job.objects.get(id=job_id).locked_at
    assert started is not None
    Job.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    worker = make_worker(queues=["nothing-here"])  # rescues, runs nothing
    assert worker.run_once().rescued == 1
    assert Job.objects.get(id=job_id).error == (
        "Lease expired: worker dead stopped heartbeating during attempt 1 "
        f"(started at {local_time(started)})."
    )
    assert local_time(started).endswith(("+0100", "+0200"))


@override_settings(PGJOBS={"RETENTION": 60})
def test_worker_prunes_old_finished_jobs_and_forgets_dead_workers(
    make_worker: type[Worker],
) -> None:
    old = enqueue("test.record")
    Job.objects.filter(id=old).update(
        status="completed", completed_at=timezone.now() - timedelta(minutes=2)
    )
    WorkerRow.objects.create(id="gone", last_heartbeat_at=timezone.now() - timedelta(hours=1))
    make_worker().run(burst=True)
    assert not Job.objects.filter(id=old).exists()
    assert not WorkerRow.objects.exists()


def test_no_rescue_until_the_database_server_has_been_up_for_a_hold(
    make_worker: type[Worker],
) -> None:
    """After a restart of PostgreSQL every lease ran out during the downtime through no fault of
    its worker: a worker started then (even a burst one) rescues nothing until the server has
    been up for a hold, database time. A hold longer than the server's uptime stands in for a
    restart that just happened."""
    job_id = enqueue("test.record", {"label": "live's"})
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="live", limit=1, lease_seconds=30, queues=None, job_names=None
        )
        cur.execute("SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8")
        uptime = cur.fetchone()[0]
    Job.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with override_settings(PGJOBS={"LEASE_SECONDS": uptime + 60}):
        assert make_worker().run_once().rescued == 0
    job = get_job(job_id)
    assert (job.status, job.attempt, job.locked_by) == ("running", 1, "live")
    # The server has been up for longer than the usual hold: rescued as ever.
    assert make_worker().run_once().rescued == 1
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("completed", 2)
