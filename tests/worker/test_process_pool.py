"""``pgjobs_worker --pool process``: each handler slot runs its attempts in a child process, which
is killed at a timeout. Real worker processes, real children, real signals."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from django_pgjobs import cancel_job, enqueue, get_job, start_workflow
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import FailedJob
from django_pgjobs.queries import ClaimedJob
from django_pgjobs.tasks.definitions import PgJobsTask
from django_pgjobs.worker import children
from django_pgjobs.worker.inflight import InFlight
from tests.helpers import start_worker, stop, wait_for, workflow_job
from tests.testapp import tasks
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        stop(proc)


def run_burst(
    workers: list[subprocess.Popen[bytes]], log: Path, *args: str, **settings: Any
) -> None:
    proc = start_worker(
        "--pool", "process", "--burst", "--no-scheduler", *args, settings=settings, log=log
    )
    workers.append(proc)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None


def pid_of(label: str) -> int:
    [run] = Run.objects.filter(label__startswith=f"{label}:")
    return int(run.label.rsplit(":", 1)[1])


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie nobody has reaped yet (a container's init may not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # gone meanwhile, or no /proc to ask
    return state != "Z"


def test_a_hung_child_is_killed_at_its_timeout_and_the_next_job_runs_in_a_new_one(
    workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    done = tmp_path / "done"
    done.touch()
    hung = enqueue(
        "test.pid_block",
        {"label": "hung", "release": str(tmp_path / "never"), "timeout": 120},
        timeout=1,
        max_attempts=1,
        priority=10,
    )
    after = enqueue("test.pid_block", {"label": "after", "release": str(done)})
    log = tmp_path / "worker.log"
    run_burst(workers, log, "--concurrency", "1")

    error = str(FailedJob.objects.get(id=hung).error)
    assert error == (
        "JobTimeout: the attempt ran longer than its timeout of 1s (the job's timeout); "
        "its process was killed."
    )
    assert get_job(after).status == "completed"
    first, second = pid_of("hung"), pid_of("after")
    assert len({first, second, workers[0].pid}) == 3  # two children, neither the worker
    wait_for(lambda: not alive(first), what="the killed child to be gone")
    # Progress went from the child to the worker, which wrote it.
    job = get_job(after)
    assert (job.progress, job.progress_message) == (50, f"in {second}")
    assert "its process was killed" in log.read_text()


def test_a_child_that_dies_fails_its_attempt_and_the_worker_runs_on(
    workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    dying = enqueue("test.exit_process", {"status": 7}, priority=10)
    after = enqueue("test.record", {"label": "after"})
    run_burst(workers, tmp_path / "worker.log", "--concurrency", "1")
    assert str(FailedJob.objects.get(id=dying).error) == (
        "WorkerError: the handler's process died (exit status 7) before it finished the attempt."
    )
    assert get_job(after).status == "completed"


def test_a_task_in_a_child_keeps_its_result_and_the_worker_sends_task_finished(
    workers: list[subprocess.Popen[bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGJOBS_TEST_RECORD_FINISHED", "1")
    add: PgJobsTask = tasks.add  # type: ignore[assignment]
    result = add.enqueue(2, 3)
    run_burst(workers, tmp_path / "worker.log")
    assert add.get_result(result.id).return_value == 5
    [finished] = Run.objects.filter(label__startswith="finished:")
    assert finished.label == f"finished:SUCCESSFUL:{workers[0].pid}"


def test_sigterm_kills_a_child_still_running_after_the_grace_period(
    workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    job_id = enqueue(
        "test.pid_block", {"label": "slow", "release": str(tmp_path / "never"), "timeout": 120}
    )
    log = tmp_path / "worker.log"
    proc = start_worker("--pool", "process", settings={"SHUTDOWN_GRACE": 0.5}, log=log)
    workers.append(proc)
    wait_for(lambda: Run.objects.filter(label__startswith="slow:").exists(), what="the child")
    child = pid_of("slow")
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None
    job = get_job(job_id)
    assert (job.status, str(job.error).startswith("WorkerShutdown")) == ("pending", True)
    wait_for(lambda: not alive(child), what="the child to be killed")


def test_a_child_does_not_outlive_a_killed_worker(
    workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """SIGKILL: the worker says nothing, and the child's parent is the forkserver, which lives
    on while any child does. The child sees the worker's end of its pipe close."""
    enqueue(
        "test.pid_block", {"label": "orphan", "release": str(tmp_path / "never"), "timeout": 120}
    )
    proc = start_worker("--pool", "process", log=tmp_path / "worker.log")
    workers.append(proc)
    wait_for(lambda: Run.objects.filter(label__startswith="orphan:").exists(), what="the child")
    child = pid_of("orphan")
    proc.kill()
    proc.wait(timeout=10)
    wait_for(lambda: not alive(child), what="the orphaned child to exit")


def test_a_handler_in_a_child_sees_its_job_cancelled_and_stops(
    workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """is_cancelled() in the child: the worker writes the cancel into the child's shared
    memory when its NOTIFY arrives."""
    job_id = enqueue("test.cooperative", {"release": str(tmp_path / "never"), "timeout": 60})
    log = tmp_path / "worker.log"
    proc = start_worker("--pool", "process", "--concurrency", "1", log=log)
    workers.append(proc)
    wait_for(lambda: Run.objects.filter(label="cooperative:started").exists(), what="the start")
    cancel_job(job_id)
    wait_for(
        lambda: Run.objects.filter(label="cooperative:cancelled").exists(),
        what=f"the handler to see the cancel; the worker's log:\n{log.read_text()}",
    )
    assert get_job(job_id).status == "cancelled"
    assert not Run.objects.filter(label="cooperative:finished").exists()


def test_sigterm_tells_a_handler_in_a_child_which_hands_its_job_back_unspent(
    workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """stopping in the child: the handler raises Snooze(0) and its attempt is undone, long
    before the grace period would have ended and its process been killed."""
    job_id = enqueue("test.cooperative", {"release": str(tmp_path / "never")}, max_attempts=1)
    log = tmp_path / "worker.log"
    proc = start_worker("--pool", "process", settings={"SHUTDOWN_GRACE": 60}, log=log)
    workers.append(proc)
    wait_for(lambda: Run.objects.filter(label="cooperative:started").exists(), what="the start")
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None
    assert Run.objects.filter(label="cooperative:handed back", attempt_seen=1).exists()
    job = get_job(job_id)
    assert (job.status, job.attempt, job.error) == ("pending", 0, None)


def test_a_cancel_and_a_stop_reach_the_child_as_the_worker_learns_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker writes them into the child's shared memory from the thread that learns them;
    the slot thread waiting for the child wakes only for the child's messages. One child runs
    two attempts: the first is cancelled, the second is not (the flag was the first's) and sees
    the worker stop."""
    monkeypatch.setattr(children, "wait", lambda ready, timeout=None: wait(ready, None))
    said: queue.Queue[tuple[uuid.UUID, str | None]] = queue.Queue()
    runner = children.ChildRunner(
        name="pgjobs-test", progressed=lambda job, value, text: said.put((job.id, text))
    )
    stopping = threading.Event()

    def attempt() -> InFlight:
        job = ClaimedJob(
            id=uuid.uuid4(), job_name="test.until_told", payload={"timeout": 20},
            queue="default", priority=0, attempt=1, max_attempts=1,
            scheduled_for=timezone.now(), lease_token=uuid.uuid4(),
        )  # fmt: skip
        return InFlight.of(job, registry.get(job.job_name), stopping=stopping)

    with ThreadPoolExecutor(1) as slot:  # one slot thread: one child for both attempts
        try:
            first = attempt()
            ran = slot.submit(runner, first, lambda entry, at: None)
            job_id, first_child = said.get(timeout=30)
            assert job_id == first.job.id
            first.attempt.no_longer_ours()  # as a cancel's NOTIFY, on the loop's thread
            result = ran.result(timeout=30)
            assert result.cancelled, result.error
            assert str(result.error).startswith("django_pgjobs.exceptions.Cancel: told it was")

            second = attempt()
            ran = slot.submit(runner, second, lambda entry, at: None)
            job_id, second_child = said.get(timeout=30)
            assert (job_id, second_child) == (second.job.id, first_child)
            stopping.set()  # as Worker.request_stop does
            runner.worker_stopping()
            result = ran.result(timeout=30)
            assert (result.snoozed, result.cancelled, result.error) == (0, False, None)
        finally:
            slot.submit(runner.thread_exit).result(timeout=30)
            runner.close()


def test_a_workflow_run_in_a_child_ends_with_its_jobs_completion(
    workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Its ending travels back in the attempt's notes (pickled with them) and is written with the
    job's completion, failures too."""
    done = start_workflow(wf.greet, "child")
    failed = start_workflow(wf.fails, "in a child")
    run_burst(workers, tmp_path / "worker.log")
    assert done.get_result(5) == "hello child!"
    with pytest.raises(ValueError, match="in a child"):
        failed.get_result(5)
    assert get_job(workflow_job(done.workflow_id).id).status == "completed"
