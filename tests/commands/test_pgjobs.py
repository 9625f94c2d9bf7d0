"""``manage.py pgjobs``: status, list, retry, cancel, enqueue, prune and schedules, each a thin
call into the library; mistakes on the command line are command errors."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_pgjobs import enqueue, get_job, start_workflow
from django_pgjobs.models import FailedJob, Job, Schedule, WorkflowExecution
from django_pgjobs.observability.status import queue_status
from django_pgjobs.queues import pause_queue, set_queue_limits
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.worker import Worker
from tests.helpers import add_schedule
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def pgjobs(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs", *args, stdout=out)
    return out.getvalue()


def test_status_shows_counts_dead_letters_workers_and_lag(make_worker: type[Worker]) -> None:
    enqueue("test.record", queue="mail", scheduled_for=timezone.now() - timedelta(minutes=2))
    enqueue("test.record", queue="mail", scheduled_for=timedelta(hours=1))
    enqueue("test.fail", max_attempts=1)
    worker = make_worker(queues=["default"])
    worker.run_once()  # buries test.fail and stays registered
    out = pgjobs("status")
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["mail"] == [
        "1",
        "1",
        "0",
        "0",
        "0",
    ]  # due, scheduled, running, completed, cancelled
    assert "dead letters: 1" in out
    assert "live workers: 1" in out and worker.worker_id in out
    assert "oldest due job: 0:02:0" in out


def test_status_marks_paused_and_limited_queues_and_leaves_paused_ones_out_of_the_lag() -> None:
    now = timezone.now()
    enqueue("test.record", queue="mail", scheduled_for=now - timedelta(hours=1))
    enqueue("test.record", queue="bulk", scheduled_for=now - timedelta(minutes=2))
    enqueue("test.record", queue="plain", scheduled_for=now - timedelta(minutes=1))
    pause_queue("mail")
    pause_queue("idle")  # paused, no jobs: listed all the same
    set_queue_limits("bulk", concurrency=2)
    set_queue_limits("quiet", rate_limit=5)  # limited, no jobs: not listed
    lines = pgjobs("status").splitlines()
    rows = {line.split()[0]: line.split()[6:] for line in lines[1:5]}
    assert rows == {"bulk": ["limited"], "idle": ["paused"], "mail": ["paused"], "plain": []}
    assert not any(line.startswith("quiet") for line in lines)
    assert "(paused: starts none until `pgjobs resume QUEUE`; limited: " in "\n".join(lines)
    # The workers are 2 minutes behind; the paused queue's hour-old job waits on purpose.
    lag = next(line for line in lines if line.startswith("oldest due job: "))
    assert lag.startswith("oldest due job: 0:02:0")
    assert "(queues not paused; paused queues: 1:00:0" in lag
    status = queue_status()
    assert (status.paused, status.limited) == (["idle", "mail"], ["bulk", "quiet"])
    assert status.oldest_due_age is not None and status.oldest_due_age < 3600
    assert status.oldest_paused_due_age is not None and status.oldest_paused_due_age >= 3600


def test_status_on_an_empty_queue() -> None:
    out = pgjobs("status")
    assert "(no jobs)" in out and "oldest due job: none" in out


def test_status_names_due_jobs_no_handler_will_run() -> None:
    enqueue("send-welcom-email")  # a typo: nobody handles it
    assert "no handler is registered for 'send-welcom-email': 1 job" in pgjobs("status")


def test_status_counts_workflows_and_names_stranded_versions() -> None:
    handle = start_workflow(wf.greet, "stranded")
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(app_version="v0")
    Job.objects.filter(key=f"pgjobs.workflow:{handle.workflow_id}").update(
        job_name="pgjobs.workflow:v0"
    )
    out = StringIO()
    call_command("pgjobs", "status", stdout=out)
    text = out.getvalue()
    assert "workflows: pending 1" in text
    assert "1 workflow pinned to code version 'v0'" in text
    assert "--deployed" in text


def test_list_and_list_dead(make_worker: type[Worker]) -> None:
    alive = enqueue("test.record", {"a": 1})
    dead = enqueue("test.fail", {"message": "gone"}, max_attempts=1)
    make_worker(concurrency=1).run_once()  # claims one of them; run again for the other
    make_worker(concurrency=1).run_once()
    assert str(alive) in pgjobs("list", "--status", "completed")
    dead_out = pgjobs("list", "--status", "dead")
    assert str(dead) in dead_out and "ValueError: gone" in dead_out


def test_retry_handles_jobs_and_dead_letters(make_worker: type[Worker]) -> None:
    dead = enqueue("test.fail", max_attempts=1)
    make_worker().run_once()
    out = pgjobs("retry", str(dead))
    assert "re-queued as job" in out
    assert not FailedJob.objects.exists() and Job.objects.filter(status="pending").count() == 1
    waiting = enqueue("test.record", scheduled_for=timedelta(hours=1))
    pgjobs("retry", str(waiting))
    assert get_job(waiting).scheduled_for <= timezone.now()


def test_cancel_and_errors_are_command_errors() -> None:
    job_id = enqueue("test.record")
    assert "cancelled" in pgjobs("cancel", str(job_id))
    assert get_job(job_id).status == "cancelled"
    with pytest.raises(CommandError, match="only a pending or running job"):
        pgjobs("cancel", str(job_id))
    with pytest.raises(CommandError, match="No job with id"):
        pgjobs("retry", str(uuid.uuid4()))


def test_enqueue_command() -> None:
    out = pgjobs(
        "enqueue",
        "test.record",
        "--payload",
        '{"label": "cli"}',
        "--queue",
        "q",
        "--priority",
        "5",
        "--delay",
        "60",
    )
    job = get_job(out.strip())
    assert (job.payload, job.queue, job.priority) == ({"label": "cli"}, "q", 5)
    assert job.scheduled_for > timezone.now() + timedelta(seconds=50)
    with pytest.raises(CommandError, match="not JSON Python can read"):
        pgjobs("enqueue", "test.record", "--payload", "{nope")
    # Valid JSON Python still cannot read: a number past the digit limit, nesting past the
    # recursion limit. An error, not a traceback, and nothing enqueued.
    before = Job.objects.count()
    for unreadable in ("1" * 5000, "[" * 100_000 + "]" * 100_000):
        with pytest.raises(CommandError, match="not JSON Python can read"):
            pgjobs("enqueue", "test.record", "--payload", unreadable)
    assert Job.objects.count() == before
    with pytest.raises(CommandError, match="between -100 and 100"):
        pgjobs("enqueue", "test.record", "--priority", "500")


def test_prune_command() -> None:
    job_id = enqueue("test.record")
    Job.objects.filter(id=job_id).update(
        status="completed", completed_at=timezone.now() - timedelta(days=2)
    )
    assert "Pruned 1 finished jobs" in pgjobs("prune")


def test_schedules_command_lists_next_five_fire_times_and_run_schedule_is_manual(
    scheduler: Scheduler,
) -> None:
    add_schedule("nightly", "0 2 * * *", timezone="Europe/Paris", payload={"k": "v"})
    scheduler.run_once()
    out = StringIO()
    call_command("pgjobs", "schedules", stdout=out)
    text = out.getvalue()
    assert "nightly  [0 2 * * *] Europe/Paris  -> test.record" in text
    next_line = next(line for line in text.splitlines() if "next:" in line)
    # 02:00 in Paris, shown like every time in TIME_ZONE (UTC here) with its offset.
    assert next_line.count("01:00:00+0000") == 5
    before = Schedule.objects.values_list("last_run_at", "next_run_at").get()
    call_command("pgjobs", "run-schedule", "nightly", stdout=StringIO())
    manual = Job.objects.get()
    assert manual.payload["manual"] is True and manual.payload["k"] == "v"
    assert "fire_time" in manual.payload and manual.key is None
    assert Schedule.objects.values_list("last_run_at", "next_run_at").get() == before
    with pytest.raises(CommandError, match="No schedule named 'nope'"):
        call_command("pgjobs", "run-schedule", "nope")


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("pgjobs_worker", ["--database", "nope"], "not in settings.DATABASES"),
        ("pgjobs_worker", ["--queues", " , "], "names no queue"),
        ("pgjobs_worker", ["--poll-interval", "0"], "--poll-interval"),
        ("pgjobs", ["--database", "nope", "status"], "not in settings.DATABASES"),
        ("pgjobs", ["prune", "--older-than", "-5"], "--older-than"),
        ("pgjobs", ["enqueue", "test.record", "--delay", "-10"], "--delay"),
        # Past a century: an OverflowError, a ValueError or a DataError, as tracebacks.
        ("pgjobs", ["prune", "--older-than", "inf"], "--older-than must be .*(100 years)"),
        ("pgjobs", ["prune", "--older-than", "1e300"], "--older-than"),
        ("pgjobs", ["enqueue", "test.record", "--delay", "1e300"], "--delay must be"),
        ("pgjobs", ["enqueue", "test.record", "--delay", "inf"], "--delay"),
        ("pgjobs", ["enqueue", "test.record", "--delay", "nan"], "--delay"),
        # Past poll()'s 24.8 days, the scheduler's thread died; inf: a time_t error.
        ("pgjobs_worker", ["--poll-interval", "inf"], "at most 86400"),
        ("pgjobs_worker", ["--poll-interval", "2592000"], "--poll-interval"),
        ("pgjobs_scheduler", ["--poll-interval", "inf"], "--poll-interval"),
        ("pgjobs_scheduler", ["--poll-interval", "0"], "--poll-interval"),
    ],
)
def test_command_line_mistakes_are_command_errors(
    command: str, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command(command, *args)


def test_queue_commands_start_from_settings_no_worker_has_written_yet() -> None:
    """Limits deployed in PGJOBS["QUEUES"] before any worker restarted: the CLI shows them,
    changes one option on top of them, and --reset restores them."""
    from django.test import override_settings

    from django_pgjobs.models import Queue

    with override_settings(PGJOBS={"QUEUES": {"newdecl": {"concurrency": 2}}}):
        assert "at most 2 running" in pgjobs("queues")
        pgjobs("queue-limits", "newdecl", "--worker-concurrency", "1")
        row = Queue.objects.get(name="newdecl")
        assert (row.concurrency, row.worker_concurrency, row.overridden) == (2, 1, True)
        pgjobs("queue-limits", "newdecl", "--reset")
        row = Queue.objects.get(name="newdecl")
        assert (row.concurrency, row.worker_concurrency, row.overridden) == (2, None, False)


def test_queue_limits_without_options_shows_them_and_a_second_reset_says_nothing_to_reset() -> None:
    from django.test import override_settings

    with override_settings(PGJOBS={"QUEUES": {"shown": {"concurrency": 2}}}):
        assert pgjobs("queue-limits", "shown").strip() == (
            "Queue shown: at most 2 running (as PGJOBS['QUEUES'] says)."
        )
        pgjobs("queue-limits", "shown", "--concurrency", "3")
        assert pgjobs("queue-limits", "shown").strip() == (
            "Queue shown: at most 3 running (changed by an operator)."
        )
        assert pgjobs("queue-limits", "shown", "--reset").strip() == (
            "Queue shown: at most 2 running, as PGJOBS['QUEUES'] says: override ended."
        )
        assert pgjobs("queue-limits", "shown", "--reset").strip() == (
            "Queue shown: at most 2 running, as PGJOBS['QUEUES'] says: nothing to reset."
        )
        pgjobs("queue-limits", "other", "--concurrency", "1")
        assert pgjobs("queue-limits", "other", "--reset").strip() == (
            "Queue other: no limits, as for a queue PGJOBS['QUEUES'] does not name: override ended."
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--concurrency", "0"],
            "--concurrency takes a whole number from 1 to 2147483647, or none for no limit; "
            "got '0'.",
        ),
        (
            ["--rate-limit", "1.5"],
            "--rate-limit takes a whole number from 1 to 2147483647, or none for no limit; "
            "got '1.5'.",
        ),
        (
            ["--rate-period", "2d"],
            "--rate-period takes seconds from 0.001 to 86400 (a day), e.g. 60, or none for the "
            "default (1 second); got '2d'.",
        ),
        (
            ["--rate-period", "172800"],
            "--rate-period is too large: at most 86400 seconds (a day); got '172800'.",
        ),
        (
            ["--timeout", "1e9"],
            "--timeout is too large: at most 31622400 seconds (a year); got '1e9'.",
        ),
        (
            ["--timeout", "1e400"],
            "--timeout is too large: at most 31622400 seconds (a year); got '1e400'.",
        ),
        (
            ["--concurrency", "99999999999"],
            "--concurrency is too large: at most 2147483647; got '99999999999'.",
        ),
        *(
            (
                ["--timeout", typed],
                "--timeout takes seconds from 0.001 to 31622400 (a year), e.g. 60, or none "
                f"for no timeout; got {typed!r}.",
            )
            for typed in ("1:00", "P1D", "nan", "inf", "1_000", "60s")
        ),
        (
            ["--concurrency", "1_000"],
            "--concurrency takes a whole number from 1 to 2147483647, or none for no limit; "
            "got '1_000'.",
        ),
        (
            ["--timeout", "-1"],
            "--timeout takes seconds from 0.001 to 31622400 (a year), e.g. 60, or none "
            "for no timeout; got '-1'.",
        ),
        (["--fair", "maybe"], "--fair takes yes or no; got 'maybe'."),
        # Only ASCII digits and spaces, as the admin takes: no other script's digits nor a thin
        # space.
        *(
            (
                ["--timeout", typed],
                "--timeout takes seconds from 0.001 to 31622400 (a year), e.g. 60, or none for "
                f"no timeout; got {typed!r}.",
            )
            for typed in ("\u0666\u0660", "\uff16\uff10", "60\u2009")
        ),
        (
            ["--concurrency", "\uff15"],
            "--concurrency takes a whole number from 1 to 2147483647, or none for no limit; "
            "got '\uff15'.",
        ),
        # Too large, however long (past the 4,300 digits int() reads), and not echoed whole.
        (
            ["--concurrency", "9" * 5000],
            "--concurrency is too large: at most 2147483647; got '99999999999999999999'... "
            "(5000 characters).",
        ),
        # PostgreSQL would round these to 0 s, which the table's CHECK refuses.
        (
            ["--timeout", "1e-7"],
            "--timeout takes seconds from 0.001 to 31622400 (a year), e.g. 60, or none for no "
            "timeout; got '1e-7'.",
        ),
        (
            ["--rate-limit", "5", "--rate-period", "0.0000004"],
            "--rate-period takes seconds from 0.001 to 86400 (a day), e.g. 60, or none for the "
            "default (1 second); got '0.0000004'.",
        ),
    ],
)
def test_queue_limits_says_what_to_type_and_writes_nothing(args: list[str], message: str) -> None:
    from django_pgjobs.models import Queue

    with pytest.raises(CommandError) as refused:
        pgjobs("queue-limits", "mail", "--worker-concurrency", "2", *args)
    assert str(refused.value) == message
    assert not Queue.objects.exists()


@pytest.mark.parametrize(("given", "shown"), [("0", "0"), ("1e-7", "1e-07")])
def test_enqueue_says_what_a_timeout_takes(given: str, shown: str) -> None:
    with pytest.raises(CommandError) as refused:
        pgjobs("enqueue", "test.record", "--timeout", given)
    assert str(refused.value) == (
        f"--timeout takes seconds from 0.001 to 31622400 (a year), e.g. 60; got {shown}."
    )
    assert not Job.objects.exists()


def test_queue_limits_that_change_nothing_say_so_and_override_nothing() -> None:
    from django.test import override_settings

    from django_pgjobs.models import Queue

    with override_settings(PGJOBS={"QUEUES": {"mail": {"concurrency": 2}}}):
        said = pgjobs("queue-limits", "mail", "--timeout", "none", "--concurrency", "2")
        assert said == "Queue mail: nothing changed (at most 2 running).\n"
        assert not Queue.objects.get(name="mail").overridden
        assert "changed by an operator" not in pgjobs("queues")
        said = pgjobs("queue-limits", "other", "--timeout", "none")
        assert said == "Queue other: nothing changed (no limits).\n"
        assert not Queue.objects.filter(name="other").exists()


def test_queue_limits_back_to_the_settings_end_the_override_and_spaces_are_taken() -> None:
    from django.test import override_settings

    from django_pgjobs.models import Queue

    with override_settings(PGJOBS={"QUEUES": {"mail": {"concurrency": 2, "timeout": 60}}}):
        said = pgjobs("queue-limits", "mail", "--concurrency", " 3 ", "--timeout", " 90 ")
        assert said == "Queue mail: at most 3 running, timeout 90s.\n"
        assert Queue.objects.get(name="mail").overridden
        said = pgjobs("queue-limits", "mail", "--concurrency", "2", "--timeout", "60")
        assert said == (
            "Queue mail: at most 2 running, timeout 60s, as PGJOBS['QUEUES'] says: "
            "override ended.\n"
        )
        assert not Queue.objects.get(name="mail").overridden


def test_queue_limits_back_to_no_limits_for_a_queue_the_settings_do_not_name_says_so() -> None:
    from django.test import override_settings

    from django_pgjobs.models import Queue

    with override_settings(PGJOBS={"QUEUES": {"mail": {"concurrency": 2}}}):
        assert pgjobs("queue-limits", "other", "--concurrency", "3") == (
            "Queue other: at most 3 running.\n"
        )
        said = pgjobs("queue-limits", "other", "--concurrency", "none")
        # Not "as PGJOBS['QUEUES'] says": the settings say nothing of this queue.
        assert said == (
            "Queue other: no limits, as for a queue PGJOBS['QUEUES'] does not name: "
            "override ended.\n"
        )
        assert not Queue.objects.get(name="other").overridden


def test_queue_limits_takes_an_option_only_as_spelled_out() -> None:
    """Trial15b: `--worker 3` was read as --worker-concurrency 3 (argparse's abbreviations)."""
    from django.core.management import CommandError

    from django_pgjobs.models import Queue

    with pytest.raises(CommandError, match="--worker"):
        pgjobs("queue-limits", "abbrev", "--worker", "3")
    assert not Queue.objects.filter(name="abbrev").exists()
    pgjobs("queue-limits", "abbrev", "--worker-concurrency", "3")
    assert Queue.objects.get(name="abbrev").worker_concurrency == 3
