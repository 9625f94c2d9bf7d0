"""What ``manage.py pgjobs`` and ``pgjobs_workflows`` print: stored text escaped, every time in
TIME_ZONE with its offset, progress in its own column, and schedules as the code declares them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import enqueue, enqueue_many, start_workflow
from django_pgjobs.models import FailedJob, Job, Schedule, Worker, WorkflowExecution
from django_pgjobs.queries.base import WORKFLOW_KEY_PREFIX
from django_pgjobs.schedules import declarations
from django_pgjobs.schedules.declarations import schedule
from django_pgjobs.schedules.scheduler import Scheduler
from tests.helpers import add_schedule, start_worker
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = "evil\x1b[2J\r\nforged line\x07"
RAW = ("\x1b", "\r", "\x07")


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def pgjobs(*args: str) -> str:
    return run("pgjobs", *args)[0]


def assert_escaped(text: str, lines: int) -> None:
    assert not any(char in text for char in RAW)
    assert "forged line" not in [line.strip() for line in text.splitlines()]
    assert len(text.splitlines()) == lines, text


def test_list_status_and_schedules_print_stored_text_escaped() -> None:
    Job.objects.create(job_name=HOSTILE, queue=HOSTILE, error=f"{HOSTILE}\nTraceback")
    FailedJob.objects.create(job_name=HOSTILE, queue=HOSTILE, error=HOSTILE)
    Worker.objects.create(id=HOSTILE, hostname=HOSTILE, queues=[HOSTILE])
    add_schedule(HOSTILE, "0 2 * * *")
    listed = pgjobs("list")
    assert_escaped(listed, 2)
    assert "evil\\x1b[2J\\r\\nforged line\\x07" in listed
    assert_escaped(pgjobs("list", "--status", "dead"), 2)
    status = pgjobs("status")
    assert not any(char in status for char in RAW) and f"host={HOSTILE}" not in status
    assert "host=evil\\x1b[2J" in status
    assert_escaped(pgjobs("schedules"), 4)


def test_workflow_listings_print_stored_text_escaped() -> None:
    handle = start_workflow(wf.greet, "x")
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(name=HOSTILE)
    out, _ = run("pgjobs_workflows", "list")
    assert_escaped(out, 2)
    out, _ = run("pgjobs_workflows", "show", handle.workflow_id)
    assert not any(char in out for char in RAW)


@override_settings(TIME_ZONE="Europe/Paris")
def test_times_are_in_time_zone_with_the_offset_and_progress_has_its_own_column() -> None:
    due = timezone.now() + timedelta(hours=1)
    job_id = enqueue("test.progress", {"steps": []}, scheduled_for=due)
    Job.objects.filter(id=job_id).update(progress=40)
    header, row = pgjobs("list").splitlines()
    assert header.split() == [
        "id", "state", "job", "queue", "tries", "progress", "due", "at", "error",
    ]  # fmt: skip
    assert row.split()[4:6] == ["0/3", "40%"]
    assert f"{timezone.localtime(due):%Y-%m-%d %H:%M:%S}+0100" in row


def test_list_columns_are_as_wide_as_their_widest_entry() -> None:
    """A job name or queue past the old fixed widths (30 and 12 characters) no longer pushes the
    rest of its row out of line; dead letters are listed the same way."""
    long_name, long_queue = "reports.build_the_quarterly_revenue_export", "a-queue-of-its-own"
    enqueue("test.record", queue=long_queue)
    enqueue("test.record")
    Job.objects.filter(queue=long_queue).update(job_name=long_name)
    header, *rows = pgjobs("list").splitlines()
    assert len(rows) == 2
    for column in ("queue", "tries", "progress", "due at"):
        at = header.index(column)
        assert {row[at - 2 : at] for row in rows} == {"  "}, column  # a gap before each column
    assert {row[header.index("tries") :].split()[0] for row in rows} == {"0/3"}
    FailedJob.objects.create(
        id=Job.objects.get(queue=long_queue).id, job_name=long_name, queue=long_queue,
        payload={}, attempt=3, max_attempts=3, error="boom\nmore", failed_at=timezone.now(),
    )  # fmt: skip
    header, row = pgjobs("list", "--status", "dead").splitlines()
    assert row[header.index("tries") :].split()[0] == "3/3"
    assert row[header.index("error") :] == "boom"


def test_list_shows_a_partition_key_on_a_line_of_its_own_escaped() -> None:
    keyed = enqueue("test.record", partition_key=HOSTILE)
    enqueue("test.record")
    listed = pgjobs("list")
    assert_escaped(listed, 4)  # the header, two jobs, one partition key
    lines = listed.splitlines()
    (at,) = [n for n, row in enumerate(lines) if "partition key:" in row]
    assert lines[at - 1].startswith(str(keyed))  # under its job's row
    assert lines[at].split("partition key: ")[1] == "evil\\x1b[2J\\r\\nforged line\\x07"


@pytest.fixture
def declared_in_code() -> Iterator[str]:
    schedule("declared-only", cron="30 4 * * *", job_name="test.record")
    yield "declared-only"
    declarations.forget("declared-only")


def test_schedules_shows_code_schedules_no_scheduler_synced_yet(declared_in_code: str) -> None:
    text = pgjobs("schedules")
    block = text.split(f"{declared_in_code}  [30 4 * * *]", 1)[1].split("\n\n")[0]
    assert "declared in code, not synced yet" in block
    assert block.count("04:30:00+0000") == 5


def test_an_orphaned_schedule_shows_no_next_fire_times(scheduler: Scheduler) -> None:
    add_schedule("gone", "0 2 * * *")
    Schedule.objects.filter(name="gone").update(source="code", orphaned=True, enabled=False)
    text = pgjobs("schedules")
    block = text.split("gone  [0 2 * * *]", 1)[1]
    assert "not firing: its declaration was removed from code" in block
    assert "next" not in block


def test_status_names_the_workflows_pinned_to_a_version_no_worker_runs() -> None:
    handles = [start_workflow(wf.greet, f"w{n}") for n in range(2)]
    for handle in handles:
        WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(app_version="v0")
        Job.objects.filter(key=f"{WORKFLOW_KEY_PREFIX}{handle.workflow_id}").update(
            job_name="pgjobs.workflow:v0"
        )
    warning = next(line for line in pgjobs("status").splitlines() if "pinned" in line)
    assert all(handle.workflow_id in warning for handle in handles)


def test_status_names_the_waiting_workflows_pinned_to_a_version_no_worker_runs() -> None:
    """Not only once their jobs are due: a workflow that waits days for a message on an old
    code version is as stranded."""
    due, waiting = (start_workflow(wf.greet, f"w{n}") for n in range(2))
    for handle in (due, waiting):
        WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(app_version="v0")
        Job.objects.filter(key=f"{WORKFLOW_KEY_PREFIX}{handle.workflow_id}").update(
            job_name="pgjobs.workflow:v0"
        )
    Job.objects.filter(key=f"{WORKFLOW_KEY_PREFIX}{waiting.workflow_id}").update(
        scheduled_for=timezone.now() + timedelta(days=3)
    )
    warning = next(line for line in pgjobs("status").splitlines() if "pinned" in line)
    assert warning.startswith("2 workflows pinned to code version 'v0'"), warning
    assert due.workflow_id in warning and waiting.workflow_id in warning
    assert "1 of them waiting for what they wait for" in warning
    Job.objects.filter(key=f"{WORKFLOW_KEY_PREFIX}{due.workflow_id}").delete()
    warning = next(line for line in pgjobs("status").splitlines() if "pinned" in line)
    assert warning.startswith("1 workflow pinned to code version 'v0'"), warning


def test_enqueue_of_a_name_no_handler_takes_warns_and_still_enqueues() -> None:
    out, err = run("pgjobs", "enqueue", "send-welcom-email")
    assert Job.objects.get(id=out.strip()).job_name == "send-welcom-email"
    assert "no handler is registered for 'send-welcom-email'" in err
    out, err = run("pgjobs", "enqueue", "test.record")
    assert err == ""


def test_a_reader_that_stops_reading_ends_the_listing_quietly() -> None:
    """``pgjobs list | head -1``: the pipe closes under the command, which stops without a
    traceback (exit status 1, as Unix tools that are cut off)."""
    enqueue_many("test.record", [{}] * 3000)
    proc = start_worker("list", "--limit", "3000", command="pgjobs", pipes=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().split()[:2] == [b"id", b"state"]
    proc.stdout.close()
    with proc.stderr:
        assert proc.wait(timeout=30) == 1
        assert proc.stderr.read() == b""


def test_a_broken_stream_handed_to_call_command_is_the_callers_error() -> None:
    class Gone(StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    enqueue("test.record", {})
    with pytest.raises(BrokenPipeError):
        call_command("pgjobs", "list", stdout=Gone())
