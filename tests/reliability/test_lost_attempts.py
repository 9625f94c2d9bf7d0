"""An attempt that no longer holds its job (cancelled, or taken over) while its handler goes on
running: the worker stops renewing it, and goes on heartbeating at its own pace."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from django_pgjobs import enqueue
from django_pgjobs.jobs.operations import cancel_job
from tests.helpers import db_now, second_connection, start_worker, wait_for
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def heartbeats_in(worker_id: str, seconds: float) -> int:
    """How many different heartbeat times the worker's row showed in ``seconds``, read as often
    as a query allows."""
    seen = set()
    deadline = time.monotonic() + seconds
    with second_connection() as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT last_heartbeat_at FROM pgjobs_workers WHERE id = %s", [worker_id]
            ).fetchone()
            if row:
                seen.add(row[0])
            time.sleep(0.002)
    return len(seen)


def test_a_cancelled_attempt_still_running_does_not_make_the_loop_spin(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Its lease, no longer renewed, stayed the one the next heartbeat was due by: once half of
    it was gone, every turn of the loop was a heartbeat with a rescue sweep (473 heartbeats in
    3 s, as reviewed), until the handler returned."""
    release = tmp_path / "release"
    job_id = enqueue("test.block", {"label": "ignores", "release": str(release), "timeout": 60})
    settings = {"LEASE_SECONDS": 4.0, "HEARTBEAT_SECONDS": 1.0, "POLL_INTERVAL": 1.0}
    processes.append(start_worker("--concurrency", "2", "--worker-id", "w1", settings=settings))
    try:
        wait_for(lambda: Run.objects.filter(label="ignores:started").exists(), what="the start")
        cancelled_at = db_now()
        cancel_job(job_id)  # its handler does not ask, and goes on running
        # Past half the lease the cancelled attempt was last given, by the database's clock.
        half = timedelta(seconds=settings["LEASE_SECONDS"] / 2 + 1)
        wait_for(lambda: db_now() >= cancelled_at + half, what="half a lease after the cancel")
        # HEARTBEAT_SECONDS 1: about 3 heartbeats in 3 s, whatever the worker holds.
        assert heartbeats_in("w1", 3.0) <= 5
    finally:
        release.touch()
