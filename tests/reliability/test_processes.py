"""Real worker processes, real signals, real lost connections."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from django.db.models.functions import Now

from django_pgjobs import cancel_job, enqueue, enqueue_many, get_job, queries
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker.connection import LoopConnection
from tests.helpers import add_schedule, make_schedule_due, start_worker, wait_for
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Short leases so a killed worker's job is rescued within a second or two.
FAST_LEASES = {"LEASE_SECONDS": 1.0, "HEARTBEAT_SECONDS": 0.2, "POLL_INTERVAL": 0.2}


def exit_code(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None


def started(label: str = "block") -> Callable[[], bool]:
    return lambda: Run.objects.filter(label=f"{label}:started").exists()


# The worker's own life at INFO (a stop signal is logged there: a normal stop), to wait on.
WORKER_AT_INFO = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_pgjobs.worker": {"handlers": ["console"], "level": "INFO"}},
}


def worker_inside_a_handler(
    processes: list[subprocess.Popen[bytes]],
    log: Path,
    *args: str,
    settings: dict[str, Any] | None = None,
    logging: dict[str, Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a worker process and return once it is inside the test.block handler."""
    proc = start_worker(*args, settings=settings, log=log, logging=logging)
    processes.append(proc)
    wait_for(started(), what=f"handler start; worker log:\n{log}")
    return proc


def test_two_worker_processes_never_run_the_same_job(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    ids = enqueue_many("test.record", [{"label": str(n)} for n in range(400)])
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    for log in logs:
        processes.append(start_worker("--burst", "--concurrency", "4", log=log))
    for proc, log in zip(processes, logs, strict=True):
        assert exit_code(proc, log) == 0, log.read_text()
    labels = list(Run.objects.values_list("label", flat=True))
    assert sorted(labels, key=int) == [str(n) for n in range(400)]  # each exactly once
    assert Job.objects.filter(id__in=ids, status="completed", attempt=1).count() == 400


def test_sigterm_lets_the_running_handler_finish_then_exits_0(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job_id = enqueue("test.block", {"release": str(release)})
    log = tmp_path / "worker.log"
    proc = worker_inside_a_handler(processes, log, "--concurrency", "2", logging=WORKER_AT_INFO)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: b"Received SIGTERM" in log.read_bytes(), what="signal logged")
    assert proc.poll() is None  # still draining
    enqueue("test.record", {"label": "after sigterm"})  # must not be claimed any more
    release.touch()
    assert exit_code(proc, log) == 0, log.read_text()
    assert get_job(job_id).status == "completed"
    assert Run.objects.filter(label="block:finished").count() == 1
    assert not Run.objects.filter(label="after sigterm").exists()
    assert Job.objects.filter(status="pending").count() == 1
    assert not WorkerRow.objects.exists()


def test_sigterm_after_the_grace_period_hands_the_job_back(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    job_id = enqueue("test.block", {"release": str(tmp_path / "never"), "timeout": 60})
    log = tmp_path / "worker.log"
    proc = worker_inside_a_handler(processes, log, settings={"SHUTDOWN_GRACE": 0.5})
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, log, timeout=15) == 0, log.read_text()
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("pending", 1)
    assert job.error is not None and job.error.startswith("WorkerShutdown")
    assert not WorkerRow.objects.exists()
    assert "grace period: its attempt 1/3 fails (WorkerShutdown)." in log.read_text()


def test_sigterm_after_the_grace_period_on_the_last_attempt_says_it_is_buried(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A failed attempt, as any: on the last one the job goes to the dead letters, which the
    line said was "handing it back" (a new user's trial)."""
    job_id = enqueue(
        "test.block", {"release": str(tmp_path / "never"), "timeout": 60}, max_attempts=1
    )
    log = tmp_path / "worker.log"
    proc = worker_inside_a_handler(processes, log, settings={"SHUTDOWN_GRACE": 0.5})
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, log, timeout=15) == 0, log.read_text()
    assert FailedJob.objects.filter(id=job_id).exists()
    said = log.read_text()
    assert "grace period: its attempt 1/1 fails (WorkerShutdown)." in said
    assert "failed its last attempt (1/1) and moved to the dead letters" in said
    assert "handing it back" not in said


def test_sigterm_leaves_a_cancelled_attempts_handler_alone_and_says_nothing_of_it(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Its job is no longer the attempt's: "handing it back" was logged for it all the same,
    beside its cancel's line (a new user's trial)."""
    job_id = enqueue("test.block", {"release": str(tmp_path / "never"), "timeout": 60})
    log = tmp_path / "worker.log"
    proc = worker_inside_a_handler(processes, log, settings={"SHUTDOWN_GRACE": 0.5})
    cancel_job(job_id)
    wait_for(lambda: b"was cancelled or taken over" in log.read_bytes(), what="the cancel heard")
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, log, timeout=15) == 0, log.read_text()
    assert "grace period" not in log.read_text()
    assert get_job(job_id).status == "cancelled"


def test_a_second_signal_exits_at_once(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    job_id = enqueue("test.block", {"release": str(tmp_path / "never"), "timeout": 60})
    log = tmp_path / "worker.log"
    proc = worker_inside_a_handler(processes, log, logging=WORKER_AT_INFO)
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: b"Received SIGINT" in log.read_bytes(), what="first signal handled")
    proc.send_signal(signal.SIGINT)
    assert exit_code(proc, log, timeout=5) == 1
    # Nothing was written on the way out: the lease will hand the job to another worker.
    assert get_job(job_id).status == "running"


def test_sigkill_mid_job_is_recovered_with_exactly_one_completion(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job_id = enqueue("test.block", {"release": str(release)})
    log_a = tmp_path / "a.log"
    victim = worker_inside_a_handler(processes, log_a, settings=FAST_LEASES)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    assert get_job(job_id).status == "running"

    def lease_expired() -> bool:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT lease_expires_at < now() FROM pgjobs_job_queue WHERE id = %s", [job_id]
            )
            return bool(cur.fetchone()[0])

    wait_for(lease_expired, what="the dead worker's lease to expire")
    release.touch()
    log_b = tmp_path / "b.log"
    rescuer = start_worker("--burst", settings=FAST_LEASES, log=log_b)
    processes.append(rescuer)
    assert exit_code(rescuer, log_b) == 0, log_b.read_text()
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("completed", 2)
    assert job.error is not None and "stopped heartbeating during attempt 1" in job.error
    assert Run.objects.filter(label="block:started").count() == 2
    assert Run.objects.filter(label="block:finished").count() == 1


def test_a_job_that_keeps_killing_its_worker_ends_in_the_dead_letters(
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    other_connection: psycopg.Connection[Any],
) -> None:
    job_id = enqueue("test.block", {"release": str(tmp_path / "never")}, max_attempts=1)
    log = tmp_path / "a.log"
    victim = worker_inside_a_handler(processes, log, settings=FAST_LEASES)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    rescuer = start_worker(settings=FAST_LEASES, log=tmp_path / "b.log")
    processes.append(rescuer)
    wait_for(lambda: FailedJob.objects.filter(id=job_id).exists(), what="dead letter")
    assert "Lease expired" in (FailedJob.objects.get(id=job_id).error or "")


def test_worker_survives_a_lost_database_connection(
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    other_connection: psycopg.Connection[Any],
) -> None:
    log = tmp_path / "worker.log"
    proc = start_worker("--worker-id", "survivor", settings={"POLL_INTERVAL": 0.2}, log=log)
    processes.append(proc)
    wait_for(lambda: WorkerRow.objects.filter(id="survivor").exists(), what="worker registered")

    def kill_worker_sessions() -> int:
        rows = other_connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'pgjobs worker survivor'"
        ).fetchall()
        return len(rows)

    assert kill_worker_sessions() == 1
    job_id = enqueue("test.record", {"label": "after reconnect"})
    wait_for(lambda: get_job(job_id).status == "completed", what=f"completion; log:\n{log}")
    assert proc.poll() is None
    assert b"reconnecting" in log.read_bytes()


def test_a_worker_refuses_the_id_of_a_live_worker(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job_id = enqueue("test.block", {"release": str(release)})
    first = worker_inside_a_handler(
        processes, tmp_path / "a.log", "--worker-id", "twin", "--no-scheduler"
    )
    token = get_job(job_id).lease_token
    # A schedule due now: the refused worker must not fire it (before, its scheduler thread
    # started before the refusal and fired the missed ticks).
    add_schedule("due", "* * * * *", catch_up="all", catch_up_limit=5)
    make_schedule_due("due", ago=timedelta(minutes=3))
    log = tmp_path / "b.log"
    second = start_worker("--worker-id", "twin", log=log, logging=WORKER_AT_INFO)
    processes.append(second)
    assert exit_code(second, log) == 1, log.read_text()
    assert "Worker id 'twin' belongs to a live worker" in log.read_text()
    assert "connected" not in log.read_text()  # it said so before the refusal (a trial)
    assert not Job.objects.filter(job_name="test.record").exists()
    # The live worker keeps its row, its job and its lease, and finishes the job once.
    assert WorkerRow.objects.get(id="twin").pid == first.pid
    assert get_job(job_id).lease_token == token
    release.touch()
    wait_for(lambda: get_job(job_id).status == "completed", what="the first worker's completion")
    assert Run.objects.filter(label="block:started").count() == 1


def test_a_reconnect_never_gives_back_another_process_s_job_under_the_same_id(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """What the second `twin` would have done had it started: reconnect and give back the
    running jobs under its id. Only claims it lost are given back, by their lease token."""
    release = tmp_path / "release"
    job_id = enqueue("test.block", {"release": str(release)}, queue="a")
    worker_inside_a_handler(processes, tmp_path / "a.log", "--worker-id", "twin", "--queues", "a")
    link = LoopConnection(alias="default", worker_id="twin", queues=["b"], listen=False)
    link.open()
    lost_job = enqueue("test.record", queue="b")
    assert link.conn is not None
    with pytest.raises(psycopg.OperationalError), link.claim_token() as lease_token:
        queries.claim_jobs(
            link.conn.cursor(), worker_id="twin", limit=1, lease_seconds=30, queues=["b"],
            job_names=None, lease_token=lease_token,
        )  # fmt: skip
        link.conn.close()  # the claim committed; its reply is lost with the connection
        link.conn.execute("SELECT 1")
    link.conn = None
    assert link.open() == 1  # the reconnect gives back what the lost claim took, only that
    link.close(deregister_instance=None)
    assert (get_job(lost_job).status, get_job(lost_job).attempt) == ("pending", 0)
    job = get_job(job_id)
    assert (job.status, job.locked_by) == ("running", "twin")
    release.touch()
    wait_for(lambda: get_job(job_id).status == "completed", what="the first worker's completion")
    assert Run.objects.filter(label="block:started").count() == 1


def test_jobs_claimed_ahead_by_a_killed_worker_do_not_lose_an_attempt(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A claim that never started is not an attempt: max_attempts=1 jobs the dead worker had
    prefetched run afterwards instead of landing in the dead letters untouched."""
    warm = enqueue_many("test.record", [{"label": f"warm-{n}"} for n in range(10)])
    log = tmp_path / "a.log"
    victim = start_worker("--concurrency", "1", settings=FAST_LEASES, log=log)
    processes.append(victim)
    # Short jobs teach the worker the pace, so its next claim takes jobs ahead.
    wait_for(
        lambda: Job.objects.filter(id__in=warm, status="completed").count() == 10,
        what=f"the first jobs; log:\n{log}",
    )
    release = tmp_path / "release"
    with transaction.atomic():  # one NOTIFY: the idle worker claims them together
        blocker = enqueue("test.block", {"release": str(release)}, priority=50)
        ahead = enqueue_many(
            "test.record", [{"label": f"ahead-{n}"} for n in range(20)], max_attempts=1
        )
    # The blocker holds the one thread; the jobs claimed behind it wait and never start.
    wait_for(started(), what=f"the blocker; log:\n{log}")
    wait_for(
        lambda: Job.objects.filter(id=blocker, locked_at__isnull=False).exists(),
        what="the heartbeat to record that the blocker started",
    )
    claimed_ahead = Job.objects.filter(id__in=ahead, status="running").count()
    assert claimed_ahead >= 1, f"nothing was claimed ahead; log:\n{log.read_text()}"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    wait_for(
        lambda: not Job.objects.filter(status="running", lease_expires_at__gt=Now()).exists(),
        what="the dead worker's leases to expire",
    )
    release.touch()
    log_b = tmp_path / "b.log"
    rescuer = start_worker("--burst", settings=FAST_LEASES, log=log_b)
    processes.append(rescuer)
    assert exit_code(rescuer, log_b) == 0, log_b.read_text()
    assert not FailedJob.objects.filter(id__in=ahead).exists()
    assert Job.objects.filter(id__in=ahead, status="completed", attempt=1).count() == 20
    job = get_job(blocker)  # it started: its attempt counted
    assert (job.status, job.attempt) == ("completed", 2)
