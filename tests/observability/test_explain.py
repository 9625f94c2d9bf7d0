"""explain_job: each answer constructed with real rows, and checked against the claim itself
(a job said to be claimable is taken by the next claim; a blocked one is not)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F

from django_pgjobs import (
    cancel_job,
    cancel_workflow,
    enqueue,
    enqueue_many,
    explain_job,
    start_workflow,
)
from django_pgjobs.exceptions import JobNotFound
from django_pgjobs.models import Job, QueueStart
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.observability.explain import Blocker
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import pause_queue, set_queue_limits
from django_pgjobs.worker import Worker
from django_pgjobs.workflows.definitions import runner_job_name
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

HANDLERS = ("test.record",)


def live_worker(
    worker_id: str = "w1",
    *,
    queues: Sequence[str] = (),
    handlers: Sequence[str] | None = HANDLERS,
    concurrency: int = 4,
    silent_for: float = 0.0,
) -> None:
    """A worker row as a worker writes it, its last heartbeat ``silent_for`` seconds ago."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workers (id, queues, handlers, concurrency, last_heartbeat_at) "
            "VALUES (%s, %s::jsonb, %s::jsonb, %s, now() - make_interval(secs => %s))",
            [
                worker_id,
                _json(queues),
                None if handlers is None else _json(handlers),
                concurrency,
                silent_for,
            ],
        )


def _json(names: Sequence[str]) -> str:
    import json

    return json.dumps(list(names))


def claim(worker: str = "w1", limit: int = 100, **kw: object) -> list[uuid.UUID]:
    """What the worker's next claim takes (its handlers: HANDLERS unless given)."""
    with connection.cursor() as cur:
        jobs = claim_jobs(
            cur, worker_id=worker, limit=limit, lease_seconds=60, queues=None,
            job_names=kw.pop("job_names", list(HANDLERS)), **kw,  # type: ignore[arg-type]
        )  # fmt: skip
    return [job.id for job in jobs]


def test_an_unknown_id_and_a_malformed_one_are_clear_errors() -> None:
    missing = uuid.uuid4()
    with pytest.raises(JobNotFound, match=f"No job or dead letter has the id {missing}"):
        explain_job(missing)
    with pytest.raises(JobNotFound, match="'nope' is not a job id"):
        explain_job("nope")


def test_a_dead_letter_is_finished_and_says_how_to_retry_it() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_failed_jobs (job_name, queue, attempt, max_attempts, error) "
            "VALUES ('test.record', 'mail', 3, 3, E'ValueError: boom\\ntraceback') RETURNING id"
        )
        dead_id = cur.fetchone()[0]
    said = explain_job(dead_id)
    assert (said.blocker, said.status, said.queue) == (Blocker.FINISHED, "dead", "mail")
    assert "Dead-lettered at " in said.message and "attempt 3 of 3 failed (ValueError: boom)" in (
        said.message
    )
    assert f"manage.py pgjobs retry {dead_id}" in said.message
    assert "or the Requeue action of the admin's dead letters list." in said.message


def test_completed_and_cancelled_jobs_are_finished() -> None:
    done, cancelled = enqueue("test.record"), enqueue("test.record")
    Job.objects.filter(id=done).update(status="completed")
    cancel_job(cancelled)
    assert explain_job(done).blocker is Blocker.FINISHED
    assert "Completed" in explain_job(done).message
    said = explain_job(str(cancelled))
    assert (said.blocker, said.status) == (Blocker.FINISHED, "cancelled")
    assert "Cancelled at" in said.message


def test_a_job_due_later_is_scheduled_until_its_due_time() -> None:
    live_worker()
    job_id = enqueue("test.record", scheduled_for=timedelta(hours=1))
    said = explain_job(job_id)
    assert said.blocker is Blocker.SCHEDULED
    assert said.until == Job.objects.get(id=job_id).scheduled_for
    assert said.message.startswith("Due at ")


def test_a_failed_attempt_awaits_its_retry(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.fail")
    make_worker().run_once()  # a real attempt fails; the retry waits for its backoff
    # A longer backoff than the handler's second, so the job cannot come due meanwhile.
    Job.objects.filter(id=job_id).update(scheduled_for=F("scheduled_for") + timedelta(hours=1))
    job = Job.objects.get(id=job_id)
    assert job.status == "pending" and job.attempt == 1
    said = explain_job(job_id)
    assert (said.blocker, said.until) == (Blocker.AWAITING_RETRY, job.scheduled_for)
    assert "Attempt 1 of 2 failed (" in said.message


def test_a_paused_queue() -> None:
    live_worker()
    pause_queue("q")
    job_id = enqueue("test.record", queue="q")
    said = explain_job(job_id)
    assert said.blocker is Blocker.PAUSED
    assert "pgjobs resume q" in said.message
    assert claim() == []


def test_queue_concurrency_names_the_running_jobs() -> None:
    live_worker()
    set_queue_limits("q", concurrency=1)
    with transaction.atomic():
        first = enqueue("test.record", queue="q", priority=1)
        second = enqueue("test.record", queue="q")
    said = explain_job(second)  # the one start the queue has room for is the first job's
    assert (said.blocker, said.facts and said.facts.ahead_in_queue) == (Blocker.QUEUE_ORDER, 1)
    assert "Queue q has room for 1 more start now" in said.message
    assert "and 1 due job comes before it in its claim order" in said.message
    assert "it takes that room first" in said.message
    assert claim(limit=1) == [first]
    said = explain_job(second)
    assert said.blocker is Blocker.QUEUE_CONCURRENCY
    assert said.blocking_job_ids == (first,)
    assert f"1 of 1 jobs running across all workers ({first} on w1)" in said.message
    assert claim() == []


def test_worker_concurrency_when_every_worker_that_can_run_it_is_full() -> None:
    live_worker("w1")
    live_worker("w2")
    set_queue_limits("q", worker_concurrency=1)
    ids = [enqueue("test.record", queue="q") for _ in range(3)]
    taken = claim("w1") + claim("w2")
    assert len(taken) == 2
    (waiting,) = set(ids) - set(taken)
    said = explain_job(waiting)
    assert said.blocker is Blocker.WORKER_CONCURRENCY
    assert set(said.blocking_job_ids) == set(taken)
    assert claim("w1") == [] and claim("w2") == []
    live_worker("w3")  # a worker with room: the job can go
    assert explain_job(waiting).blocker is Blocker.CLAIMABLE
    assert claim("w3") == [waiting]


def test_a_free_thread_of_a_worker_at_the_queues_worker_concurrency_is_not_room() -> None:
    """w1 has room under worker_concurrency 1 but every thread busy; w2 has free threads but
    holds the queue's one: no thread can take the job now (it was said claimable on "6 jobs on
    8 threads", by the new-user trial)."""
    live_worker("w1")
    live_worker("w2")
    enqueue_many("test.record", [{}] * 4, queue="other")
    assert len(claim("w1", limit=4)) == 4
    set_queue_limits("q", worker_concurrency=1)
    with transaction.atomic():
        enqueue("test.record", queue="q")
        enqueue("test.record", queue="other")
    assert len(claim("w2", limit=2)) == 2
    waiting = enqueue("test.record", queue="q")
    said = explain_job(waiting)
    assert said.blocker is Blocker.CLAIMABLE  # w1's next claim takes it
    assert said.facts is not None and said.facts.free == 0
    assert (
        "2 live workers can run it, holding 6 jobs on 8 threads, 1 of them under the queue's "
        "worker_concurrency (1): those are all busy, so it starts when one of them is free."
    ) in said.message
    assert claim("w2") == []
    assert claim("w1") == [waiting]


def test_partition_concurrency_names_the_running_jobs_of_the_key() -> None:
    live_worker()
    set_queue_limits("q", partition_concurrency=1)
    with transaction.atomic():
        first = enqueue("test.record", queue="q", partition_key="acct:1")
        second = enqueue("test.record", queue="q", partition_key="acct:1")
        other = enqueue("test.record", queue="q", partition_key="acct:2")
    assert set(claim()) == {first, other}
    said = explain_job(second)
    assert said.blocker is Blocker.PARTITION_CONCURRENCY
    assert said.blocking_job_ids == (first,)
    assert "partition key 'acct:1' is at its partition_concurrency: 1 of 1" in said.message
    assert claim() == []


def test_a_key_s_later_job_waits_for_its_earlier_ones() -> None:
    live_worker()
    set_queue_limits("q", partition_concurrency=1)
    with transaction.atomic():  # one transaction: the same due time, enqueue order decides
        first = enqueue("test.record", queue="q", partition_key="acct:1")
        second = enqueue("test.record", queue="q", partition_key="acct:1")
    assert explain_job(first).blocker is Blocker.CLAIMABLE
    said = explain_job(second)
    assert said.blocker is Blocker.KEY_ORDER
    assert said.blocking_job_ids == (first,)
    assert said.message == (  # (it said "1 due job comes of partition key ... and take")
        "In queue q, 1 due job of partition key 'acct:1' comes before it in the key's order "
        "(priority, due time, enqueue order) and takes the room the key has now (1 start): "
        f"{first}. A key's jobs start in that order."
    )
    assert claim() == [first]


def test_the_jobs_without_a_key_are_one_more_partition() -> None:
    live_worker()
    set_queue_limits("q", partition_concurrency=1)
    with transaction.atomic():
        first = enqueue("test.record", queue="q")
        second = enqueue("test.record", queue="q")
    assert claim() == [first]
    said = explain_job(second)
    assert said.blocker is Blocker.PARTITION_CONCURRENCY
    assert "the jobs without a partition key" in said.message


def test_a_queue_rate_limit_says_when_the_window_has_room() -> None:
    live_worker()
    set_queue_limits("q", rate_limit=1, rate_period=60)
    first, second = enqueue("test.record", queue="q"), enqueue("test.record", queue="q")
    assert claim() == [first]
    said = explain_job(second)
    assert said.blocker is Blocker.RATE_LIMITED
    start = QueueStart.objects.get(queue="q")
    assert said.until == start.started_at + timedelta(seconds=60)
    assert "Queue q started 1 job in the last 0:01:00 (its rate_limit is 1)" in said.message
    assert claim() == []


def test_the_window_has_room_once_enough_starts_have_left_it() -> None:
    """Three starts of 1, 2 and 1 jobs against a limit of 4: the first leaving makes room."""
    live_worker()
    set_queue_limits("q", rate_limit=4, rate_period=60)
    job_id = enqueue("test.record", queue="q")
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_queue_starts (queue, started_at, jobs) VALUES "
            "('q', now() - interval '30 seconds', 1), ('q', now() - interval '20 seconds', 2), "
            "('q', now() - interval '10 seconds', 1)"
        )
    said = explain_job(job_id)
    assert said.blocker is Blocker.RATE_LIMITED
    oldest = QueueStart.objects.filter(queue="q").earliest("started_at").started_at
    assert said.until == oldest + timedelta(seconds=60)


def test_a_key_s_rate_limit() -> None:
    live_worker()
    set_queue_limits("q", partition_rate_limit=1, rate_period=60)
    first = enqueue("test.record", queue="q", partition_key="k")
    second = enqueue("test.record", queue="q", partition_key="k")
    assert claim() == [first]
    Job.objects.filter(id=first).update(status="completed")  # a start counts all the same
    said = explain_job(second)
    assert said.blocker is Blocker.RATE_LIMITED
    assert "Its partition key 'k' started 1 job" in said.message
    assert said.until is not None
    assert claim() == []


def test_no_live_worker_serves_the_queue() -> None:
    job_id = enqueue("test.record", queue="q")
    said = explain_job(job_id)
    assert said.blocker is Blocker.NO_WORKER
    assert "no worker has sent a heartbeat" in said.message
    live_worker("elsewhere", queues=["other"])
    live_worker("gone", silent_for=3600)  # serves every queue, but is silent: not live
    said = explain_job(job_id)
    assert said.blocker is Blocker.NO_WORKER
    assert "the 1 live worker (elsewhere) serves other queues" in said.message
    live_worker("mine", queues=["q"])
    assert explain_job(job_id).blocker is Blocker.CLAIMABLE


def test_a_suggested_command_quotes_the_queue_and_workflow_it_names() -> None:
    """Queue names and workflow ids may hold any character: a hint pasted into a shell must
    pass them as one argument, never run what they hold."""
    queue = "q $(touch /tmp/pwned)"
    job_id = enqueue("test.record", queue=queue)
    assert "or with `--queues 'q $(touch /tmp/pwned)'`)" in explain_job(job_id).message
    live_worker()
    pause_queue(queue)
    assert "(`manage.py pgjobs resume 'q $(touch /tmp/pwned)'`" in explain_job(job_id).message
    workflow = start_workflow(wf.greet, "x", workflow_id="it's $(id)")
    cancel_workflow(workflow.workflow_id)
    (job,) = Job.objects.filter(key="pgjobs.workflow:it's $(id)")
    said = explain_job(job.id).message
    assert """`manage.py pgjobs_workflows resume 'it'"'"'s $(id)'`""" in said, said


def test_no_live_worker_has_the_handler() -> None:
    live_worker("w1", handlers=["other.job"])
    job_id = enqueue("test.record")
    said = explain_job(job_id)
    assert said.blocker is Blocker.NO_HANDLER
    assert "(w1) has no handler for 'test.record'" in said.message
    assert claim(job_names=["other.job"]) == []


def test_a_worker_that_did_not_record_its_handlers_may_have_it() -> None:
    live_worker("old", handlers=None)
    said = explain_job(enqueue("test.record"))
    assert said.blocker is Blocker.CLAIMABLE
    assert "whether they have this one is not known" in said.message


def test_a_workflow_pinned_to_a_code_version_no_live_worker_runs() -> None:
    handle = start_workflow(wf.greet, "ada", workflow_id="pinned")
    job = Job.objects.get(key=f"pgjobs.workflow:{handle.workflow_id}")
    Job.objects.filter(id=job.id).update(job_name="pgjobs.workflow:old-release")
    live_worker("w1", handlers=["test.record", runner_job_name()])
    said = explain_job(job.id)
    assert said.blocker is Blocker.NO_HANDLER
    assert "pinned to code version 'old-release', which the live worker serving queue " in (
        said.message
    )
    assert "default (w1) does not run (it runs: " in said.message
    assert "pgjobs_workflows resume pinned --deployed" in said.message
    Job.objects.filter(id=job.id).update(job_name=runner_job_name())
    assert explain_job(job.id).blocker is Blocker.CLAIMABLE
    # Pinned to the deployed version, which the live workers do not run yet: moving it there
    # would change nothing.
    WorkerRow.objects.filter(id="w1").update(handlers=[runner_job_name("older")])
    said = explain_job(job.id)
    assert said.blocker is Blocker.NO_HANDLER
    assert said.message.endswith(
        "That is the code version deployed here: start a worker with this code serving that "
        "queue (`manage.py pgjobs_worker --queues default`), or upgrade the workers that serve it."
    )


def test_a_waiting_workflow_says_it_waits_and_whether_a_live_worker_runs_its_version() -> None:
    """Its job is not due while the workflow waits (for a message, say, for days): running it
    sooner would only look again, and a code version no live worker runs is said now, not only
    once the job is due."""
    handle = start_workflow(wf.greet, "ada", workflow_id="waits")
    job = Job.objects.get(key=f"pgjobs.workflow:{handle.workflow_id}")
    Job.objects.filter(id=job.id).update(scheduled_for=F("scheduled_for") + timedelta(days=2))
    live_worker("w1", handlers=["test.record", runner_job_name()])
    said = explain_job(job.id)
    assert said.blocker is Blocker.SCHEDULED and said.until is not None
    assert "Its workflow (waits) waits (a durable sleep, recv()" in said.message
    assert "pgjobs retry" not in said.message and "pinned" not in said.message
    Job.objects.filter(id=job.id).update(job_name="pgjobs.workflow:old-release")
    said = explain_job(job.id)
    assert said.blocker is Blocker.SCHEDULED
    assert "Then: Its workflow (waits) is pinned to code version 'old-release'" in said.message
    assert "pgjobs_workflows resume waits --deployed" in said.message
    live_worker("w2", handlers=None)  # may run it: whether it does is not known
    assert "pinned" not in explain_job(job.id).message


def test_a_real_worker_records_its_handlers_when_it_registers(
    make_worker: type[Worker],
) -> None:
    worker = make_worker(queues=["q"])
    worker.run_once()  # registers
    unknown = enqueue("nobody.has.this", queue="q")
    said = explain_job(unknown)
    assert said.blocker is Blocker.NO_HANDLER
    assert f"({worker.worker_id}) has no handler for 'nobody.has.this'" in said.message
    assert explain_job(enqueue("test.record", queue="q")).blocker is Blocker.CLAIMABLE


def test_a_job_claimed_ahead_waits_for_a_free_thread() -> None:
    live_worker("w1")
    job_id = enqueue("test.record")
    assert claim("w1", start_now=0) == [job_id]
    said = explain_job(job_id)
    assert said.blocker is Blocker.RUNNING
    assert "Claimed ahead by worker w1" in said.message
    with connection.cursor() as cur:  # its worker dies before it starts the job
        cur.execute("DELETE FROM pgjobs_workers WHERE id = 'w1'")
    assert "hands the job back to the queue, this attempt not counted" in (
        explain_job(job_id).message
    )


def test_a_claimable_job_says_how_many_come_before_it() -> None:
    live_worker("w1", concurrency=2)
    with transaction.atomic():
        ids = [enqueue("test.record", priority=p) for p in (5, 3, 1)]
    said = explain_job(ids[2])
    assert (said.blocker, said.ahead) == (Blocker.CLAIMABLE, 2)
    assert "2 due jobs come before it in queue default" in said.message
    assert "1 live worker can run it, holding 0 jobs on 2 threads." in said.message
    assert "(s)" not in said.message
    assert claim(limit=3) == ids


def test_a_fair_queue_ranks_a_claimable_job_by_its_keys_turn() -> None:
    """Keys A x3 and B x1 of a fair queue, the one worker busy: B's job comes after A's first,
    not after all three (it was ranked "3 due jobs come before it (priority, then due time)",
    as in a queue without turns, by the new-user trial)."""
    live_worker("w1", concurrency=1)
    enqueue("test.record", queue="busy")
    assert len(claim(limit=1)) == 1  # its one thread is busy
    set_queue_limits("fair", fair=True)
    with transaction.atomic():
        a = [enqueue("test.record", queue="fair", partition_key="A") for _ in range(3)]
        b = enqueue("test.record", queue="fair", partition_key="B")
    said = explain_job(b)
    assert (said.blocker, said.ahead) == (Blocker.CLAIMABLE, 1)
    assert (
        "Queue fair takes turns between partition keys: 1 due job comes before it in its "
        "queue's turns (each key with due jobs starts one a round" in said.message
    )
    assert "all busy, so it starts when one is free" in said.message
    second = explain_job(a[1])
    assert second.ahead == 2  # A's first and B's
    assert "2 due jobs come before it in its queue's turns, 1 of them its own key's" in (
        second.message
    )
    assert claim(limit=2) == [a[0], b]


def test_a_fair_queue_with_room_for_fewer_starts_than_the_turns_before_a_job() -> None:
    live_worker("w1")
    set_queue_limits("fair", fair=True, concurrency=2)
    with transaction.atomic():
        a = [enqueue("test.record", queue="fair", partition_key="A") for _ in range(3)]
        b = enqueue("test.record", queue="fair", partition_key="B")
    said = explain_job(a[1])
    assert (said.blocker, said.ahead) == (Blocker.FAIR_TURN, 2)
    assert said.message.startswith(
        "Queue fair takes turns between partition keys and has room for 2 more starts now "
        "(its concurrency or rate_limit): 2 due jobs come before it in its queue's turns"
    )
    assert said.message.endswith("; they take that room first.")
    assert explain_job(b).blocker is Blocker.CLAIMABLE
    assert sorted(claim()) == sorted([a[0], b])


@pytest.mark.parametrize(
    "insert",
    [
        "SELECT pgjobs_enqueue('test.record', queue => 'q', partition_key => 'k')",
        # As a row written before migration 0017 would be: no enqueue order.
        "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key, seq) "
        "VALUES ('test.record', 'q', 'k', NULL) RETURNING id",
    ],
)
def test_a_job_written_by_sql_is_explained(insert: str) -> None:
    live_worker()
    set_queue_limits("q", partition_concurrency=1)
    first = enqueue("test.record", queue="q", partition_key="k")
    with connection.cursor() as cur:
        cur.execute(insert)
        job_id = cur.fetchone()[0]
    said = explain_job(job_id)
    assert said.blocker is Blocker.KEY_ORDER
    assert said.blocking_job_ids == (first,)
    assert claim() == [first]
    assert explain_job(job_id).blocker is Blocker.PARTITION_CONCURRENCY


@pytest.mark.parametrize(
    ("queues", "handlers", "blocker"),
    [
        ('"q"', '"test.record"', Blocker.CLAIMABLE),  # a str: read as a list of one
        ("null", "null", Blocker.CLAIMABLE),  # every queue; handlers not known
        ('{"q": 1}', "[1, {}]", Blocker.NO_HANDLER),
        ("[1]", "[]", Blocker.NO_WORKER),
    ],
)
def test_worker_rows_written_by_sql_in_any_shape_are_read_not_failed_on(
    queues: str, handlers: str, blocker: Blocker
) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workers (id, queues, handlers) "
            "VALUES ('odd', %s::jsonb, %s::jsonb)",
            [queues, handlers],
        )
    assert explain_job(enqueue("test.record", queue="q")).blocker is blocker


def test_the_count_of_a_key_s_earlier_jobs_reads_the_partition_index() -> None:
    """Not the queue's whole backlog: explain_job stays cheap on a big queue."""
    from django_pgjobs.queries import explain as sql

    set_queue_limits("q", partition_concurrency=1)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key) "
            "SELECT 'test.record', 'q', 'k' || (n % 200) FROM generate_series(1, 20000) AS n"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        cur.execute("SELECT id FROM pgjobs_job_queue WHERE partition_key = 'k7' LIMIT 1")
        job_id = cur.fetchone()[0]
        cur.execute(f"EXPLAIN {sql._ONE}", {"id": job_id, "silent": 60, "cap": 10_000})
        plan = "\n".join(row[0] for row in cur.fetchall())
    # The key is in the index condition: only the job's own key is read.
    assert "(partition_key = j.partition_key)" in plan, plan
    assert "Seq Scan on pgjobs_job_queue" not in plan, plan
