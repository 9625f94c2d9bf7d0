"""Burst mode (``pgjobs_worker --burst``) with due jobs it cannot get, in real worker processes:
it exits once its rechecks of them have taken nothing for BURST_HELD_BACK_EXIT, and what it
leaves is drained by a worker that holds the room."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from django.db import transaction

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.models import Job
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker.pacing import BURST_HELD_BACK_EXIT
from tests.helpers import start_worker, wait_for
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"LEASE_SECONDS": 1.0, "HEARTBEAT_SECONDS": 0.2, "POLL_INTERVAL": 0.2}


def exit_code(proc: subprocess.Popen[bytes], log: Path, *, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None


def test_burst_exits_when_a_due_job_waits_behind_a_key_head_no_worker_can_run(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """It waited for ever, rechecking four times a second (found by the new-user trial)."""
    set_queue_limits("ledger", partition_concurrency=1)
    with transaction.atomic():
        head = enqueue("nobody.handles", queue="ledger", partition_key="acct:q")
        behind = enqueue("test.record", queue="ledger", partition_key="acct:q")
    log = tmp_path / "worker.log"
    started = time.monotonic()
    processes.append(start_worker("--burst", log=log, settings=FAST))
    assert exit_code(processes[0], log, timeout=BURST_HELD_BACK_EXIT + 20) == 0
    assert time.monotonic() - started >= BURST_HELD_BACK_EXIT
    statuses = dict(Job.objects.filter(id__in=[head, behind]).values_list("id", "status"))
    assert statuses == {head: "pending", behind: "pending"}


def test_a_burst_worker_held_back_by_another_ones_job_leaves_the_rest_to_it(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Two burst workers on a queue of concurrency 1: the one that waits gives up while the
    other's job holds the slot, and the other runs the rest when that job ends."""
    set_queue_limits("one", concurrency=1)
    release = tmp_path / "release"
    first = enqueue("test.wait", {"release": str(release), "timeout": 60}, queue="one")
    rest = enqueue_many("test.record", [{"label": "rest"}] * 3, queue="one", priority=-1)
    holder_log, waiter_log = tmp_path / "holder.log", tmp_path / "waiter.log"
    processes.append(start_worker("--burst", log=holder_log, settings=FAST))
    wait_for(lambda: Run.objects.filter(label="wait:started").exists(), what="the first job")
    processes.append(start_worker("--burst", log=waiter_log, settings=FAST))
    assert exit_code(processes[1], waiter_log, timeout=BURST_HELD_BACK_EXIT + 20) == 0
    assert processes[0].poll() is None  # still running the job that holds the slot
    release.touch()
    assert exit_code(processes[0], holder_log, timeout=30) == 0
    assert Run.objects.filter(label="rest").count() == 3
    assert not Job.objects.filter(id__in=[first, *rest]).exclude(status="completed").exists()
