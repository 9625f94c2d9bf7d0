"""After an outage longer than a lease: the first worker back gives the others the time to come
back and renew before it rescues anything."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db.models.functions import Now

from django_pgjobs import enqueue, get_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.models import Worker as WorkerRow
from tests.helpers import start_worker, wait_for
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Two roles, so the test can let one worker back in before the other. (Roles belong to the
# server, not the test database: the names say whose they are, and teardown drops them.)
RESCUER, OWNER = "pgjobs_test_rescuer", "pgjobs_test_owner"
FAST = {"LEASE_SECONDS": 0.5, "HEARTBEAT_SECONDS": 0.2, "POLL_INTERVAL": 0.2}


@pytest.fixture
def roles(other_connection: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    for role in (RESCUER, OWNER):
        other_connection.execute(f"DROP ROLE IF EXISTS {role}")
        other_connection.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    yield other_connection
    for role in (RESCUER, OWNER):
        other_connection.execute(f"ALTER ROLE {role} NOLOGIN")
        cut(other_connection, role)
        other_connection.execute(f"DROP ROLE IF EXISTS {role}")


def cut(conn: psycopg.Connection[Any], role: str) -> int:
    """End every session of ``role``; it cannot come back while it is NOLOGIN."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role]
    ).fetchall()
    return len(rows)


def connected(conn: psycopg.Connection[Any], worker_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s",
        [f"pgjobs worker {worker_id}"],
    ).fetchone()
    return row is not None


def test_the_first_worker_back_from_an_outage_does_not_rescue_live_workers_jobs(
    roles: psycopg.Connection[Any], processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job_id = enqueue("test.wait", {"release": str(release)})
    args = ("--no-scheduler", "--concurrency", "1")
    owner_log, rescuer_log = tmp_path / "owner.log", tmp_path / "rescuer.log"
    processes.append(
        start_worker(*args, "--worker-id", "owner", settings=FAST, log=owner_log, user=OWNER)
    )
    wait_for(lambda: Run.objects.filter(label="wait:started").exists(), what="the owner's job")
    processes.append(
        start_worker(*args, "--worker-id", "rescuer", settings=FAST, log=rescuer_log, user=RESCUER)
    )
    wait_for(lambda: WorkerRow.objects.filter(id="rescuer").exists(), what="the rescuer")

    # The outage: both are cut off until the owner's lease has run out.
    for role in (RESCUER, OWNER):
        roles.execute(f"ALTER ROLE {role} NOLOGIN")
        assert cut(roles, role) >= 1
    wait_for(
        lambda: Job.objects.filter(id=job_id, lease_expires_at__lt=Now()).exists(),
        what="the owner's lease to expire",
    )
    # The rescuer is back first; the owner a moment later (its next reconnect attempt).
    roles.execute(f"ALTER ROLE {RESCUER} LOGIN")
    wait_for(lambda: connected(roles, "rescuer"), what=f"the rescuer back; log:\n{rescuer_log}")
    roles.execute(f"ALTER ROLE {OWNER} LOGIN")
    wait_for(lambda: connected(roles, "owner"), what=f"the owner back; log:\n{owner_log}")
    wait_for(
        lambda: Job.objects.filter(id=job_id, lease_expires_at__gt=Now()).exists(),
        what="the owner to renew its lease",
    )
    release.touch()
    wait_for(lambda: get_job(job_id).status == "completed", what=f"completion; log:\n{owner_log}")
    job = get_job(job_id)
    assert (job.attempt, job.error) == (1, None), rescuer_log.read_text()
    assert Run.objects.filter(label="wait:started").count() == 1  # it ran once


def test_an_attempt_that_lost_its_database_connection_does_not_count(
    other_connection: psycopg.Connection[Any],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """The database went away under the handler: not the job's fault, so the attempt does not
    count (once per job), and a max_attempts=1 job runs again instead of dying."""
    release = tmp_path / "release"
    job_id = enqueue("test.query_after_wait", {"release": str(release)})  # max_attempts=1
    log = tmp_path / "worker.log"
    processes.append(start_worker("--no-scheduler", settings={"RETRY_DELAY": 0.1}, log=log))
    run = wait_for(
        lambda: Run.objects.filter(label__startswith="started:").first(), what="the handler"
    )
    assert run is not None
    handler_pid = int(run.label.split(":")[1])
    other_connection.execute("SELECT pg_terminate_backend(%s)", [handler_pid])
    release.touch()
    wait_for(lambda: get_job(job_id).status == "completed", what=f"completion; log:\n{log}")
    assert not FailedJob.objects.filter(id=job_id).exists()
    job = Job.objects.get(id=job_id)
    assert (job.attempt, job.attempt_spared) == (1, True)
    assert job.error is not None and "OperationalError" in job.error
    assert Run.objects.filter(label__startswith="started:").count() == 2
    assert Run.objects.filter(label="finished").count() == 1


def test_a_freshly_started_worker_gives_live_workers_the_time_to_renew_before_it_rescues(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A worker that exited during an outage and was restarted by its supervisor does not know
    that the others were cut off too: a lease that ran out just before it started is not
    rescued until its worker had the time to reconnect and renew; then, if it did not, it is."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from django_pgjobs import queries

    job_id = enqueue("test.record", {"label": "live's"})
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="live", limit=1, lease_seconds=30, queues=None, job_names=None,
            start_now=1,
        )  # fmt: skip
    # Its worker was cut off: the lease ran out a moment ago; it reconnects any time now.
    Job.objects.filter(id=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    log = tmp_path / "fresh.log"
    processes.append(start_worker("--no-scheduler", settings=FAST, log=log))
    marker = enqueue("test.record", {"label": "marker"})
    wait_for(lambda: get_job(marker).status == "completed", what=f"a first cycle; log:\n{log}")
    job = get_job(job_id)
    assert (job.status, job.attempt, job.locked_by) == ("running", 1, "live"), log.read_text()
    # The live worker never came back: after the hold its job is rescued and runs again.
    wait_for(lambda: get_job(job_id).status == "completed", what=f"the rescue; log:\n{log}")
    job = get_job(job_id)
    assert job.attempt == 2 and job.locked_by not in (None, "live")  # the fresh worker ran it
    assert [(e["attempt"], e["worker"]) for e in job.error_history] == [(1, "live")]
