"""Durable workflows, run by an in-process worker on the real database.

Crash recovery with real processes and SIGKILL is in reliability/test_workflow_processes.py.
"""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_pgjobs import (
    cancel_job,
    cancel_workflow,
    get_event,
    get_workflow,
    queries,
    recv,
    send,
    set_event,
    start_workflow,
    step,
    workflow,
)
from django_pgjobs.exceptions import (
    InvalidJobError,
    NotInWorkflow,
    RecordedError,
    WorkflowCancelled,
    WorkflowConflict,
    WorkflowDead,
    WorkflowError,
    WorkflowNonDeterminism,
    WorkflowNotFound,
    WorkflowSerializationError,
    WorkflowStateError,
    WorkflowTimeout,
)
from django_pgjobs.jobs import retry_dead_letter_job
from django_pgjobs.jobs.context import ProgressReporter
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import FailedJob, Job, WorkflowExecution, WorkflowStep
from django_pgjobs.worker import Worker
from django_pgjobs.worker.attempt import call_handler
from django_pgjobs.workflows import (
    WorkflowHandle,
    fork_workflow,
    list_workflow_steps,
    list_workflows,
    resume_workflow,
)
from django_pgjobs.workflows.definitions import app_version, runner_job_name
from tests.helpers import drain, workflow_job
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def make_due(workflow_id: str) -> None:
    Job.objects.filter(key=f"workflow:{workflow_id}", status="pending").update(
        scheduled_for=timezone.now()
    )


def test_a_workflow_runs_as_a_job_and_records_each_step(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "ada", punctuation="?")
    info = get_workflow(handle.workflow_id)
    assert (info.status, info.args, info.kwargs) == ("pending", ["ada"], {"punctuation": "?"})
    assert info.app_version == app_version()
    assert workflow_job(handle.workflow_id).job_name == runner_job_name()
    drain(make_worker())
    assert handle.get_status() == "completed"
    assert handle.get_result(timeout=5) == "hello ada?"
    steps = list_workflow_steps(handle.workflow_id)
    assert [(s.index, s.name, s.status, s.output) for s in steps] == [
        (0, "tests.testapp.workflows.note", "completed", "hello ada")
    ]
    info = get_workflow(handle.workflow_id)
    assert info.started_at is not None and info.completed_at is not None
    assert workflow_job(handle.workflow_id).status == "completed"


def test_re_execution_replays_checkpoints_instead_of_running_steps(
    make_worker: type[Worker], tmp_path: Any
) -> None:
    handle = start_workflow(wf.five_steps, "replay", str(tmp_path / "absent"))
    drain(make_worker())
    assert handle.get_result(timeout=5) == ["replay:0", 1, "replay:2", "passed", "replay:4"]
    # Run it again from the start, as a recovery would: every step has a checkpoint.
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(status="running")
    job = workflow_job(handle.workflow_id)
    Job.objects.filter(id=job.id).update(status="pending", scheduled_for=timezone.now())
    drain(make_worker())
    assert handle.get_result(timeout=5) == ["replay:0", 1, "replay:2", "passed", "replay:4"]
    for label in ("replay:0", "replay:1", "replay:2", "replay:3", "replay:4"):
        assert wf.runs(label) == 1, label


def test_starting_an_existing_id_returns_it_and_runs_nothing_twice(
    make_worker: type[Worker],
) -> None:
    first = start_workflow(wf.greet, "bob", workflow_id="order-1")
    again = start_workflow(wf.greet, "someone else", workflow_id="order-1")
    assert again == first
    assert Job.objects.filter(key="workflow:order-1").count() == 1
    drain(make_worker())
    assert start_workflow(wf.greet, "bob", workflow_id="order-1").get_result(1) == "hello bob!"
    assert wf.runs("hello bob") == 1
    with pytest.raises(WorkflowConflict, match=r"already used by workflow 'test\.greet'"):
        start_workflow(wf.fails, "x", workflow_id="order-1")


def test_start_joins_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        start_workflow(wf.greet, "rolled back", workflow_id="rb")
        raise RuntimeError("abort")
    assert not WorkflowExecution.objects.filter(workflow_id="rb").exists()
    assert not Job.objects.filter(key="workflow:rb").exists()


def test_bad_input_is_refused_at_the_call_and_writes_nothing() -> None:
    with pytest.raises(WorkflowSerializationError, match=r"arguments of workflow 'test.greet'"):
        start_workflow(wf.greet, object())
    with pytest.raises(InvalidJobError, match="No workflow named"):
        start_workflow("no.such.workflow")
    with pytest.raises(InvalidJobError, match="workflow id"):
        start_workflow(wf.greet, "x", workflow_id="")
    with pytest.raises(InvalidJobError, match="priority"):
        start_workflow(wf.greet, "x", priority=1000)
    assert not WorkflowExecution.objects.exists()
    assert not Job.objects.exists()


def test_json_values_come_back_as_json_gives_them(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "x", punctuation="!")
    day = start_workflow(wf.child, 1)
    drain(make_worker())
    assert day.get_result(1) == 10 and handle.get_result(1) == "hello x!"
    # Dates and decimals go through Django's encoder on the way in.
    h = start_workflow(wf.greet, str(date(2026, 1, 2)), punctuation=str(Decimal("1.5")))
    drain(make_worker())
    assert h.get_result(1) == "hello 2026-01-021.5"


def test_a_failing_workflow_records_its_error_and_get_result_raises_it(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.fails, "card declined")
    drain(make_worker())
    info = get_workflow(handle.workflow_id)
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "builtins.ValueError"
    assert "card declined" in info.error["traceback"]
    with pytest.raises(ValueError, match="card declined") as raised:
        handle.get_result(timeout=1)
    assert any("original traceback" in note for note in raised.value.__notes__)
    # The workflow failed; its job did its work.
    assert workflow_job(handle.workflow_id).status == "completed"


def test_step_retries_with_backoff(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.flaky, "flaky-ok", 3)
    began = time.monotonic()
    drain(make_worker())
    assert handle.get_result(1) == 3
    # Two waits: 0.2 s then 0.4 s.
    assert time.monotonic() - began >= 0.6
    [checkpoint] = list_workflow_steps(handle.workflow_id)
    assert (checkpoint.status, checkpoint.attempts) == ("completed", 3)

    failing = start_workflow(wf.flaky, "flaky-never", 10)
    drain(make_worker())
    with pytest.raises(ConnectionError, match="attempt 3 failed"):
        failing.get_result(1)
    [checkpoint] = list_workflow_steps(failing.workflow_id)
    assert (checkpoint.status, checkpoint.attempts) == ("failed", 3)
    assert wf.runs("flaky-never") == 3


def test_a_recorded_step_error_is_raised_again_on_replay(make_worker: type[Worker]) -> None:
    failing = start_workflow(wf.flaky, "flaky-replay", 10)
    drain(make_worker())
    WorkflowExecution.objects.filter(workflow_id=failing.workflow_id).update(status="running")
    Job.objects.filter(id=workflow_job(failing.workflow_id).id).update(status="pending")
    drain(make_worker())
    with pytest.raises(ConnectionError):
        failing.get_result(1)
    assert wf.runs("flaky-replay") == 3  # not run again


def test_a_non_json_step_output_is_a_clear_error_recorded_as_the_steps_failure(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.returns_not_json)
    drain(make_worker())
    with pytest.raises(WorkflowSerializationError, match="return value of step"):
        handle.get_result(1)
    [checkpoint] = list_workflow_steps(handle.workflow_id)
    assert checkpoint.status == "failed"


def test_non_determinism_is_detected_and_fails_the_workflow(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.branches, "nd")
    drain(make_worker())
    assert handle.get_result(1) == "1"
    # The workflow's code now takes another branch at step 0; replay it.
    Run.objects.create(job_id=wf.ZERO, label="nd:flag")
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(status="running")
    Job.objects.filter(id=workflow_job(handle.workflow_id).id).update(status="pending")
    drain(make_worker())
    with pytest.raises(
        WorkflowNonDeterminism, match=r"called 'tests.testapp.workflows.note' as step 0"
    ):
        handle.get_result(1)
    assert wf.runs("nd:b") == 0


def test_an_atomic_steps_writes_commit_with_its_checkpoint(make_worker: type[Worker]) -> None:
    calls: list[str] = []

    @step(atomic=True)
    def write_then_lose_the_lease(label: str) -> str:
        Run.objects.create(job_id=wf.ZERO, label=label)
        calls.append(label)
        # Another worker takes the job over before the checkpoint is written.
        Job.objects.filter(key__startswith="workflow:atomic-").update(lease_token=None)
        return label

    @workflow("test.atomic_lost")
    def atomic_lost() -> str:
        return str(write_then_lose_the_lease("atomic-lost"))

    handle = start_workflow(atomic_lost, workflow_id="atomic-1")
    drain(make_worker())
    assert calls == ["atomic-lost"]
    # The step's row was rolled back with the checkpoint that could not be written.
    assert wf.runs("atomic-lost") == 0
    assert not WorkflowStep.objects.filter(workflow_id=handle.workflow_id).exists()


def test_durable_sleep_survives_a_restart_without_restarting_the_wait(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.sleeper, "nap", 3)
    stats = make_worker().run_once()
    assert stats.handed_back == 1
    [_, waiting] = list_workflow_steps(handle.workflow_id)
    assert (waiting.name, waiting.status) == ("pgjobs.sleep", "waiting")
    assert waiting.wake_at is not None
    assert get_workflow(handle.workflow_id).status == "pending"
    job = workflow_job(handle.workflow_id)
    assert job.status == "pending" and job.attempt == 0  # waiting is not a crash
    assert abs((job.scheduled_for - waiting.wake_at).total_seconds()) < 0.01
    # "Restart": a new worker, made to look now; it suspends again until the same wake time.
    make_due(handle.workflow_id)
    assert make_worker().run_once().handed_back == 1
    assert (
        abs((workflow_job(handle.workflow_id).scheduled_for - waiting.wake_at).total_seconds())
        < 0.01
    )
    while timezone.now() < waiting.wake_at:
        time.sleep(0.05)
    drain(make_worker())
    assert handle.get_result(1) == "nap:after"
    assert wf.runs("nap:before") == 1
    steps = list_workflow_steps(handle.workflow_id)
    assert [(s.name, s.status) for s in steps][1] == ("pgjobs.sleep", "completed")


def test_a_short_sleep_waits_in_the_worker(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.sleeper, "short", 0.3)
    began = time.monotonic()
    stats = make_worker().run_once()
    drain(make_worker())
    assert stats.handed_back == 0
    assert handle.get_result(1) == "short:after"
    assert time.monotonic() - began >= 0.3


def test_send_and_recv_with_topics_and_timeout(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, "orders", 30)
    worker = make_worker()
    assert worker.run_once().handed_back == 1  # waiting for the first message
    send(handle.workflow_id, {"n": 1}, topic="other")  # another topic: does not wake it
    assert worker.run_once().claimed == 0
    send(handle.workflow_id, {"n": 2}, topic="orders")
    send(handle.workflow_id, {"n": 3}, topic="orders")
    drain(worker)
    assert handle.get_result(1) == [{"n": 2}, {"n": 3}]
    # Consumed messages are gone; the other topic's is still there.
    with connection.cursor() as cur:
        cur.execute("SELECT topic FROM pgjobs_workflow_messages")
        assert cur.fetchall() == [("other",)]

    timed_out = start_workflow(wf.receiver, None, 0.5)
    assert worker.run_once().handed_back == 1
    send(timed_out.workflow_id, "only one")
    drain(worker)
    time.sleep(0.6)
    drain(worker)
    assert timed_out.get_result(1) == ["only one", None]


def test_a_message_sent_before_the_workflow_waits_is_not_lost(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    send(handle.workflow_id, "early")
    send(handle.workflow_id, "also early")
    drain(make_worker())
    assert handle.get_result(1) == ["early", "also early"]


def test_send_to_an_unknown_workflow_and_recv_outside_a_workflow_are_errors() -> None:
    with pytest.raises(WorkflowNotFound, match="no workflow has that id"):
        send("nobody", "hi")
    with pytest.raises(NotInWorkflow, match=r"recv\(\) can only be called inside a workflow"):
        recv()
    with pytest.raises(NotInWorkflow):
        set_event("k", 1)
    with pytest.raises(WorkflowSerializationError):
        send("nobody", {1, 2})


def test_workflows_message_each_other(make_worker: type[Worker]) -> None:
    ponger = start_workflow(wf.pong)
    pinger = start_workflow(wf.ping, ponger.workflow_id)
    drain(make_worker(concurrency=1))
    assert pinger.get_result(1) == "pong!"
    assert ponger.get_result(1) == {"reply_to": pinger.workflow_id}


def test_events_are_read_from_outside_and_awaited_inside(make_worker: type[Worker]) -> None:
    publisher = start_workflow(wf.publisher, "ev")
    waiter = start_workflow(wf.event_waiter, publisher.workflow_id, 30)
    worker = make_worker(concurrency=1)
    assert get_event(publisher.workflow_id, "stage", timeout=0) is None
    drain(worker)
    assert publisher.get_result(1) == "published"
    assert get_event(publisher.workflow_id, "stage", timeout=1) == "done"
    # The waiter ran first or second; either way it got a value the publisher set.
    assert waiter.get_result(5) in ("started", "done")


def test_get_event_from_outside_waits_for_the_value(make_worker: type[Worker]) -> None:
    publisher = start_workflow(wf.publisher, "ev2")
    got: list[Any] = []

    def read() -> None:
        try:
            got.append(get_event(publisher.workflow_id, "stage", timeout=10))
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    drain(make_worker())
    reader.join(10)
    assert got and got[0] in ("started", "done")
    assert get_event(publisher.workflow_id, "missing", timeout=0.2) is None


def test_child_workflows_have_deterministic_ids_and_start_once(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.parent, 3, workflow_id="parent-1")
    drain(make_worker(concurrency=2))
    assert handle.get_result(5) == [0, 10, 20]
    children = WorkflowExecution.objects.filter(parent_workflow_id="parent-1")
    assert sorted(c.workflow_id for c in children) == ["parent-1-0", "parent-1-1", "parent-1-2"]
    steps = [s.name for s in list_workflow_steps("parent-1")]
    assert steps == ["pgjobs.start_workflow"] * 3 + ["pgjobs.get_result"] * 3
    for n in range(3):
        assert wf.runs(f"child {n}") == 1


def test_get_result_timeout_outside_a_workflow() -> None:
    handle = start_workflow(wf.greet, "nobody runs me")
    began = time.monotonic()
    with pytest.raises(WorkflowTimeout):
        handle.get_result(timeout=0.3)
    assert time.monotonic() - began >= 0.3
    with pytest.raises(WorkflowNotFound):
        WorkflowHandle("missing").get_result(0)


def test_cancel_a_waiting_workflow_and_resume_it(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    worker = make_worker()
    assert worker.run_once().handed_back == 1
    cancel_workflow(handle.workflow_id)
    assert handle.get_status() == "cancelled"
    assert workflow_job(handle.workflow_id).status == "cancelled"
    with pytest.raises(WorkflowCancelled):
        handle.get_result(1)
    send(handle.workflow_id, "after cancel")
    assert worker.run_once().claimed == 0
    cancel_workflow(handle.workflow_id)  # again: nothing to do
    resume_workflow(handle.workflow_id)
    assert handle.get_status() == "pending"
    send(handle.workflow_id, "second")
    drain(worker)
    assert handle.get_result(1) == ["after cancel", "second"]
    with pytest.raises(WorkflowStateError, match="already ended"):
        cancel_workflow(handle.workflow_id)
    with pytest.raises(WorkflowStateError, match="fork a failed or completed one"):
        resume_workflow(handle.workflow_id)
    with pytest.raises(WorkflowNotFound):
        cancel_workflow("missing")


def test_cancelling_a_running_workflow_takes_effect_at_its_next_step(
    make_worker: type[Worker], tmp_path: Any
) -> None:
    flag = tmp_path / "hold"
    flag.touch()
    handle = start_workflow(wf.five_steps, "cancel", str(flag))
    worker = make_worker()
    running = threading.Thread(target=worker.run_once)  # returns when the handler does
    running.start()
    deadline = time.monotonic() + 10
    while not wf.runs("cancel:3"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancel_workflow(handle.workflow_id)
    flag.unlink()
    running.join(10)
    drain(worker)
    assert handle.get_status() == "cancelled"
    assert wf.runs("cancel:4") == 0
    # The step in flight finished and was recorded; the next one never ran.
    assert [s.index for s in list_workflow_steps(handle.workflow_id)] == [0, 1, 2, 3]
    resume_workflow(handle.workflow_id)
    drain(worker)
    assert handle.get_result(1)[-1] == "cancel:4"
    assert wf.runs("cancel:3") == 1


def test_fork_reuses_checkpoints_before_the_given_step(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.five_steps, "fork", "/nonexistent")
    drain(make_worker())
    forked = fork_workflow(handle.workflow_id, from_step=3, new_workflow_id="fork-copy")
    info = get_workflow("fork-copy")
    assert (info.forked_from, info.args) == (handle.workflow_id, ["fork", "/nonexistent"])
    drain(make_worker())
    assert forked.get_result(1) == handle.get_result(1)
    assert [wf.runs(f"fork:{i}") for i in range(5)] == [1, 1, 1, 2, 2]
    with pytest.raises(WorkflowConflict):
        fork_workflow(handle.workflow_id, new_workflow_id="fork-copy")
    with pytest.raises(WorkflowNotFound):
        fork_workflow("missing")


def test_list_workflows_filters_and_orders_newest_first(make_worker: type[Worker]) -> None:
    a = start_workflow(wf.greet, "a")
    b = start_workflow(wf.fails, "b")
    drain(make_worker())
    c = start_workflow(wf.greet, "c")
    assert [w.workflow_id for w in list_workflows()] == [
        c.workflow_id,
        b.workflow_id,
        a.workflow_id,
    ]
    assert [w.workflow_id for w in list_workflows(status="failed")] == [b.workflow_id]
    assert [w.workflow_id for w in list_workflows(name="test.greet", limit=1)] == [c.workflow_id]
    with pytest.raises(WorkflowNotFound):
        list_workflow_steps("missing")


def test_a_workflow_version_other_than_ours_is_not_claimed(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "old code")
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(app_version="v0")
    Job.objects.filter(key=f"workflow:{handle.workflow_id}").update(job_name=runner_job_name("v0"))
    drain(make_worker())
    assert handle.get_status() == "pending"
    # The operator moves it to the deployed code.
    resume_workflow(handle.workflow_id, app_version=app_version())
    assert workflow_job(handle.workflow_id).job_name == runner_job_name()
    drain(make_worker())
    assert handle.get_result(1) == "hello old code!"


def test_a_workflow_that_keeps_failing_its_runner_ends_dead_and_can_be_resumed(
    make_worker: type[Worker],
) -> None:
    @workflow("test.unregistered_later", max_recovery_attempts=1)
    def doomed() -> str:
        return "ran"

    handle = start_workflow(doomed)
    from django_pgjobs.workflows.registry import workflows

    workflows._workflows.pop("test.unregistered_later")
    try:
        worker = make_worker()
        for _ in range(2):
            worker.run_once()
            make_due(handle.workflow_id)
        info = get_workflow(handle.workflow_id)
        assert info.status == "dead"
        assert info.error is not None and "dead letters" in info.error["message"]
        [dead] = FailedJob.objects.filter(payload__workflow_id=handle.workflow_id)
        assert "No workflow named" in (dead.error or "")
    finally:
        workflows.add(doomed)
    with pytest.raises(WorkflowDead):
        handle.get_result(0)
    resume_workflow(handle.workflow_id)
    assert not FailedJob.objects.filter(payload__workflow_id=handle.workflow_id).exists()
    drain(make_worker())
    assert handle.get_result(1) == "ran"


def test_steps_outside_a_workflow_are_plain_calls() -> None:
    assert wf.note("plain") == "plain"
    assert wf.greet("direct") == "hello direct!"
    assert wf.runs("plain") == 1


def test_a_step_inside_atomic_in_a_workflow_body_is_refused(make_worker: type[Worker]) -> None:
    @workflow("test.atomic_body")
    def atomic_body() -> str:
        with transaction.atomic():
            return str(wf.note("inside atomic"))

    handle = start_workflow(atomic_body)
    drain(make_worker())
    with pytest.raises(WorkflowError, match="inside transaction"):
        handle.get_result(1)


def test_recorded_errors_of_unknown_classes_are_rebuilt_as_recorded_error() -> None:
    from django_pgjobs.workflows.codec import rebuild

    exc = rebuild({"type": "nowhere.Missing", "message": "gone", "args": ["gone"]})
    assert isinstance(exc, RecordedError)
    assert exc.type_name == "nowhere.Missing"


def test_decorator_options_are_validated() -> None:
    with pytest.raises(InvalidJobError, match="max_recovery_attempts"):
        workflow(max_recovery_attempts=-1)
    with pytest.raises(InvalidJobError, match="max_attempts"):
        step(max_attempts=0)
    with pytest.raises(InvalidJobError, match="async"):

        @workflow("test.async_wf")
        async def nope() -> None: ...


def test_step_overhead_is_one_statement_per_step(other_connection: Any) -> None:
    """Run the workflow's job in this thread so every statement it makes is captured."""
    handle = start_workflow(wf.five_steps, "count", "/nonexistent")
    [job] = queries.claim_jobs(
        other_connection.cursor(),
        worker_id="test",
        limit=1,
        lease_seconds=60,
        queues=None,
        job_names=None,
    )
    handler = registry.get(job.job_name)
    assert handler is not None
    with CaptureQueriesContext(connection) as captured:
        call_handler(handler, job, ProgressReporter(job, lambda *args: None))
    assert handle.get_result(1)[0] == "count:0"
    ours = [q["sql"] for q in captured.captured_queries if "pgjobs_workflow" in q["sql"]]
    # One statement to load, one checkpoint per step, one to finish.
    assert len(ours) == 7, ours
    assert sum("INSERT INTO pgjobs_workflow_steps" in sql for sql in ours) == 5


def test_finished_workflows_are_pruned_with_their_history(make_worker: type[Worker]) -> None:
    old = start_workflow(wf.receiver, None, 0)
    young = start_workflow(wf.greet, "young")
    send(old.workflow_id, "kept until pruned")
    drain(make_worker())
    WorkflowExecution.objects.filter(workflow_id=old.workflow_id).update(
        completed_at=timezone.now() - timedelta(days=8)
    )
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workflow_events (workflow_id, key, value) VALUES (%s, 'k', '1')",
            [old.workflow_id],
        )
        assert queries.prune_finished_workflows(cur, older_than_seconds=7 * 86400) == 1
    assert not WorkflowExecution.objects.filter(workflow_id=old.workflow_id).exists()
    assert not WorkflowStep.objects.filter(workflow_id=old.workflow_id).exists()
    assert get_workflow(young.workflow_id).status == "completed"


def test_cancelling_a_workflows_job_cancels_the_workflow() -> None:
    handle = start_workflow(wf.greet, "via job")
    cancel_job(workflow_job(handle.workflow_id).id)
    assert handle.get_status() == "cancelled"
    assert workflow_job(handle.workflow_id).status == "cancelled"


def test_a_requeued_dead_workflow_job_gets_its_key_back(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    job = workflow_job(handle.workflow_id)
    Job.objects.filter(id=job.id).update(max_attempts=1)
    Job.objects.filter(id=job.id).update(
        status="running", attempt=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with connection.cursor() as cur:
        queries.rescue_expired_leases(cur)
    assert handle.get_status() == "dead"
    [dead] = FailedJob.objects.filter(payload__workflow_id=handle.workflow_id)
    retry_dead_letter_job(dead.id)
    assert workflow_job(handle.workflow_id).status == "pending"
    worker = make_worker()
    assert worker.run_once().handed_back == 1  # waits for a message again
    # The wake-ups find the requeued job by its key; without it they would miss it.
    send(handle.workflow_id, "found by its key")
    drain(worker)
    send(handle.workflow_id, "second")
    drain(worker)
    assert handle.get_result(1) == ["found by its key", "second"]
