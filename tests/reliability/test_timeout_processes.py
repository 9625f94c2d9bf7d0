"""Timeouts in real worker processes: abandoned handler threads never hold up a stop, and a worker
left with too many of them exits for its supervisor to replace it."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from django_pgjobs import enqueue
from django_pgjobs.models import FailedJob
from django_pgjobs.models import Worker as WorkerRow
from tests.helpers import start_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def exit_code(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None


def hung_job(tmp_path: Path) -> uuid.UUID:
    """A test.block job that would hang for a minute, with a half-second timeout."""
    payload = {"release": str(tmp_path / "never"), "timeout": 60}
    return enqueue("test.block", payload, timeout=0.5, max_attempts=1)


def test_sigterm_with_an_abandoned_thread_exits_without_waiting_for_it(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    job_id = hung_job(tmp_path)
    log = tmp_path / "worker.log"
    proc = start_worker("--concurrency", "2", settings={"SHUTDOWN_GRACE": 5}, log=log)
    processes.append(proc)
    wait_for(lambda: FailedJob.objects.filter(id=job_id).exists(), what="the timeout")
    assert proc.poll() is None  # one abandoned thread of two: it runs on
    proc.send_signal(signal.SIGTERM)
    # The abandoned handler would hang for a minute: nothing waits for it.
    assert exit_code(proc, log, timeout=15) == 0, log.read_text()
    assert "ran past its timeout of 0.5s (the job's timeout)" in log.read_text()
    assert str(FailedJob.objects.get(id=job_id).error).startswith("JobTimeout: ")
    assert not WorkerRow.objects.exists()


def test_a_worker_whose_every_thread_was_abandoned_exits_1_for_its_supervisor(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    job_id = hung_job(tmp_path)
    log = tmp_path / "worker.log"
    proc = start_worker("--concurrency", "1", log=log)
    processes.append(proc)
    assert exit_code(proc, log, timeout=20) == 1, log.read_text()
    text = log.read_text()
    assert "1 handler thread abandoned after a timeout is still running" in text
    assert FailedJob.objects.filter(id=job_id).exists()
    assert not WorkerRow.objects.exists()
