"""The connections real worker and scheduler processes hold, counted in pg_stat_activity, each
naming its role and its worker; and ``pgjobs status`` counting them by role.

Only this test's processes use the test database, so every client connection on it other than
the test's own Django connection (which polls) is one of theirs. A backend leaves
pg_stat_activity a moment after its client hangs up, so counts are awaited, with a deadline, to be
exactly what the budget says: a connection too many that stays (an idle one kept from start-up,
say) fails the test.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from psycopg.conninfo import make_conninfo

from django_pgjobs import cancel_workflow, enqueue, start_workflow
from django_pgjobs.exceptions import WorkflowCancelled
from tests.helpers import database_conninfo, in_thread, start_worker, wait_for
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"POLL_INTERVAL": 0.2, "HEARTBEAT_SECONDS": 0.5, "LEASE_SECONDS": 5}


def others() -> Counter[str]:
    """The application_name of every client connection to the test database but this test's."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return Counter(name for (name,) in cur.fetchall())


def settle_on(expected: dict[str, int], what: str) -> None:
    try:
        wait_for(lambda: others() == Counter(expected), what=f"{what}: {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; there are {dict(others())}") from None


@pytest.fixture(autouse=True)
def alone(transactional_db: None) -> None:
    """Connections of an earlier test's processes are gone before this one counts."""
    settle_on({}, "no connection but this test's")


def block(release: Path, count: int, *, queue: str = "default") -> None:
    """Jobs whose handlers write a row (so each thread has connected) and wait for ``release``."""
    for n in range(count):
        enqueue("test.block", {"label": f"b{n}", "release": str(release)}, queue=queue)


def running(count: int) -> bool:
    return Run.objects.filter(label__endswith=":started").count() == count


def stopped(processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for proc in processes:
        proc.send_signal(signal.SIGTERM)
    for proc, log in zip(processes, logs, strict=True):
        assert proc.wait(timeout=30) == 0, log.read_text()


def test_a_worker_holds_its_concurrency_plus_two_connections_each_naming_it(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Its loop, its scheduler thread, and one Django connection per busy handler thread: the
    start-up checks' connection is closed."""
    release, log = tmp_path / "release", tmp_path / "worker.log"
    block(release, 3)
    processes.append(
        start_worker("--concurrency", "3", "--worker-id", "w1", settings=FAST, log=log)
    )
    wait_for(lambda: running(3), what="three handlers running")
    budget = {"pgjobs worker w1": 1, "pgjobs scheduler w1": 1, "pgjobs handler w1": 3}
    settle_on(budget, "concurrency + 2")
    release.touch()
    stopped(processes, [log])
    settle_on({}, "every connection closed")


def test_with_listen_database_the_loop_and_the_scheduler_each_listen_on_one_more(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Behind PgBouncer their statements go through it and these two straight to PostgreSQL
    ("other" is a second alias of the test database)."""
    release, log = tmp_path / "release", tmp_path / "worker.log"
    block(release, 1)
    settings = {**FAST, "LISTEN_DATABASE": "other"}
    processes.append(
        start_worker("--concurrency", "2", "--worker-id", "l1", settings=settings, log=log)
    )
    wait_for(lambda: running(1), what="the handler running")
    budget = {
        **{"pgjobs worker l1": 1, "pgjobs scheduler l1": 1, "pgjobs handler l1": 1},
        **{"pgjobs listen l1": 1, "pgjobs listen scheduler l1": 1},
    }
    settle_on(budget, "the worker's and its scheduler's listeners too")
    release.touch()
    stopped(processes, [log])


def test_a_burst_worker_has_no_scheduler_and_connects_handlers_as_jobs_need_them(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    release, log = tmp_path / "release", tmp_path / "worker.log"
    block(release, 1)
    processes.append(
        start_worker("--burst", "--concurrency", "3", "--worker-id", "b1", settings=FAST, log=log)
    )
    wait_for(lambda: running(1), what="the handler running")
    settle_on({"pgjobs worker b1": 1, "pgjobs handler b1": 1}, "the loop and one handler")
    release.touch()
    assert processes[0].wait(timeout=30) == 0, log.read_text()


def test_handlers_in_child_processes_hold_the_same_and_the_forkserver_none(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    release, log = tmp_path / "release", tmp_path / "worker.log"
    block(release, 2)
    args = ("--pool", "process", "--concurrency", "2", "--worker-id", "p1")
    processes.append(start_worker(*args, settings=FAST, log=log))
    wait_for(lambda: running(2), what="two handlers running")
    budget = {"pgjobs worker p1": 1, "pgjobs scheduler p1": 1, "pgjobs handler p1": 2}
    settle_on(budget, "concurrency + 2")
    release.touch()
    stopped(processes, [log])


def test_signal_receivers_that_use_the_database_take_one_connection_more(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Receivers run in a thread of the worker's own, which keeps its connection like a
    handler thread (the test app's receivers write a row for each signal)."""
    release, log = tmp_path / "release", tmp_path / "worker.log"
    block(release, 2)
    receivers = {"PGJOBS_TEST_RECORD_SIGNALS": "1"}
    args = ("--concurrency", "2", "--worker-id", "s1")
    processes.append(start_worker(*args, settings=FAST, log=log, env=receivers))
    wait_for(lambda: Run.objects.filter(label__startswith="job_started:").count() == 2)
    budget = {"pgjobs worker s1": 1, "pgjobs scheduler s1": 1, "pgjobs handler s1": 3}
    settle_on(budget, "concurrency + 3")
    release.touch()
    stopped(processes, [log])


def test_the_scheduler_process_keeps_only_its_own_connection(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """``pgjobs_scheduler`` used to keep the connection of its start-up checks, idle for as
    long as it ran."""
    log = tmp_path / "scheduler.log"
    processes.append(start_worker(command="pgjobs_scheduler", settings=FAST, log=log))
    settle_on({"pgjobs scheduler": 1}, "the scheduler's one connection")
    stopped(processes, [log])


@pytest.mark.parametrize("given_by", ["PGAPPNAME", "OPTIONS"])
def test_an_application_name_the_project_gives_its_connections_is_kept(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, given_by: str
) -> None:
    """The handlers' Django connections are the project's: a name given them in the
    environment or in DATABASES OPTIONS wins; the worker's own connections still say what
    they are."""
    named = (
        {"PGAPPNAME": "shop"}
        if given_by == "PGAPPNAME"
        else {"DATABASE_URL": make_conninfo(database_conninfo(), application_name="shop")}
    )
    release, log = tmp_path / "release", tmp_path / "worker.log"
    block(release, 2)
    processes.append(
        start_worker("--concurrency", "2", "--worker-id", "w1", settings=FAST, log=log, env=named)
    )
    wait_for(lambda: running(2), what="two handlers running")
    settle_on({"pgjobs worker w1": 1, "pgjobs scheduler w1": 1, "shop": 2}, "the project's name")
    release.touch()
    stopped(processes, [log])


def status_connections() -> str:
    """What ``pgjobs status`` says of the connections on the test database, by role."""
    out = StringIO()
    call_command("pgjobs", "status", stdout=out)
    database = connection.settings_dict["NAME"]
    heading = f"connections on database {database} (not this command's): "
    [line] = [line for line in out.getvalue().splitlines() if line.startswith(heading)]
    return line.removeprefix(heading)


def test_status_counts_connections_by_role(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A worker (concurrency 2, its scheduler), a scheduler process, and a get_result() waiting
    outside a workflow in a thread of this process: its listener is a wait, and the thread's
    own Django connection, which a web request has anyway, is the application's."""
    release = tmp_path / "release"
    logs = [tmp_path / "worker.log", tmp_path / "scheduler.log"]
    block(release, 2, queue="mail")
    processes.append(
        start_worker("--concurrency", "2", "--queues", "mail", settings=FAST, log=logs[0])
    )
    processes.append(start_worker(command="pgjobs_scheduler", settings=FAST, log=logs[1]))
    handle = start_workflow(wf.greet, "nobody runs it")  # the default queue: no worker serves it
    seen: list[Any] = []

    def wait_for_result() -> None:
        try:
            handle.get_result(timeout=60)
        except WorkflowCancelled as exc:
            seen.append(exc)

    waiter = in_thread(wait_for_result)
    wait_for(lambda: running(2), what="two handlers running")
    wait_for(lambda: others()["pgjobs wait"] == 1, what="the outside wait listening")
    said = "worker loops 1, worker handlers 2, schedulers 2, outside waits 1, other 1"
    wait_for(lambda: status_connections() == said, what=said)
    cancel_workflow(handle.workflow_id)
    waiter.join(timeout=30)
    assert len(seen) == 1
    release.touch()
    stopped(processes, logs)
    none = "worker loops 0, worker handlers 0, schedulers 0, outside waits 0, other 0"
    wait_for(lambda: status_connections() == none, what=none)
