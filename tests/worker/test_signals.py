"""django_pgjobs.signals: what each is sent with, from where and in which thread; a receiver
that raises or blocks never fails an enqueue nor stalls a worker; a real worker process sends
them."""

from __future__ import annotations

import functools
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.dispatch import Signal
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import (
    Cancel,
    Snooze,
    cancel_job,
    enqueue,
    enqueue_many,
    enqueue_on_commit,
    get_job,
    start_workflow,
    testing,
)
from django_pgjobs import signals as pgjobs_signals
from django_pgjobs.models import Job, WorkflowExecution
from django_pgjobs.worker import Worker
from tests.helpers import in_thread, start_worker, stop, wait_for, workflow_job
from tests.testapp.models import Run

# Their workers' sweeps rescue expired leases: the server must have been up for the hold.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("rescuable")]

Register = Callable[..., Any]


class Heard:
    """Everything one test's receivers heard: (signal name, sender, kwargs, thread name)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any], str]] = []
        self._connected: list[tuple[Signal, Callable[..., None]]] = []

    def listen(self, *names: str) -> None:
        for name in names:
            signal: Signal = getattr(pgjobs_signals, name)

            def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
                kwargs.pop("signal", None)
                self.calls.append((_name, sender, kwargs, threading.current_thread().name))

            signal.connect(receiver, weak=False)
            self._connected.append((signal, receiver))

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [call[2] for call in self.calls if call[0] == name]

    def disconnect(self) -> None:
        for signal, receiver in self._connected:
            signal.disconnect(receiver)


@pytest.fixture
def heard() -> Iterator[Heard]:
    listening = Heard()
    yield listening
    listening.disconnect()


def test_job_enqueued_is_sent_for_each_job_written_and_not_for_a_key_already_held(
    heard: Heard,
) -> None:
    heard.listen("job_enqueued")
    first = enqueue("test.record", {"n": 1}, key="k", priority=5, partition_key="p")
    assert enqueue("test.record", {"n": 2}, key="k") == first  # held already: nothing written
    many = enqueue_many("test.record", [{"n": 3}, {"n": 4}], queue="bulk")
    with transaction.atomic():
        later = enqueue_on_commit("test.record", {"n": 5})
        assert [c["job_id"] for c in heard.of("job_enqueued")] == [first, *many]
    assert [c["job_id"] for c in heard.of("job_enqueued")] == [first, *many, later]
    one = heard.of("job_enqueued")[0]
    assert one == {
        "job_id": first, "job_name": "test.record", "queue": "default", "payload": {"n": 1},
        "priority": 5, "partition_key": "p", "using": "default",
    }  # fmt: skip
    assert [c["queue"] for c in heard.of("job_enqueued")[1:3]] == ["bulk", "bulk"]
    assert {call[1] for call in heard.calls} == {Job}


def test_a_receiver_that_raises_never_fails_the_enqueue(
    heard: Heard, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    pgjobs_signals.job_enqueued.connect(broken)
    heard.listen("job_enqueued")  # connected after the broken one: still called
    try:
        job_id = enqueue("test.record", {})
    finally:
        pgjobs_signals.job_enqueued.disconnect(broken)
    assert get_job(job_id).status == "pending"
    assert heard.of("job_enqueued")[0]["job_id"] == job_id
    assert "receiver bug" in caplog.text


def test_a_receiver_whose_error_django_cannot_log_still_never_fails_the_enqueue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Django names a failing receiver by its __qualname__, which a functools.partial lacks:
    its logging raises in turn."""

    def broken(why: str, sender: Any, **kwargs: Any) -> None:
        raise RuntimeError(why)

    receiver = functools.partial(broken, "receiver bug")
    pgjobs_signals.job_enqueued.connect(receiver, weak=False)
    try:
        job_id = enqueue("test.record", {})
    finally:
        pgjobs_signals.job_enqueued.disconnect(receiver)
    assert get_job(job_id).status == "pending"
    assert "Sending a django_pgjobs signal failed" in caplog.text


@override_settings(PGJOBS={"RETRY_JITTER": 0})  # the exact delay, unspread
def test_a_worker_sends_each_outcome_in_its_own_thread_in_order(
    heard: Heard, make_worker: type[Worker], register_handler: Register
) -> None:
    register_handler("t.ok", lambda payload: None)
    register_handler("t.boom", lambda payload: 1 / 0, max_attempts=2, retry_delay=0)
    register_handler("t.later", lambda payload: 1 / 0, max_attempts=2, retry_delay=3600)

    def cancels(payload: Any) -> None:
        raise Cancel("not wanted")

    def snoozes(payload: Any) -> None:
        raise Snooze(3600)

    register_handler("t.cancel", cancels)
    register_handler("t.snooze", snoozes)
    heard.listen(
        "job_started", "job_succeeded", "job_failed", "job_dead_lettered", "job_cancelled",
        "job_snoozed",
    )  # fmt: skip
    ok = enqueue("t.ok", {}, priority=9)
    boom = enqueue("t.boom", {}, priority=8)
    cancelled = enqueue("t.cancel", {}, priority=7)
    snoozed = enqueue("t.snooze", {}, priority=6)
    later = enqueue("t.later", {}, priority=5)

    worker = make_worker(concurrency=1)
    worker.run(burst=True)  # t.boom is retried at once: two attempts; t.later in an hour

    by_job = {
        job: [name for name, _, kwargs, _ in heard.calls if kwargs["job_id"] == job]
        for job in (ok, boom, cancelled, snoozed)
    }
    assert by_job[ok] == ["job_started", "job_succeeded"]
    assert by_job[boom] == [
        "job_started", "job_failed", "job_started", "job_failed", "job_dead_lettered",
    ]  # fmt: skip
    assert by_job[cancelled] == ["job_started", "job_cancelled"]
    assert by_job[snoozed] == ["job_started", "job_snoozed"]

    retried, last = [c for c in heard.of("job_failed") if c["job_id"] == boom]
    assert (retried["will_retry"], retried["attempt"], retried["delay"]) == (True, 1, 0.0)
    [in_an_hour] = [c for c in heard.of("job_failed") if c["job_id"] == later]
    assert (in_an_hour["will_retry"], in_an_hour["delay"]) == (True, 3600)
    assert get_job(later).scheduled_for - timezone.now() > timedelta(seconds=3500)
    assert retried["error"].startswith("ZeroDivisionError")
    assert retried["exception"] == "builtins.ZeroDivisionError"
    assert (last["will_retry"], last["attempt"], last["delay"]) == (False, 2, 0.0)
    [succeeded] = heard.of("job_succeeded")
    assert succeeded["duration"] >= 0 and succeeded["worker_id"] == worker.worker_id
    assert succeeded["job_name"] == "t.ok" and succeeded["queue"] == "default"
    assert heard.of("job_cancelled")[0]["reason"] == "not wanted"
    assert heard.of("job_snoozed")[0]["delay"] == 3600
    # Neither the loop's thread nor a handler's: the worker's thread for them.
    assert {thread for *_, thread in heard.calls} == {f"pgjobs-after-{worker.worker_id}-0"}


def test_a_blocked_receiver_does_not_stall_the_worker(
    make_worker: type[Worker], register_handler: Register
) -> None:
    register_handler("t.ok", lambda payload: None)
    release = threading.Event()
    blocked: list[Any] = []

    def slow(sender: Any, **kwargs: Any) -> None:
        blocked.append(kwargs["job_id"])
        release.wait(30)

    pgjobs_signals.job_succeeded.connect(slow)
    try:
        ids = enqueue_many("t.ok", [{}] * 20)
        worker = make_worker(concurrency=2)
        runner = in_thread(lambda: worker.run(burst=True))
        wait_for(
            lambda: Job.objects.filter(id__in=ids, status="completed").count() == 20,
            what="every job completed while the receiver blocks",
        )
        assert len(blocked) == 1
        release.set()
        runner.join(30)
        assert not runner.is_alive()
        assert sorted(blocked) == sorted(ids)  # each still heard, once it was free
    finally:
        release.set()
        pgjobs_signals.job_succeeded.disconnect(slow)


def test_cancel_job_and_workflows_send_theirs_and_drain_sends_like_a_worker(
    heard: Heard,
) -> None:
    heard.listen("job_cancelled", "workflow_started", "workflow_finished", "job_succeeded")
    pending = enqueue("test.record", {})
    cancel_job(pending)
    [cancelled] = heard.of("job_cancelled")
    assert cancelled == {
        "job_id": pending, "job_name": "test.record", "queue": "default", "reason": None,
        "worker_id": None,
    }  # fmt: skip

    done = start_workflow("test.greet", "Ada").workflow_id
    failing = start_workflow("test.fails", "no").workflow_id
    stopped = start_workflow("test.greet", "Bob").workflow_id
    assert [c["workflow_id"] for c in heard.of("workflow_started")] == [done, failing, stopped]
    dying = start_workflow("test.greet", "Gus").workflow_id
    Job.objects.filter(id=workflow_job(dying).id).update(max_attempts=1)
    WorkflowExecution.objects.filter(workflow_id=dying).update(name="test.not_deployed")
    from django_pgjobs.workflows import cancel_workflow

    cancel_workflow(stopped)
    testing.drain()
    finished = {c["workflow_id"]: c for c in heard.of("workflow_finished")}
    assert finished[done]["status"] == "completed" and finished[done]["error"] is None
    assert finished[failing]["status"] == "failed"
    assert finished[failing]["error"] == "ValueError: no"
    assert finished[stopped]["status"] == "cancelled"
    assert finished[dying]["status"] == "dead"
    assert finished[done]["name"] == "test.greet"
    assert {call[1] for call in heard.calls if call[0].startswith("workflow")} == {
        WorkflowExecution
    }
    assert heard.of("job_succeeded")  # drain() sends the worker's signals too


def held_by_a_dead_worker(*job_ids: Any, max_attempts: int = 1) -> None:
    """Each job in its first attempt, started by worker ``dead`` whose lease ran out."""
    now = timezone.now()
    Job.objects.filter(id__in=job_ids).update(
        status="running", attempt=1, max_attempts=max_attempts, locked_by="dead", locked_at=now,
        lease_token=uuid.uuid4(), lease_expires_at=now - timedelta(seconds=1),
    )  # fmt: skip


def test_a_workflow_whose_job_a_worker_dead_letters_finishes_dead(
    heard: Heard, make_worker: type[Worker]
) -> None:
    """Its job's last attempt failed: the job's signals, then the workflow's (trigger 0008)."""
    heard.listen("job_failed", "job_dead_lettered", "workflow_finished")
    flow = start_workflow("test.greet", "Di").workflow_id
    job = workflow_job(flow)
    Job.objects.filter(id=job.id).update(max_attempts=1)
    WorkflowExecution.objects.filter(workflow_id=flow).update(name="test.not_deployed")
    worker = make_worker()
    assert worker.run_once().buried == 1
    assert heard.names() == ["job_failed", "job_dead_lettered", "workflow_finished"]
    [finished] = heard.of("workflow_finished")
    assert finished == {
        "workflow_id": flow, "name": "test.not_deployed", "status": "dead",
        "error": "WorkflowDead: The workflow was moved to the dead letters after 1 attempts.\n"
        + heard.of("job_dead_lettered")[0]["error"],
    }  # fmt: skip
    assert "LookupError: No workflow named 'test.not_deployed'" in finished["error"]
    assert {thread for *_, thread in heard.calls} == {f"pgjobs-after-{worker.worker_id}-0"}


def test_the_rescue_sends_job_dead_lettered_for_each_job_it_buries_and_their_workflows_end(
    heard: Heard, make_worker: type[Worker]
) -> None:
    """No job_failed: no worker saw the attempt fail. The dead worker is named; jobs the
    rescue hands back to the queue send nothing."""
    heard.listen("job_failed", "job_dead_lettered", "workflow_finished", "job_started")
    buried = enqueue("test.record", {})
    back = enqueue("test.record", {})
    flow = start_workflow("test.greet", "Ed").workflow_id
    flow_job = workflow_job(flow).id
    held_by_a_dead_worker(buried, flow_job)
    held_by_a_dead_worker(back, max_attempts=3)  # back to the queue
    worker = make_worker(queues=["nothing-here"])  # rescues, runs nothing
    assert worker.run_once().rescued == 3
    assert sorted(c["job_id"] for c in heard.of("job_dead_lettered")) == sorted([buried, flow_job])
    assert heard.names()[-1] == "workflow_finished"
    dead = {c["job_id"]: c for c in heard.of("job_dead_lettered")}
    assert dead[buried] == {
        "job_id": buried, "job_name": "test.record", "queue": "default", "attempt": 1,
        "error": dead[buried]["error"], "worker_id": "dead",
    }  # fmt: skip
    assert dead[buried]["error"].startswith("Lease expired: worker dead stopped heartbeating")
    [finished] = heard.of("workflow_finished")
    assert (finished["workflow_id"], finished["name"], finished["status"]) == (
        flow, "test.greet", "dead"
    )  # fmt: skip
    assert finished["error"].endswith(dead[flow_job]["error"])
    assert {thread for *_, thread in heard.calls} == {f"pgjobs-after-{worker.worker_id}-0"}


def test_a_real_worker_process_sends_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGJOBS_TEST_RECORD_SIGNALS", "1")
    ok = enqueue("test.record", {"label": "ran"})
    failed = enqueue("test.fail", {}, max_attempts=1)
    flow = start_workflow("test.greet", "Cy").workflow_id
    rescued = enqueue("test.record", {})
    doomed = start_workflow("test.greet", "Flo").workflow_id
    held_by_a_dead_worker(rescued, workflow_job(doomed).id)
    log = tmp_path / "worker.log"
    proc = start_worker("--burst", "--concurrency", "2", log=log)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None
    finally:
        stop(proc)

    def labels(job_id: Any) -> list[str]:
        rows = Run.objects.filter(job_id=job_id, label__contains=f":{proc.pid}:")
        return [r.label.split(":")[0] for r in rows.order_by("id")]

    assert labels(ok) == ["job_started", "job_succeeded"]
    assert labels(failed) == ["job_started", "job_failed", "job_dead_lettered"]
    assert labels(rescued) == ["job_dead_lettered"]
    finished = Run.objects.filter(label__startswith="workflow_finished:")
    assert sorted(r.label.split(":")[1:3] for r in finished) == [
        ["completed", str(proc.pid)], ["dead", str(proc.pid)],
    ]  # fmt: skip
    threads = {r.label.split(":")[3] for r in Run.objects.filter(label__contains=f":{proc.pid}:")}
    assert len(threads) == 1 and threads.pop().startswith("pgjobs-after-")
    assert get_job(ok).status == "completed" and flow
    assert WorkflowExecution.objects.get(workflow_id=doomed).status == "dead"
