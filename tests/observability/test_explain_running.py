"""explain_job about a job a worker holds: what it can know (the last heartbeat, the lease) and
when the rescue may hand the job back, start-up hold included."""

from __future__ import annotations

import pytest
from django.db import connection

from django_pgjobs import enqueue, explain_job
from django_pgjobs.conf import conf
from django_pgjobs.models import Job
from django_pgjobs.observability.display import local_time
from django_pgjobs.observability.explain import Blocker
from django_pgjobs.observability.explanation import rescue_hold_seconds, silent_seconds
from tests.observability.test_explain import claim, live_worker

pytestmark = pytest.mark.django_db(transaction=True)


def started_long_ago(worker_id: str) -> None:
    """The worker's start-up hold long over (its row says it started an hour ago)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_workers SET started_at = now() - interval '1 hour' WHERE id = %s",
            [worker_id],
        )


def test_a_held_job_gives_the_heartbeat_and_the_lease_not_a_verdict_on_the_process() -> None:
    live_worker("w1")
    job_id = enqueue("test.record")
    assert claim("w1") == [job_id]
    said = explain_job(job_id)
    job = Job.objects.get(id=job_id)
    assert job.lease_expires_at is not None
    assert (said.blocker, said.worker_id, said.until) == (
        Blocker.RUNNING,
        "w1",
        job.lease_expires_at,
    )
    # Its process may have died a moment ago: nothing here can tell, so nothing says "alive".
    assert said.message.startswith("Held by worker w1 (attempt 1 of 3, started ")
    # The interval, so a reader can see a heartbeat overdue.
    every = f"workers heartbeat every {conf.HEARTBEAT_SECONDS:g}s, and count as live until"
    assert f"Last heartbeat 0:00:00 ago ({every} silent for {silent_seconds():g}s)." in (
        said.message
    )
    assert f"Its lease expires at {local_time(job.lease_expires_at)}" in said.message
    assert "if the worker is gone, the rescue then hands the job back to the queue" in (
        said.message
    )
    assert "alive" not in said.message


def test_a_silent_worker_s_job_and_the_rescue_sweep() -> None:
    live_worker("w1")
    job_id = enqueue("test.record")
    assert claim("w1") == [job_id]
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_workers SET last_heartbeat_at = now() - interval '1 hour', "
            "started_at = now() - interval '2 hours' WHERE id = 'w1'"
        )
    said = explain_job(job_id)
    assert "Silent since" in said.message and "no worker is live to sweep" in said.message
    assert f"(workers heartbeat every {conf.HEARTBEAT_SECONDS:g}s)" in said.message
    live_worker("rescuer")
    started_long_ago("rescuer")
    job = Job.objects.get(id=job_id)
    Job.objects.filter(id=job_id).update(lease_expires_at=job.locked_at)
    said = explain_job(job_id)
    assert "Its lease expired at" in said.message
    assert "a live worker's rescue sweep runs every" in said.message
    with connection.cursor() as cur:
        cur.execute("DELETE FROM pgjobs_workers WHERE id = 'w1'")
    assert "It has no worker row" in explain_job(job_id).message


def test_a_last_attempt_s_rescue_moves_the_job_to_the_dead_letters() -> None:
    live_worker("w1")
    job_id = enqueue("test.record", max_attempts=1)
    assert claim("w1") == [job_id]
    said = explain_job(job_id).message
    assert (
        "if the worker is gone, the rescue then moves the job to the dead letters (that was "
        in (said)
    )
    assert "hands the job back to the dead letters" not in said


def test_a_worker_that_just_started_holds_its_rescue() -> None:
    live_worker("w1")
    job_id = enqueue("test.record")
    assert claim("w1") == [job_id]
    job = Job.objects.get(id=job_id)
    with connection.cursor() as cur:  # w1 is gone; its lease ran out
        cur.execute("DELETE FROM pgjobs_workers WHERE id = 'w1'")
    Job.objects.filter(id=job_id).update(lease_expires_at=job.locked_at)
    live_worker("fresh")  # started now: rescues nothing for the hold
    said = explain_job(job_id)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT started_at + make_interval(secs => %s) FROM pgjobs_workers WHERE id = 'fresh'",
            [rescue_hold_seconds()],
        )
        hold_ends = cur.fetchone()[0]
    assert f"but not before {local_time(hold_ends)}" in said.message
    # The lease is past: the blocker lifts when the hold ends, and until says so.
    assert said.until == hold_ends
    assert f"a worker rescues nothing for {rescue_hold_seconds():g}s after it starts" in (
        said.message
    )
    started_long_ago("fresh")
    said = explain_job(job_id)
    assert "but not before" not in said.message
    assert said.until == job.locked_at
