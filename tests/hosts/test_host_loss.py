"""A host dies (SIGKILL of every process on it) or falls off the network while it holds jobs:
the other hosts take its jobs over within a bound stated from the settings, every job
completes once, and a cut-off host's late result is fenced out when it comes back."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection

from django_pgjobs import enqueue, enqueue_many, get_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker.ahead import AHEAD_LEASE
from tests.helpers import wait_for
from tests.hosts.fleet import (
    FAST,
    start_workers,
    wait_on_hosts,
    wait_until_rescuing,
    worker_id,
)
from tests.hosts.ledger import Ledger
from tests.hosts.network import Host
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Short jobs first: each worker learns from them that jobs are quick, so its claim of the
# one-second jobs that follow takes many ahead of its free threads (prefetch).
WARM_JOBS = 300
SECOND_JOBS = 48

# The takeover's settings: a lease longer than the short one of jobs claimed ahead (until their
# start is recorded: worker/ahead.py), so that each kind is seen to come back after its own.
TAKEOVER = {**FAST, "LEASE_SECONDS": 8.0}
LEASE_SECONDS, HEARTBEAT_SECONDS = TAKEOVER["LEASE_SECONDS"], TAKEOVER["HEARTBEAT_SECONDS"]
# How soon a dead host's jobs are back in the queue, from the moment it died. Its last renewal
# was at most that moment, so the leases of the jobs it started run out within LEASE_SECONDS,
# and those of the jobs it claimed ahead within their short lease; a live worker sweeps for
# expired leases with each heartbeat, at least every HEARTBEAT_SECONDS; the slack covers the
# sweep's statement and this machine's scheduling (two cores shared with the database and every
# host). Before the short lease, jobs claimed ahead waited out a whole lease too (measured with
# the default settings: 69.7 s; now 5 to 10 s).
TAKEOVER_SLACK = 1.0
RUNNING_BACK_WITHIN = LEASE_SECONDS + HEARTBEAT_SECONDS + TAKEOVER_SLACK
UNSTARTED_BACK_WITHIN = min(AHEAD_LEASE, LEASE_SECONDS) + HEARTBEAT_SECONDS + TAKEOVER_SLACK
# The partition's: short leases, a quick takeover.
PARTITION_TAKEOVER_WITHIN = FAST["LEASE_SECONDS"] + FAST["HEARTBEAT_SECONDS"] + TAKEOVER_SLACK


def clock() -> datetime:
    with connection.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        return cur.fetchone()[0]  # type: ignore[no-any-return]


def holdings(host: Host) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """The jobs the host's worker holds: those it started (its handler recorded a start for the
    attempt, or the worker recorded the start: ``locked_at``), and those claimed ahead."""
    held = Job.objects.filter(status="running", locked_by=worker_id(host))
    began = set(
        Run.objects.filter(label=f"{host.label}:started").values_list("job_id", "attempt_seen")
    )
    started, ahead = set(), set()
    for job_id, attempt, locked_at in held.values_list("id", "attempt", "locked_at"):
        if locked_at is not None or (job_id, attempt) in began:
            started.add(job_id)
        else:
            ahead.add(job_id)
    return started, ahead


def test_the_other_hosts_take_over_a_killed_host_s_jobs_and_each_completes_once(
    hosts: Sequence[Host], tmp_path: Path
) -> None:
    start_workers(hosts, tmp_path, TAKEOVER)
    warm = enqueue_many("test.on_host", [{"seconds": 0}] * WARM_JOBS)
    wait_on_hosts(
        tmp_path,
        lambda: Job.objects.filter(id__in=warm, status="completed").count() == WARM_JOBS,
        what="the short jobs",
    )
    wait_until_rescuing(tmp_path, TAKEOVER)
    ids = enqueue_many("test.on_host", [{"seconds": 1}] * SECOND_JOBS)

    def a_host_holding_both() -> Host | None:
        """The host holding the most jobs claimed ahead, once one holds started ones too."""
        both = [h for h in hosts if all(holdings(h))]
        return max(both, key=lambda h: len(holdings(h)[1]), default=None)

    victim = wait_on_hosts(tmp_path, a_host_holding_both, what="a host holding both")
    assert victim is not None
    died = clock()  # just before: the figures below are upper bounds
    victim.kill()
    dead = clock()
    # Its sessions end once they finished what they were running: then nothing it sent is
    # still on its way, and what it holds is final until the rescue.
    wait_for(lambda: victim.relay.connections() == 0, what="the dead host's sessions ended")
    running, ahead = holdings(victim)
    assert running and ahead, f"the victim held {len(running)} started, {len(ahead)} ahead"

    back: dict[str, float] = {}  # seconds from the death until none of them is the victim's

    def all_back() -> bool:
        for name, jobs in (("ahead", ahead), ("started", running)):
            held = Job.objects.filter(id__in=jobs, status="running", locked_by=worker_id(victim))
            if name not in back and not held.exists():
                back[name] = (clock() - died).total_seconds()
        return len(back) == 2

    wait_on_hosts(
        tmp_path,
        all_back,
        timeout=RUNNING_BACK_WITHIN + 30,
        what="the dead host's jobs rescued",
    )
    ahead_back, running_back = back["ahead"], back["started"]
    wait_on_hosts(
        tmp_path,
        lambda: Job.objects.filter(id__in=ids, status="completed").count() == SECOND_JOBS,
        timeout=60,
        what="every one-second job completed",
    )
    print(
        f"killed {victim.label} holding {len(running)} started and {len(ahead)} claimed-ahead "
        f"jobs; back after {ahead_back:.2f} s (claimed ahead), {running_back:.2f} s (started)"
    )
    assert ahead_back <= UNSTARTED_BACK_WITHIN, f"claimed ahead back after {ahead_back:.2f} s"
    assert running_back <= RUNNING_BACK_WITHIN, f"started back after {running_back:.2f} s"

    ledger = Ledger.read()
    starts, ends = ledger.runs("started"), ledger.runs("finished")
    assert not FailedJob.objects.exists()
    every = {*warm, *ids}
    assert Job.objects.filter(id__in=every, status="completed").count() == len(every)
    # Exactly once, but for the jobs the dead host had started: at least once. Their first
    # run may have reached its end (and recorded it) before the kill beat its completion.
    for job_id in every - running:
        assert (starts[job_id], ends[job_id]) == (1, 1), job_id
    twice = {job_id for job_id in running if ends[job_id] == 2}
    assert all(1 <= starts[job_id] <= 2 and 1 <= ends[job_id] <= 2 for job_id in running)
    print(f"{len(twice)} of the {len(running)} jobs running on the dead host ran twice")
    # A job claimed ahead and never started is not charged an attempt.
    assert set(Job.objects.filter(id__in=ahead).values_list("attempt", flat=True)) == {1}
    # Nothing ran on the dead host after it died.
    ends_on_victim = [
        m for found in ledger.finished.values() for m in found if m.host == victim.label
    ]
    assert all(mark.at < dead for mark in ends_on_victim)


@pytest.mark.parametrize("partition", ["closed", "silent"])
def test_a_cut_off_host_s_late_result_is_fenced_out_and_it_comes_back(
    hosts: Sequence[Host], tmp_path: Path, partition: str
) -> None:
    """``closed``: the host's connections are closed and new ones refused; ``silent``: they
    stay open and nothing passes (its worker waits in mid-statement), then all of it arrives."""
    start_workers(hosts, tmp_path)
    wait_until_rescuing(tmp_path)
    job_id = enqueue("test.held_on_host", {"dir": str(tmp_path)})
    # The handler touches waiting-1 once the reply to its ':started' record is in: the row is
    # committed before that reply crosses the relay, and a reply held back (or lost) by the cut
    # would keep the handler from ever reaching its wait for release-1.
    wait_on_hosts(tmp_path, lambda: (tmp_path / "waiting-1").exists(), what="the job started")
    first = Run.objects.filter(job_id=job_id, label__endswith=":started").first()
    assert first is not None
    [cut_off] = [host for host in hosts if host.label == first.label.partition(":")[0]]
    cut_off.relay.cut() if partition == "closed" else cut_off.relay.silence()

    # Its lease runs out, another host rescues the job and runs it again, to its end.
    second = wait_on_hosts(
        tmp_path,
        lambda: Run.objects.filter(job_id=job_id, attempt_seen=2).first(),
        timeout=PARTITION_TAKEOVER_WITHIN + 30,
        what="the job taken over",
    )
    assert second is not None
    assert not second.label.startswith(cut_off.label)
    (tmp_path / "release-2").touch()
    wait_on_hosts(
        tmp_path, lambda: get_job(job_id).status == "completed", what="the second attempt's end"
    )
    done = Job.objects.get(id=job_id)
    assert done.attempt == 2
    rescued = f"worker {worker_id(cut_off)} stopped heartbeating during attempt 1"
    assert rescued in (done.error or "")

    # The cut-off host's attempt ends too, and its worker holds the outcome until it is back.
    (tmp_path / "release-1").touch()
    wait_on_hosts(
        tmp_path, lambda: (tmp_path / "returned-1").exists(), what="the first attempt's end"
    )
    cut_off.relay.restore() if partition == "closed" else cut_off.relay.resume()
    log = tmp_path / f"{cut_off.label}-worker.log"
    # Its worker tells of the attempt's dropped outcome, in whichever of its two lines fits
    # what it learnt first: its heartbeat found the job taken over, or its write matched nothing.
    dropped = re.compile(rf"{job_id} \(attempt 1\b.*(taken over|dropped)")
    wait_on_hosts(
        tmp_path,
        lambda: dropped.search(log.read_text()),
        timeout=30,
        what="the cut-off host's late outcome dropped",
    )
    late = Job.objects.get(id=job_id)
    fields = ["status", "attempt", "completed_at", "started_at", "error", "error_history"]
    assert [getattr(late, f) for f in fields] == [getattr(done, f) for f in fields]

    # It is back: it heartbeats and runs a job only it may run.
    mine = enqueue("test.on_host", {"seconds": 0}, queue=cut_off.label)
    wait_on_hosts(
        tmp_path, lambda: get_job(mine).status == "completed", what="a job on its own queue"
    )
    assert [mark.host for mark in Ledger.read().finished[mine]] == [cut_off.label]
    assert WorkerRow.objects.filter(id=worker_id(cut_off)).exists()
    assert Run.objects.filter(job_id=job_id, label__endswith=":started").count() == 2
