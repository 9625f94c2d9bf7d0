"""``manage.py pgjobs explain JOB_ID``: the explanation, its fields on their own lines, and an
exit status that says whether the id was found."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from django_pgjobs import enqueue
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import pause_queue, set_queue_limits
from tests.helpers import ROOT, database_conninfo

pytestmark = pytest.mark.django_db(transaction=True)


def explain(job_id: object) -> str:
    out = StringIO()
    call_command("pgjobs", "explain", str(job_id), stdout=out)
    return out.getvalue()


def test_a_paused_queue_s_job() -> None:
    pause_queue("mail")
    job_id = enqueue("test.record", queue="mail", partition_key="acct:1")
    lines = explain(job_id).splitlines()
    assert lines[0] == f"Job {job_id} (test.record, queue mail, partition key acct:1): pending"
    assert lines[1].startswith("  queue paused: Queue mail is paused")


def test_the_jobs_in_its_way_and_the_time_it_waits_for() -> None:
    set_queue_limits("q", concurrency=1, rate_limit=1, rate_period=60)
    first, second = enqueue("test.record", queue="q"), enqueue("test.record", queue="q")
    with connection.cursor() as cur:
        claim_jobs(cur, worker_id="w1", limit=1, lease_seconds=60, queues=None, job_names=None)
    out = explain(second)
    assert "queue concurrency full: Queue q is at its concurrency limit" in out
    assert f"  in its way: {first}\n" in out
    running = explain(first)
    assert "  worker: w1\n" in running and "  until: " in running


def test_a_dead_letter_is_explained_not_an_error() -> None:
    with connection.cursor() as cur:
        cur.execute("INSERT INTO pgjobs_failed_jobs (job_name) VALUES ('test.record') RETURNING id")
        dead_id = cur.fetchone()[0]
    out = explain(dead_id)
    assert f"Job {dead_id} (test.record, queue default): dead" in out
    assert f"`manage.py pgjobs retry {dead_id}`" in out


def test_stored_text_is_shown_escaped() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue) VALUES "
            "(E'evil\\x1b[2J\\nforged', E'q\\r') RETURNING id"
        )
        job_id = cur.fetchone()[0]
    out = explain(job_id)
    assert "\x1b" not in out and "\r" not in out
    assert "(evil\\x1b[2J\\nforged, queue q\\r)" in out


def test_an_unknown_id_is_a_command_error() -> None:
    missing = uuid.uuid4()
    with pytest.raises(CommandError, match=f"No job or dead letter has the id {missing}"):
        explain(missing)
    with pytest.raises(CommandError, match="'12' is not a job id"):
        explain("12")


def test_an_unknown_id_exits_non_zero_and_a_known_one_zero() -> None:
    known = enqueue("test.record")

    def run(job_id: object) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_conninfo(),
            "PYTHONPATH": str(ROOT),
        }
        return subprocess.run(
            [sys.executable, "-m", "django", "pgjobs", "explain", str(job_id)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    missing = run(uuid.uuid4())
    assert missing.returncode != 0
    assert "No job or dead letter has the id" in missing.stderr
    found = run(known)
    assert found.returncode == 0, found.stderr
    assert f"Job {known} (test.record, queue default): pending" in found.stdout


def test_a_prefix_is_answered_with_whole_uuids() -> None:
    """As the docs' sample shows: the admin's 8-character short id (the id's end) in, whole
    UUIDs out (the job's and those in its way)."""
    set_queue_limits("ledger", partition_concurrency=1)
    first = enqueue("test.record", queue="ledger", partition_key="account:42")
    second = enqueue("test.record", queue="ledger", partition_key="account:42")
    with connection.cursor() as cur:
        claim_jobs(cur, worker_id="w1", limit=1, lease_seconds=60, queues=None, job_names=None)
    lines = explain(short_id(second)).splitlines()
    assert lines[0] == (
        f"Job {second} (test.record, queue ledger, partition key account:42): pending"
    )
    assert f"1 of 1 running ({first} on w1)" in lines[1]
    assert lines[2] == f"  in its way: {first}"


def test_the_short_id_shown_elsewhere_is_enough() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_failed_jobs (id, job_name) VALUES "
            "('abcdef01-0000-4000-8000-000000000001', 'test.record'), "
            "('abcdef01-1000-4000-8000-000000000002', 'test.record')"
        )
    out = explain("abcdef01-0")
    assert "Job abcdef01-0000-4000-8000-000000000001 (test.record, queue default): dead" in out
    assert "  finished: Dead-lettered at " in out
    with pytest.raises(CommandError, match="More than one job or dead letter has an id starting"):
        explain("abcdef01")
