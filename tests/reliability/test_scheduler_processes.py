"""Several real scheduler processes over real (one-second) ticks: each tick fires exactly once."""

from __future__ import annotations

import signal
import subprocess
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from django_pgjobs.models import Job, Schedule
from tests.helpers import start_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"POLL_INTERVAL": 0.2, "HEARTBEAT_SECONDS": 0.5, "LEASE_SECONDS": 5}


def test_three_schedulers_fire_each_tick_exactly_once(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    Schedule.objects.create(name="every-second", cron="* * * * * *", job_name="test.record")
    logs = [tmp_path / f"scheduler-{n}.log" for n in range(3)]
    for log in logs:
        processes.append(start_worker(settings=FAST, log=log, command="pgjobs_scheduler"))
    # A worker completes the jobs as they come, as in production. (Racing schedulers are
    # stopped by the tick's compare-and-set, and by the job key while a tick's job is pending;
    # schedules/test_exactly_once.py pins the compare-and-set alone.)
    worker_log = tmp_path / "worker.log"
    processes.append(
        start_worker("--no-scheduler", "--concurrency", "4", settings=FAST, log=worker_log)
    )

    def fired() -> int:
        return Job.objects.filter(key__startswith="pgjobs.cron:every-second:").count()

    wait_for(lambda: fired() >= 6, timeout=30, what="six ticks")
    for proc in processes:
        proc.send_signal(signal.SIGTERM)
    for proc, log in zip(processes, [*logs, worker_log], strict=True):
        assert proc.wait(timeout=30) == 0, log.read_text()

    ticks = list(
        Job.objects.filter(key__startswith="pgjobs.cron:every-second:").values_list(
            "scheduled_for", flat=True
        )
    )
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    ticks.sort()
    gaps = {b - a for a, b in pairwise(ticks)}
    assert gaps == {timedelta(seconds=1)}, f"ticks missed or doubled: {ticks}"
    assert Job.objects.filter(status="completed").count() >= 3  # keys really were freed
    row = Schedule.objects.get()
    assert row.last_run_at == ticks[-1]
