"""Django tasks run by real ``pgjobs_worker`` processes: end to end with the framework's signals
and log lines, and a SIGKILLed worker's task recovered and run once more."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from django_pgjobs.tasks.framework import TaskResultStatus
from tests.helpers import start_worker, wait_for
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST_LEASES = {"LEASE_SECONDS": 1.0, "HEARTBEAT_SECONDS": 0.2, "POLL_INTERVAL": 0.2}


def test_a_worker_process_runs_a_task_end_to_end_and_logs_it(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    result = tasks.add.enqueue(20, 22)
    log = tmp_path / "worker.log"
    proc = start_worker("--burst", "-v", "2", log=log)
    processes.append(proc)
    assert proc.wait(timeout=60) == 0, log.read_text()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    # Django's own log lines for task_started and task_finished, from the worker process.
    text = log.read_text()
    assert f"Task id={result.id} path=tests.testapp.tasks.add state=RUNNING" in text, text
    assert f"Task id={result.id} path=tests.testapp.tasks.add state=SUCCESSFUL" in text, text


def test_a_task_whose_worker_is_killed_is_rescued_and_runs_once_more(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    result = tasks.wait_for_file.enqueue(str(release), "victim")
    log_a = tmp_path / "a.log"
    victim = start_worker("--worker-id", "victim", settings=FAST_LEASES, log=log_a)
    processes.append(victim)
    wait_for(
        lambda: Run.objects.filter(label="victim started").exists(), what=f"the start; {log_a}"
    )
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING and result.worker_ids == ["victim"]
    release.touch()
    log_b = tmp_path / "b.log"
    rescuer = start_worker("--worker-id", "rescuer", settings=FAST_LEASES, log=log_b)
    processes.append(rescuer)
    wait_for(
        lambda: tasks.wait_for_file.get_result(result.id).is_finished,
        what=f"the rescue; log:\n{log_b}",
    )
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "victim"
    assert result.worker_ids == ["victim", "rescuer"] and result.attempts == 2
    [lost] = result.errors
    assert lost.exception_class_path == "django_pgjobs.exceptions.LeaseExpired"
    assert Run.objects.filter(label="victim started").count() == 2
    assert Run.objects.filter(label="victim done").count() == 1
