"""Flow control across real worker processes, measured from what the handlers themselves wrote.

Each job of ``test.span`` writes when it started and ended by the database's clock into
``flow_ledger``; the limits are checked against those rows, never against the library's own
counters (issue 15: "measured from a ledger of start and end times").
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.models import Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.queues import pause_queue, resume_queue, set_queue_limits
from tests.helpers import start_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"LEASE_SECONDS": 1.0, "HEARTBEAT_SECONDS": 0.2, "POLL_INTERVAL": 0.2}


@pytest.fixture
def ledger() -> Iterator[None]:
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE flow_ledger (label text, pid int, started_at timestamptz, "
            "ended_at timestamptz)"
        )
    yield
    with connection.cursor() as cur:
        cur.execute("DROP TABLE flow_ledger")


def spans() -> list[tuple[str, int, datetime, datetime | None]]:
    with connection.cursor() as cur:
        cur.execute("SELECT label, pid, started_at, ended_at FROM flow_ledger ORDER BY started_at")
        return list(cur.fetchall())


def most_at_once(rows: list[tuple[str, int, datetime, datetime | None]]) -> int:
    """The largest number of spans running at one instant (an end before a start at a tie)."""
    events = [(r[2], 1) for r in rows] + [(r[3], -1) for r in rows if r[3] is not None]
    running = peak = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):
        running += change
        peak = max(peak, running)
    return peak


def workers(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, count: int, *args: str, **kw: Any
) -> list[Path]:
    logs = []
    for n in range(count):
        log = tmp_path / f"worker{n}.log"
        processes.append(start_worker(*args, log=log, **kw))
        logs.append(log)
    return logs


def finish(processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for proc, log in zip(processes, logs, strict=True):
        try:
            assert proc.wait(timeout=120) == 0, log.read_text()
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None


def test_a_queue_limit_holds_across_worker_processes_and_is_reached(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, ledger: None
) -> None:
    set_queue_limits("limited", concurrency=3)
    enqueue_many("test.span", [{"label": str(n), "sleep": 0.05} for n in range(60)],
                 queue="limited")  # fmt: skip
    logs = workers(processes, tmp_path, 3, "--burst", "--concurrency", "4", settings=FAST)
    finish(processes, logs)
    rows = spans()
    assert sorted(int(r[0]) for r in rows) == list(range(60))  # each exactly once
    assert most_at_once(rows) == 3  # never more, and the limit was reached


def test_one_job_per_partition_key_at_a_time_in_enqueue_order(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, ledger: None
) -> None:
    set_queue_limits("keyed", partition_concurrency=1)
    with transaction.atomic():  # one transaction: equal created_at, ordered only by seq
        for n in range(40):
            enqueue("test.span", {"label": f"k{n % 4}:{n:02d}", "sleep": 0.02}, queue="keyed",
                    partition_key=f"k{n % 4}")  # fmt: skip
    logs = workers(processes, tmp_path, 2, "--burst", "--concurrency", "4", settings=FAST)
    finish(processes, logs)
    rows = spans()
    assert len(rows) == 40
    by_key: dict[str, list[tuple[str, int, datetime, datetime | None]]] = {}
    for row in rows:
        by_key.setdefault(row[0].split(":")[0], []).append(row)
    for key, key_rows in by_key.items():
        assert most_at_once(key_rows) == 1, key
        labels = [r[0] for r in key_rows]  # in start order
        assert labels == sorted(labels), f"{key} ran out of order: {labels}"
    assert most_at_once(rows) > 1  # different keys ran in parallel


def test_a_rate_limit_holds_in_every_window_across_processes(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, ledger: None
) -> None:
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    enqueue_many("test.span", [{"label": str(n)} for n in range(20)], queue="rated")
    logs = workers(processes, tmp_path, 2, "--burst", "--concurrency", "4", settings=FAST)
    finish(processes, logs)
    starts = [r[2] for r in spans()]
    assert len(starts) == 20
    # Starts are written by the handler, a little after the claim that counted them: a window
    # slightly shorter than the period absorbs that delay.
    window = timedelta(seconds=0.8)
    for first in starts:
        assert sum(first <= s < first + window for s in starts) <= 5
    # ... and the limit was used: 20 starts at 5 a second need at least three full periods,
    # and reached them without idling for long.
    assert timedelta(seconds=2.9) <= starts[-1] - starts[0] < timedelta(seconds=10)


def test_a_paused_queue_starts_nothing_until_resumed(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, ledger: None
) -> None:
    pause_queue("held")
    enqueue_many("test.span", [{"label": f"held{n}"} for n in range(5)], queue="held")
    enqueue_many("test.span", [{"label": f"open{n}"} for n in range(5)], queue="open")
    # A burst worker runs the open queue and exits: paused jobs are not "due" for it.
    logs = workers(processes, tmp_path, 1, "--burst", settings=FAST)
    finish(processes, logs)
    assert sorted(r[0] for r in spans()) == [f"open{n}" for n in range(5)]
    assert Job.objects.filter(queue="held", status="pending").count() == 5
    # A live worker idles while the queue is paused, and starts its jobs once resumed (the
    # resume wakes it: its poll interval is far longer than the test waits).
    log = tmp_path / "live.log"
    processes.append(start_worker("--concurrency", "2", log=log, settings={"POLL_INTERVAL": 60}))
    wait_for(WorkerRow.objects.exists, what=f"worker start; log:\n{log}")
    assert Job.objects.filter(queue="held", status="pending").count() == 5
    resume_queue("held")
    wait_for(
        lambda: Job.objects.filter(queue="held", status="completed").count() == 5,
        what=f"resumed jobs; log:\n{log}",
    )


def test_a_killed_workers_slots_come_back_with_its_jobs(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, ledger: None
) -> None:
    set_queue_limits("slots", concurrency=2)
    # One attempt each: the rescue buries them rather than run them again.
    enqueue_many("test.span", [{"label": f"long{n}", "sleep": 30} for n in range(2)],
                 queue="slots", max_attempts=1)  # fmt: skip
    victim_log = tmp_path / "victim.log"
    victim = start_worker("--concurrency", "2", log=victim_log, settings=FAST)
    processes.append(victim)
    wait_for(lambda: len(spans()) == 2, what=f"both slots taken; log:\n{victim_log}")
    enqueue_many("test.span", [{"label": f"short{n}"} for n in range(4)], queue="slots")
    victim.kill()
    victim.wait(timeout=10)
    with connection.cursor() as cur:  # its handlers ended with it
        cur.execute("UPDATE flow_ledger SET ended_at = clock_timestamp() WHERE ended_at IS NULL")
    logs = workers(processes, tmp_path, 1, "--concurrency", "2", settings=FAST)
    short = Job.objects.filter(queue="slots", payload__label__startswith="short")
    wait_for(
        lambda: short.filter(status="completed").count() == 4,
        timeout=30,
        what=f"the queue's slots back; log:\n{logs[0]}",
    )
    assert most_at_once(spans()) <= 2
