"""Workflows under real worker processes killed with SIGKILL."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from django_pgjobs import get_workflow, start_workflow
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.workflows import list_workflow_steps
from tests.helpers import start_worker, wait_for
from tests.testapp import workflows as wf

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST_LEASES = {"LEASE_SECONDS": 1.0, "HEARTBEAT_SECONDS": 0.2, "POLL_INTERVAL": 0.2}


def test_sigkill_mid_workflow_resumes_after_the_last_checkpoint(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    flag = tmp_path / "hold"
    flag.touch()
    handle = start_workflow(wf.five_steps, "kill", str(flag))
    first = start_worker(settings=FAST_LEASES, log=tmp_path / "first.log")
    processes.append(first)
    # Steps 0-2 are checkpointed and step 3 is running when the worker dies.
    wait_for(lambda: wf.runs("kill:3") == 1, what="step 3 to start")
    first.kill()
    first.wait(10)
    flag.unlink()
    processes.append(start_worker(settings=FAST_LEASES, log=tmp_path / "second.log"))
    assert handle.get_result(timeout=30) == ["kill:0", 1, "kill:2", "passed", "kill:4"]
    # Before the kill: exactly once, the atomic step's row included. Step 3 had no
    # checkpoint, so it ran again; that is the at-least-once edge of a step.
    assert [wf.runs(f"kill:{i}") for i in range(5)] == [1, 1, 1, 2, 1]
    steps = list_workflow_steps(handle.workflow_id)
    assert [s.status for s in steps] == ["completed"] * 5


def test_a_workflow_that_keeps_killing_its_worker_ends_dead(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    handle = start_workflow(wf.crashes_its_worker, "doom")

    def dead_or_worker_restarted() -> bool:
        """The milestone; meanwhile, each worker the workflow killed is replaced."""
        if get_workflow(handle.workflow_id).status == "dead":
            return True
        if not processes or processes[-1].poll() is not None:
            log = tmp_path / f"{len(processes) + 1}.log"
            processes.append(start_worker(settings=FAST_LEASES, log=log))
        return False

    wait_for(dead_or_worker_restarted, timeout=60, what="the workflow to end dead")
    # One run plus one recovery (max_recovery_attempts=1), then the dead letters.
    assert wf.runs("doom:die") == 2
    assert wf.runs("doom:before") == 1
    assert FailedJob.objects.filter(payload__workflow_id=handle.workflow_id).count() == 1
    info = get_workflow(handle.workflow_id)
    assert info.error is not None and "Lease expired" in info.error["traceback"]


def test_a_durable_sleep_outlives_its_worker(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    handle = start_workflow(wf.sleeper, "restart", 3)
    first = start_worker(settings=FAST_LEASES, log=tmp_path / "first.log")
    processes.append(first)
    wait_for(lambda: any(s.status == "waiting" for s in list_workflow_steps(handle.workflow_id)))
    [_, waiting] = list_workflow_steps(handle.workflow_id)
    first.kill()
    first.wait(10)
    processes.append(start_worker(settings=FAST_LEASES, log=tmp_path / "second.log"))
    assert handle.get_result(timeout=30) == "restart:after"
    [_, slept, after] = list_workflow_steps(handle.workflow_id)
    assert waiting.wake_at is not None and after.completed_at is not None
    # Woke at the time recorded before the restart, not three seconds after it: the sleep kept
    # its wake time, and the run that finished the workflow did not sleep again. That run began
    # at the wake time, or later on a machine so busy that the second worker came up, or
    # rescued the dead worker's attempt (its lease ran out), only after it: neither is bounded
    # there, so only the run itself is timed.
    assert slept.wake_at == waiting.wake_at
    assert after.completed_at >= waiting.wake_at
    runner = Job.objects.get(payload__workflow_id=handle.workflow_id)
    assert runner.locked_at is not None
    assert 0 <= (after.completed_at - runner.locked_at).total_seconds() < 2
    assert wf.runs("restart:before") == 1


def test_an_atomic_step_that_loses_its_connection_runs_again_and_the_workflow_completes(
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    other_connection: psycopg.Connection[Any],
) -> None:
    """The step's transaction never committed, so it is not the step's failure: the worker's
    attempt fails, and the replay runs the step again."""
    flag = tmp_path / "hold"
    flag.touch()
    handle = start_workflow(wf.atomic_step_loses_its_connection, "cut", str(flag))
    log = tmp_path / "worker.log"
    processes.append(start_worker(settings={"RETRY_DELAY": 0.1}, log=log))
    wait_for(lambda: Path(f"{flag}.started").exists(), what=f"the atomic step; log:\n{log}")
    # The only session inside a transaction is the step's (the worker's own is autocommit).
    [(terminated,)] = other_connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state LIKE 'idle in transaction%%' "
        "AND pid <> pg_backend_pid()"
    ).fetchall()
    assert terminated
    flag.unlink()
    assert handle.get_result(timeout=30) == ["cut:0", 1, "cut:2"], log.read_text()
    assert [wf.runs(f"cut:{i}") for i in range(3)] == [1, 1, 1]  # the rolled-back row is gone
    steps = list_workflow_steps(handle.workflow_id)
    assert [(s.status, s.attempts) for s in steps] == [("completed", 1)] * 3
