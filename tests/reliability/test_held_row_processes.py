"""An application transaction holds a running job's row past the job's lease, with real worker
processes, listening or polling only (as behind PgBouncer, where no session lock_timeout
exists): the job runs once, and the worker goes on starting other jobs meanwhile."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from django_pgjobs import enqueue, enqueue_many, get_job
from django_pgjobs.models import Worker as WorkerRow
from tests.helpers import second_connection, start_worker, wait_for
from tests.reliability.test_processes import WORKER_AT_INFO
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def leases_ran_out(*job_ids: Any) -> bool:
    with second_connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pgjobs_job_queue WHERE id = ANY(%s) AND lease_expires_at < now()",
            [list(job_ids)],
        ).fetchone()
    return bool(row and row[0] == len(job_ids))


def rescuing(worker_id: str, hold: float) -> bool:
    """Has the worker's start-up hold on rescues passed (database time)?"""
    with second_connection() as conn:
        row = conn.execute(
            "SELECT started_at < now() - make_interval(secs => %s) FROM pgjobs_workers "
            "WHERE id = %s",
            [hold, worker_id],
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("poll_only", [False, True], ids=["listening", "poll-only"])
def test_a_job_whose_row_an_application_holds_past_its_lease_runs_once(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, poll_only: bool
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    finishing = enqueue("test.block", {"label": "finishing", "release": str(first)})
    running = enqueue("test.block", {"label": "running", "release": str(second)})
    # The worker running them renews every 0.5 s; the other, serving another queue, sweeps for
    # expired leases every 0.1 s: without the rescue's guard it would take the running job over
    # in the moment between the application letting go and the next renewal.
    slow = {"LEASE_SECONDS": 2.0, "HEARTBEAT_SECONDS": 0.5, "POLL_INTERVAL": 0.2}
    fast = {"LEASE_SECONDS": 2.0, "HEARTBEAT_SECONDS": 0.1, "POLL_INTERVAL": 0.2}
    logs = [tmp_path / "runs.log", tmp_path / "rescues.log"]
    processes.append(
        start_worker(
            "--concurrency", "3", "--worker-id", "runs",
            settings={**slow, "POLL_ONLY": poll_only}, log=logs[0], logging=WORKER_AT_INFO,
        )
    )  # fmt: skip
    processes.append(
        start_worker(
            "--queues", "elsewhere", "--worker-id", "rescues",
            settings={**fast, "POLL_ONLY": poll_only}, log=logs[1], logging=WORKER_AT_INFO,
        )
    )  # fmt: skip
    wait_for(lambda: Run.objects.filter(label__endswith=":started").count() == 2, what="starts")
    tokens = [str(get_job(job_id).lease_token) for job_id in (finishing, running)]
    app = second_connection(autocommit=False)
    try:
        app.execute(
            "SELECT 1 FROM pgjobs_job_queue WHERE id = ANY(%s) FOR UPDATE", [[finishing, running]]
        )
        # One handler finishes while its row is held: its outcome waits, and the worker goes on
        # starting new jobs meanwhile (it used to stop claiming behind the blocked write).
        first.touch()
        wait_for(lambda: Run.objects.filter(label="finishing:finished").exists(), what="finish")
        enqueue_many("test.record", [{"label": f"meanwhile-{n}"} for n in range(15)])
        wait_for(
            lambda: Run.objects.filter(label__startswith="meanwhile-").count() == 15,
            what="the other jobs to run while the rows are held",
        )
        wait_for(lambda: leases_ran_out(finishing, running), what="the leases to run out")
        wait_for(
            lambda: WorkerRow.objects.filter(id="runs", unrenewed__contains=tokens).exists(),
            what="the worker to list both attempts as unrenewed",
        )
        hold = max(2.0, 5.0 + 0.1)  # the other worker's start-up hold (rescue_hold_seconds)
        wait_for(lambda: rescuing("rescues", hold), what="the other worker to sweep")
        assert get_job(finishing).status == get_job(running).status == "running"
    finally:
        app.rollback()
        app.close()
    wait_for(lambda: get_job(finishing).status == "completed", what="the waiting outcome")
    wait_for(lambda: not leases_ran_out(running), what="the running job's lease renewed")
    second.touch()
    wait_for(lambda: get_job(running).status == "completed", what="the running job to finish")
    for job_id, label in ((finishing, "finishing"), (running, "running")):
        assert get_job(job_id).attempt == 1
        assert Run.objects.filter(label=f"{label}:started").count() == 1  # each ran once
    assert not any("Rescued" in log.read_text() for log in logs)
