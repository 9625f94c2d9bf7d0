"""``manage.py pgjobs_workflows``: each action calls the library and reports what it did."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models.functions import Now

from django_pgjobs import get_workflow, send, start_workflow
from django_pgjobs.models import Job, WorkflowExecution
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.observability.display import local_time
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import list_workflow_steps
from django_pgjobs.workflows.definitions import app_version, runner_job_name
from tests.helpers import in_thread, wait_for, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs_workflows", *args, stdout=out)
    return out.getvalue()


def run_both(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("pgjobs_workflows", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_list_and_show(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "cli", workflow_id="cli-1")
    start_workflow(wf.fails, "no", workflow_id="cli-2")
    make_worker().run_once()
    listing = run("list")
    assert "cli-1" in listing and "cli-2" in listing
    assert "cli-1" not in run("list", "--status", "failed")
    shown = run("show", handle.workflow_id)
    assert "completed" in shown and '"hello cli!"' in shown
    assert "tests.testapp.workflows.note" in shown
    assert "builtins.ValueError: no" in run("show", "cli-2")


def test_cancel_resume_fork() -> None:
    start_workflow(wf.greet, "ops", workflow_id="ops-1")
    assert "Cancelled workflow ops-1" in run("cancel", "ops-1")
    assert get_workflow("ops-1").status == "cancelled"
    assert run("cancel", "ops-1") == "Workflow ops-1 was already cancelled.\n"
    WorkflowExecution.objects.filter(workflow_id="ops-1").update(app_version="old")
    assert "Resumed" in run("resume", "ops-1", "--deployed")
    assert get_workflow("ops-1").app_version == app_version()
    assert "as ops-copy" in run("fork", "ops-1", "--new-id", "ops-copy")
    assert get_workflow("ops-copy").forked_from == "ops-1"
    assert "  forked from  ops-1\n" in run("show", "ops-copy")


def test_errors_become_command_errors() -> None:
    with pytest.raises(CommandError, match="No workflow has the id 'missing'"):
        run("show", "missing")
    with pytest.raises(CommandError, match="from-step"):
        run("fork", "missing", "--from-step", "-1")
    with pytest.raises(CommandError, match=r"^--limit must be >= 1\.$"):
        run("list", "--limit", "0")
    start_workflow(wf.greet, "x", workflow_id="unrun")
    with pytest.raises(CommandError, match="has recorded no step: --from-step must be 0; got 2"):
        run("fork", "unrun", "--from-step", "2")


def test_show_names_a_workflow_by_the_start_of_its_id() -> None:
    """Exactly one workflow must start so, an id that exists as given is that workflow, and
    LIKE's wildcards are plain characters. Only ``show``: the actions that change a workflow
    take its whole id (a typo of ``order-1`` must not cancel ``order-10``), and name the ids that
    start with one no workflow has."""
    for workflow_id in ("pfx_one-1", "pfxaone-2", "cli-7", "cli-70"):
        start_workflow(wf.greet, workflow_id, workflow_id=workflow_id)
    assert run("show", "pfx_").startswith("pfx_one-1 ")
    assert run("show", "cli-7").startswith("cli-7 ")
    assert run("show", "cli-70").startswith("cli-70 ")
    with pytest.raises(CommandError, match="More than one workflow has an id starting with 'pfx'"):
        run("show", "pfx")
    for action in ("cancel", "resume", "fork"):
        with pytest.raises(
            CommandError, match=r"No workflow has the id 'pfxa'\. Ids that start so: pfxaone-2\."
        ):
            run(action, "pfxa")
    assert get_workflow("pfxaone-2").status == "pending"
    with pytest.raises(CommandError, match=r"No workflow has the id 'nothing'\.$"):
        run("show", "nothing")


def test_show_cuts_long_values_unless_full(make_worker: type[Worker]) -> None:
    message = "x" * 5_000
    handle = start_workflow(wf.receiver, None, 60.0)
    send(handle.workflow_id, message)
    send(handle.workflow_id, message)
    make_worker().run_once()
    shown = run("show", handle.workflow_id)
    assert "completed" in shown and message not in shown
    # Each received message (a step's output) and the workflow's output: "...", ["...", "..."]
    assert shown.count("5,002 characters in all; --full prints them") == 2
    assert "10,008 characters in all; --full prints them" in shown
    full = run("show", handle.workflow_id, "--full")
    assert full.count(message) == 4 and "characters in all" not in full


def test_show_a_failed_steps_class_and_attempts_and_a_wait_that_will_never_end(
    make_worker: type[Worker],
) -> None:
    flaky = start_workflow(wf.flaky, "cli-flaky", 9)  # fails all three attempts of its step
    waiting = start_workflow(wf.receiver, "t", 60.0)
    make_worker().run_once()
    shown = run("show", flaky.workflow_id)
    assert "failed" in shown and "(after 3 attempts)" in shown
    assert "until " in run("show", waiting.workflow_id)
    run("cancel", waiting.workflow_id)
    shown = run("show", waiting.workflow_id)
    assert (
        "stopped: the workflow is cancelled (resumed, it goes on waiting (recv 't') until "
    ) in shown


def test_list_columns_stay_aligned_whatever_the_ids_length(make_worker: type[Worker]) -> None:
    long_id = "an-order-placed-by-a-customer-of-the-shop-number-1"  # 50 characters
    start_workflow(wf.greet, "a", workflow_id=long_id)
    start_workflow(wf.fails, "b", workflow_id="short")
    make_worker().run_once()
    header, *rows = run("list").splitlines()
    assert len(rows) == 2
    for column, cells in (
        ("name", ("test.greet", "test.fails")),
        ("status", ("completed", "failed")),
    ):
        at = header.index(column)
        assert sorted(row[at:].split()[0] for row in rows) == sorted(cells), (header, rows)
    assert header.index("name") == len(long_id) + 2


def test_list_columns_line_up_by_display_width_and_show_invisible_characters() -> None:
    """A wide character takes two columns and a combining accent none: padded by len(), ids
    of Japanese or accented text pushed their rows out of line. A zero-width space or a BOM in
    an id is escaped: shown invisibly, ``order-\u200b1`` passed for ``order-1``."""
    for workflow_id in ("注文-1", "e\u0301t\u00e9", "order-\u200b1", "\ufeffx", "plain-id-12"):
        start_workflow(wf.greet, "a", workflow_id=workflow_id)
    header, *rows = run("list").splitlines()
    at = _drawn_width(header[: header.index("name")])
    assert at == len("order-\\u200b1") + 2  # the widest, as printed
    for row in rows:
        assert _drawn_width(row[: row.index("test.greet")]) == at, (header, row)
    ids = {row.split()[0] for row in rows}
    assert {"order-\\u200b1", "\\ufeffx", "注文-1", "e\u0301t\u00e9"} <= ids


def _drawn_width(text: str) -> int:
    """Columns a terminal draws ``text`` in, for the few characters the test uses."""
    wide, combining = "注文", "\u0301"
    return sum(2 if char in wide else 0 if char in combining else 1 for char in text)


def test_show_gives_each_steps_time_and_a_failures_traceback(make_worker: type[Worker]) -> None:
    """A step's time is when its row was recorded. No duration: a step's start is the worker's
    clock, its checkpoint the database's as of the transaction that wrote it, which for a
    transaction_step began with the step's own first query."""
    failed = start_workflow(wf.fails, "no", workflow_id="tb-1")
    flaky = start_workflow(wf.flaky, "tb-flaky", 9)  # its step fails all three attempts
    make_worker().run_once()
    info = get_workflow(failed.workflow_id)
    assert info.started_at is not None and info.completed_at is not None
    shown = run("show", failed.workflow_id)
    assert (
        f"  created      {local_time(info.created_at)}   started {local_time(info.started_at)}"
        f"   ended {local_time(info.completed_at)}\n"
    ) in shown
    (step,) = list_workflow_steps(failed.workflow_id)
    assert step.completed_at is not None
    line = next(line for line in shown.splitlines() if "workflows.note" in line)
    assert f"completed  {local_time(step.completed_at)}  " in line
    # The workflow's traceback as stored (its exception line first), a line each, under its
    # error.
    lines = shown.splitlines()
    at = lines.index("  error        builtins.ValueError: no")
    assert lines[at + 1 : at + 4] == [
        "               ValueError: no",
        "",
        "               Traceback (most recent call last):",
    ]
    assert "                   raise ValueError(message)" in lines
    # A failed step's traceback under its row.
    lines = run("show", flaky.workflow_id).splitlines()
    at = next(n for n, line in enumerate(lines) if "(after 3 attempts)" in line)
    assert lines[at + 1 : at + 4] == [
        "        ConnectionError: attempt 3 failed",
        "",
        "        Traceback (most recent call last):",
    ]
    # Cut as other values are, unless --full.
    long = "Traceback (most recent call last):\n" + "  x\n" * 3_000 + "ValueError: the end"
    WorkflowExecution.objects.filter(workflow_id=failed.workflow_id).update(
        error={"type": "builtins.ValueError", "message": "long", "traceback": long}
    )
    shown = run("show", failed.workflow_id)
    assert f"({len(long):,} characters in all; --full prints them)" in shown
    assert "the end" not in shown
    assert "               ValueError: the end\n" in run("show", failed.workflow_id, "--full")


@pytest.mark.parametrize(
    ("stored", "said"),
    [
        ('"boom"', '"boom"'),
        ('["a", "b"]', '["a", "b"]'),
        ('"a\\nb"', '"a\\nb"'),
        (f'"{"x" * 3_000}"', f'"{"x" * 1_999}... (3,002 characters in all; --full prints them)'),
        # Python cannot decode it (5,001 digits): its stand-in's text, which says so, escaped.
        ("1e5000", "(cannot be decoded: ValueError: a number has more digits than Python converts"),
    ],
)
def test_show_prints_an_error_stored_by_sql_that_is_not_an_object(
    make_worker: type[Worker], stored: str, said: str
) -> None:
    """A row written by SQL is a first-class producer: an error that is not ``{"type": ...,
    "message": ...}`` is printed as stored, escaped and cut like other values, steps and all."""
    handle = start_workflow(wf.flaky, "sql-error", 9)  # its step fails all three attempts
    make_worker().run_once()
    with connection.cursor() as cur:
        for table in ("pgjobs_workflow_executions", "pgjobs_workflow_steps"):
            cur.execute(
                f"UPDATE {table} SET error = %s::jsonb WHERE workflow_id = %s",
                [stored, handle.workflow_id],
            )
    lines = run("show", handle.workflow_id).splitlines()
    assert f"  error        {said}" in [line[: 15 + len(said)] for line in lines]
    (step,) = [line for line in lines if "flaky_step" in line]
    assert "  failed  " in step and f"  {said}" in step, step


@pytest.mark.parametrize(
    "stored", ['{"args": null}', '{"args": 5}', '{"kwargs": [1, 2]}', '{"kwargs": "ab"}', '"x"']
)
def test_an_input_stored_by_sql_in_any_shape_is_listed_shown_and_cancelled(stored: str) -> None:
    """``list`` failed for every workflow (a TypeError from the one row), ``show`` and ``cancel``
    for that one: ``args`` and ``kwargs`` keep what fits them, ``input`` what is stored."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workflow_executions (workflow_id, name, input, app_version) "
            "VALUES ('odd-input', 'test.greet', %s::jsonb, 'v1')",
            [stored],
        )
    start_workflow(wf.greet, "x", workflow_id="plain")
    listed = run("list")
    assert "odd-input" in listed and "plain" in listed
    assert f"  input        {stored}" in run("show", "odd-input").splitlines()
    info = get_workflow("odd-input")
    assert (info.args, info.kwargs, info.input) == ([], {}, json.loads(stored))
    run("cancel", "odd-input")
    assert get_workflow("odd-input").status == "cancelled"


def test_list_and_show_say_what_a_pending_workflow_waits_for(make_worker: type[Worker]) -> None:
    """A workflow in a durable wait is pending, its job scheduled later: ``list`` says what it
    waits for, in the words ``show`` uses for its waiting step."""
    topic = start_workflow(wf.receiver, "payment", 600.0, workflow_id="waits-topic")
    untitled = start_workflow(wf.receiver, None, 600.0, workflow_id="waits-none")
    asleep = start_workflow(wf.sleeper, "nap", 3_600.0, workflow_id="waits-sleep")
    event = start_workflow(wf.event_waiter, "someone:else", 600.0, workflow_id="waits-event")
    start_workflow(wf.parent, 1, workflow_id="waits-child")
    queued = start_workflow(wf.greet, "later", workflow_id="waits-not")
    Job.objects.filter(key=f"pgjobs.workflow:{queued.workflow_id}").update(
        scheduled_for=Now() + timedelta(hours=1)
    )
    make_worker(concurrency=8).run_once()
    wake_at = {
        handle.workflow_id: local_time(list_workflow_steps(handle.workflow_id)[-1].wake_at)  # type: ignore[arg-type]
        for handle in (topic, untitled, asleep, event)
    }
    listed = {line.split()[0]: line for line in run("list").splitlines()[1:]}
    said = {
        "waits-topic": f"waiting (recv 'payment') until {wake_at['waits-topic']}",
        "waits-none": f"waiting (recv) until {wake_at['waits-none']}",
        "waits-sleep": f"sleeping until {wake_at['waits-sleep']}",
        "waits-event": f"waiting (get_event 'someone:else:stage') until {wake_at['waits-event']}",
        "waits-child": "waiting (get_result of 'waits-child-0'), no time limit",
    }
    for workflow_id, words in said.items():
        assert listed[workflow_id].endswith(f"  {words}"), listed[workflow_id]
        (step,) = [line for line in run("show", workflow_id).splitlines() if " waiting " in line]
        assert step.endswith(f"  {_recorded_wait(workflow_id)}  {words}"), step
    assert listed["waits-not"].endswith("  pending")
    assert listed["waits-child-0"].endswith("  pending")  # queued by its parent, not waiting


def test_a_long_wait_key_is_cut_in_list_and_in_show_unless_full(
    make_worker: type[Worker],
) -> None:
    """A wake-up key written by SQL may be of any length (Python's: an id and a topic or an
    event's key, up to 200 characters each): one of 5,000 made a list line as long."""
    topic = "t" * 5_000
    start_workflow(wf.receiver, "short", 600.0, workflow_id="long-topic")
    make_worker().run_once()
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_workflow_steps SET wait_key = %s "
            "WHERE workflow_id = 'long-topic' AND status = 'waiting'",
            [f"message:long-topic:{topic}"],
        )
    cut = f"recv '{'t' * 200}'... (5,000 characters in all; show --full prints them)) until "
    (listed,) = [line for line in run("list").splitlines() if "long-topic" in line]
    assert cut in listed and len(listed) < 400, listed
    (step,) = [line for line in run("show", "long-topic").splitlines() if " waiting " in line]
    assert cut in step and len(step) < 400, step
    full = run("show", "long-topic", "--full").splitlines()
    (step,) = [line for line in full if " waiting " in line]
    assert f"waiting (recv '{topic}') until " in step


def _recorded_wait(workflow_id: str) -> str:
    """A wait in progress is shown with the time it began."""
    return local_time(list_workflow_steps(workflow_id)[-1].started_at)


def test_show_says_a_cancelled_workflows_run_is_still_in_a_step(
    make_worker: type[Worker], tmp_path: Path
) -> None:
    """A cancel does not interrupt a step: the run records it when it ends, then stops. Until
    then that step has no row, and ``show`` says where the run is from its job."""
    flag = tmp_path / "hold"
    flag.touch()
    handle = start_workflow(wf.five_steps, "inflight", str(flag), workflow_id="inflight")
    worker = make_worker()
    thread = in_thread(worker.run_once)
    try:
        wait_for(lambda: wf.runs("inflight:3"), what="step 3 to start")
        run("cancel", handle.workflow_id)
        shown = run("show", handle.workflow_id)
        job = workflow_job(handle.workflow_id)
        assert (
            f"  in flight    its last run (worker {worker.worker_id} since "
            f"{local_time(job.locked_at)}) is still in a step not recorded yet (or between two): "
            "the step is not interrupted, and is recorded when it ends; the run stops before the "
            "next one (a resume is refused until then)\n"
        ) in shown
        assert "workflows.gate" not in shown  # not recorded yet
        with pytest.raises(CommandError, match="but its last run is still running"):
            run("resume", handle.workflow_id)
        Job.objects.filter(id=job.id).update(lease_expires_at=Now() - timedelta(seconds=1))
        expired = workflow_job(handle.workflow_id).lease_expires_at
        assert (
            f"let its lease run out at {local_time(expired)}: if that worker died in a step, "
            "the step is not recorded, and a resume runs it again"
        ) in run("show", handle.workflow_id)
    finally:
        flag.unlink()
        thread.join(10)
    shown = run("show", handle.workflow_id)
    assert "  in flight " not in shown
    after = "(recorded after the cancel: a step in flight is not interrupted)"
    (step_3,) = [line for line in shown.splitlines() if "workflows.gate" in line]
    assert step_3.endswith(after)
    assert shown.count(after) == 1


def test_show_says_a_cancelled_workflows_run_is_in_its_wait(make_worker: type[Worker]) -> None:
    """A sleep of a second or less is waited out holding the job: cancelled then, the run is in
    that wait, whose row exists, not in a step not recorded yet. Made by SQL: the job taken by a
    run, as a worker's claim leaves it."""
    start_workflow(wf.sleeper, "nap", 3_600.0, workflow_id="in-wait")
    make_worker().run_once()
    run("cancel", "in-wait")
    job = workflow_job("in-wait")
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_job_queue SET status = 'running', locked_by = 'w-sql', "
            "locked_at = now(), lease_expires_at = now() + interval '1 hour', completed_at = NULL "
            "WHERE id = %s",
            [job.id],
        )
    wait = f"sleeping until {local_time(list_workflow_steps('in-wait')[-1].wake_at)}"  # type: ignore[arg-type]
    shown = run("show", "in-wait")
    locked_at = local_time(workflow_job("in-wait").locked_at)
    assert (
        f"  in flight    its last run (worker w-sql since {locked_at}) is in its wait ({wait}), "
        "holding the job (a sleep of 1s or less is waited out so, and a run woken from a wait "
        "checks whether it ended): it stops before the next step (a resume is refused until "
        "then)\n"
    ) in shown
    assert "not recorded yet" not in shown
    (step,) = [line for line in shown.splitlines() if " waiting " in line]
    assert step.endswith(f"  {wait}"), step  # not "stopped": the run is in it
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_job_queue SET lease_expires_at = now() - interval '1 second' "
            "WHERE id = %s",
            [job.id],
        )
    assert f"if that worker died in its wait ({wait}), a resume goes on with that wait" in run(
        "show", "in-wait"
    )


def test_resume_to_a_code_version_no_live_worker_runs_warns_and_resumes() -> None:
    """An operator may deploy that version next: the resume stands, with the warning ``pgjobs
    explain`` gives for such a workflow (live workers run other versions) or ``pgjobs status``
    (none is live, and this deployment runs another)."""
    start_workflow(wf.greet, "v", workflow_id="moved")
    run("cancel", "moved")
    WorkerRow.objects.create(id="w1", handlers=["test.record", runner_job_name()])
    out, err = run_both("resume", "moved", "--app-version", "zzz")
    assert out == "Resumed workflow moved.\n"
    assert get_workflow("moved").app_version == "zzz"
    assert err == (
        "Warning: Its workflow (moved) is pinned to code version 'zzz', which the live worker "
        f"serving queue default (w1) does not run (it runs: {app_version()}). Deploy that "
        "version, or move the workflow to the deployed one: `manage.py pgjobs_workflows resume "
        "moved --deployed`.\n"
    )
    WorkerRow.objects.all().delete()
    _, err = run_both("resume", "moved", "--app-version", "yyy")  # a pending one, re-pinned
    assert err.startswith(
        "Warning: Its workflow (moved) is pinned to code version 'yyy', which no worker of this "
        "deployment runs, and no live worker serves queue default. Deploy that version"
    )
    assert run_both("resume", "moved", "--deployed") == ("Resumed workflow moved.\n", "")
    WorkerRow.objects.create(id="w2", handlers=None)  # may run it: what it runs is not known
    assert run_both("resume", "moved", "--app-version", "xxx")[1] == ""


def test_resume_to_the_deployed_version_no_live_worker_runs_advises_starting_one() -> None:
    """Moving the workflow to the deployed version, the command just run, would change nothing:
    the live workers are what lag behind."""
    start_workflow(wf.greet, "v", workflow_id="behind")
    run("cancel", "behind")
    WorkerRow.objects.create(id="w1", handlers=["test.record", runner_job_name("old")])
    _, err = run_both("resume", "behind", "--deployed")
    assert err == (
        f"Warning: Its workflow (behind) is pinned to code version {app_version()!r}, which the "
        "live worker serving queue default (w1) does not run (it runs: old). That is the code "
        "version deployed here: start a worker with this code serving that queue (`manage.py "
        "pgjobs_worker --queues default`), or upgrade the workers that serve it.\n"
    )


def test_a_suggested_command_quotes_the_workflow_id() -> None:
    """Ids are the application's: pasted, the advice must resume that id and run nothing else."""
    hostile = "x$(touch /tmp/pwned)"
    start_workflow(wf.greet, "v", workflow_id=hostile)
    run("cancel", hostile)
    WorkerRow.objects.create(id="w1", handlers=["test.record", runner_job_name()])
    _, err = run_both("resume", hostile, "--app-version", "zzz")
    assert "`manage.py pgjobs_workflows resume 'x$(touch /tmp/pwned)' --deployed`" in err, err
