"""``manage.py pgjobs_worker``: runs the worker, closes what it opened to start, refuses bad
options."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_pgjobs import Cancel, Snooze, enqueue, start_workflow
from django_pgjobs.management.commands.pgjobs_worker import YOUNG_COLLECTION
from django_pgjobs.models import Job
from tests.helpers import start_worker
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_command_burst() -> None:
    enqueue("test.record", {"label": "cli worker"})
    out = StringIO()
    call_command("pgjobs_worker", "--burst", "--concurrency", "2", stdout=out)
    assert "1 completed" in out.getvalue()
    assert Job.objects.get().status == "completed"


def test_minus_v_0_is_quiet_and_the_default_says_when_it_starts_and_stops() -> None:
    """-v 0: warnings and errors only, as in Django's other commands; no start or stop line."""
    enqueue("test.record", {"label": "quiet"})
    quiet, default = StringIO(), StringIO()
    call_command("pgjobs_worker", "--burst", verbosity=0, stdout=quiet)
    assert quiet.getvalue() == ""
    assert Job.objects.get().status == "completed"
    call_command("pgjobs_worker", "--burst", stdout=default)
    started, stopped = default.getvalue().splitlines()
    assert started.startswith("pgjobs worker ") and " queues=all " in started
    assert stopped.endswith(" stopped: 0 completed, 0 retried, 0 dead-lettered, 0 released")


def test_the_stop_line_counts_snoozes_and_cancels_when_there_were_any(
    register_handler: Callable[..., Any],
) -> None:
    def snoozes(payload: Any) -> None:
        raise Snooze(3600)

    def cancels(payload: Any) -> None:
        raise Cancel("no")

    register_handler("t.snooze", snoozes)
    register_handler("t.cancel", cancels)
    enqueue("t.snooze", {})
    enqueue("t.cancel", {})
    assert burst_stop_line().endswith(
        "stopped: 0 completed, 0 retried, 0 dead-lettered, 0 released, 1 cancelled, 1 snoozed"
    )


def test_the_summary_counts_workflows_that_ran_until_a_wait() -> None:
    """Run until its recv(), a workflow gives its job back: not completed, retried nor dead, and
    the line said nothing had happened."""
    start_workflow(wf.receiver, None, 300)
    assert burst_stop_line().endswith(
        "stopped: 0 completed, 0 retried, 0 dead-lettered, 0 released, 1 workflow run waiting"
    )


def burst_stop_line() -> str:
    """The last line ``pgjobs_worker --burst`` prints: what it did."""
    out = StringIO()
    call_command("pgjobs_worker", "--burst", stdout=out)
    return out.getvalue().rstrip().splitlines()[-1]


def test_the_banner_and_check_e010_name_workflows_not_their_internal_runner_jobs() -> None:
    from django_pgjobs.schedules.validation import declaration_problems

    out = StringIO()
    call_command("pgjobs_worker", "--burst", stdout=out)
    banner = out.getvalue().splitlines()[0]
    assert "pgjobs.workflow:" not in banner
    assert "test.record" in banner and "workflows=" in banner and "test.greet" in banner
    problems = declaration_problems(
        cron="* * * * *", timezone="UTC", start=None, end=None, job_name="nope", payload={}
    )
    assert "test.record" in problems["job_name"]
    assert "pgjobs.workflow:" not in problems["job_name"]


def test_the_worker_command_does_not_keep_its_start_up_connection() -> None:
    """The migrations check opens the main thread's Django connection; the worker never uses
    it, so it must not sit idle for the life of the process (max_connections is finite)."""
    from django.db import connection

    enqueue("test.record", {"label": "cli worker"})
    assert connection.connection is not None
    call_command("pgjobs_worker", "--burst", stdout=StringIO())
    assert connection.connection is None
    assert Job.objects.get().status == "completed"


def test_worker_command_rejects_bad_options() -> None:
    with pytest.raises(CommandError, match="--concurrency"):
        call_command("pgjobs_worker", "--concurrency", "0")
    with pytest.raises(CommandError, match="invalid choice: 'fork'"):
        call_command("pgjobs_worker", "--pool", "fork")


def test_the_banner_names_the_pool() -> None:
    out = StringIO()
    call_command("pgjobs_worker", "--burst", "--pool", "thread", stdout=out)
    assert " pool=thread " in out.getvalue().splitlines()[0]


@pytest.fixture
def not_migrated() -> Iterator[None]:
    """Our tables are gone, as on a database nobody ran migrate on; they come back after."""
    call_command("migrate", "pgjobs", "zero", verbosity=0)
    yield
    call_command("migrate", "pgjobs", verbosity=0)


@pytest.mark.usefixtures("not_migrated")
@pytest.mark.parametrize(
    "command",
    [
        ["pgjobs_worker", "--burst"],
        ["pgjobs_scheduler", "--once"],
        ["pgjobs", "status"],
        ["pgjobs_workflows", "list"],
    ],
)
def test_commands_say_to_migrate_instead_of_retrying_a_missing_table(command: list[str]) -> None:
    """A burst worker used to retry `relation "pgjobs_workers" does not exist` for ever."""
    with pytest.raises(
        CommandError, match=r"not in database 'default': run `python manage.py migra"
    ):
        call_command(*command, stdout=StringIO())


def test_the_id_in_use_error_shows_the_stored_hostname_escaped() -> None:
    """Any producer can write a worker row: its hostname reaches the operator's terminal only
    with its control characters escaped, so it cannot clear the screen or forge a line."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workers (id, hostname, pid, queues) "
            "VALUES ('dup', E'evil\\x1b[2J\\nERROR forged line', 1, '[]')"
        )
    with pytest.raises(CommandError) as raised:
        call_command("pgjobs_worker", "--burst", "--worker-id", "dup", stdout=StringIO())
    message = str(raised.value)
    assert "belongs to a live worker" in message
    assert "host evil\\x1b[2J\\nERROR forged line," in message
    assert "\x1b" not in message and "\n" not in message


def test_the_worker_runs_with_what_it_loaded_frozen_out_of_the_garbage_collector(
    tmp_path: Path,
) -> None:
    """The full collections a busy worker sets off then skip Django and the project (gc.freeze),
    and its young objects are collected less often; a caller of the command gets its collector
    back as it was."""
    enqueue("test.gc-frozen", {"id": "00000000-0000-0000-0000-000000000000"})
    proc = start_worker("--burst", log=tmp_path / "worker.log")
    assert proc.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()
    _, frozen, _, young = Run.objects.get().label.split()
    assert int(frozen) > 10_000  # Django and the project, at least
    assert int(young) == YOUNG_COLLECTION
    enqueue("test.gc-frozen", {"id": "00000000-0000-0000-0000-000000000000"})
    thresholds = gc.get_threshold()
    call_command("pgjobs_worker", "--burst", verbosity=0)
    assert Run.objects.count() == 2
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
