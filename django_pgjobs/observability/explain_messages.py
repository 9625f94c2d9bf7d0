"""The sentences of :func:`~django_pgjobs.observability.explain.explain_job`, one function per
kind of answer, each building the :class:`Explanation` with the data behind its words.

Times are shown in the project's ``TIME_ZONE`` with their offset (``local_time``) and as a
distance from the database's clock; stored text (job names, keys, errors) goes in as stored:
whoever prints it escapes it (the commands' ``say``, the admin's templates).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django_pgjobs.conf import conf
from django_pgjobs.observability.display import counted, local_time, shell_word
from django_pgjobs.observability.explain_workers import (
    capped,
    capped_jobs,
    claimable,
    each_worker,
    no_handler,
    no_worker,
    turns_before,
    waiting_workflow,
    workflow_of,
)
from django_pgjobs.observability.explanation import (
    NAMED,
    Blocker,
    Explanation,
    rescue_hold_seconds,
    silent_seconds,
)
from django_pgjobs.queries import explain_details as details
from django_pgjobs.queries import workflow_reads as reads
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX, Cursor
from django_pgjobs.queries.explain import DueJobFacts
from django_pgjobs.queries.explain_rows import DeadLetterRow, JobRow


def _span(delta: timedelta) -> str:
    return str(timedelta(seconds=max(round(delta.total_seconds()), 0)))


def _period(delta: timedelta) -> str:
    """A configured duration: H:MM:SS, or seconds under a minute that is not whole seconds (a
    rate period of 0.25 s would read 0:00:00)."""
    seconds = delta.total_seconds()
    if seconds < 60 and round(seconds, 3) != round(seconds):
        return f"{seconds:g} s"
    return _span(delta)


def _at(moment: datetime, now: datetime) -> str:
    """A time and how far it is from now: '2026-12-03 15:04:05+0100 (in 0:00:12)', or 'in under
    a second' where the seconds would round to 0:00:00 (a short rate window's room)."""
    if abs(moment - now) <= timedelta(seconds=0.5):  # round(0.5) is 0: '0:00:00' too
        away = "in under a second" if moment >= now else "under a second ago"
        return f"{local_time(moment)} ({away})"
    if moment >= now:
        return f"{local_time(moment)} (in {_span(moment - now)})"
    return f"{local_time(moment)} ({_span(now - moment)} ago)"


REQUEUE_IN_ADMIN = "the Requeue action of the admin's dead letters list"


def _ids(pairs: list[tuple[uuid.UUID, str | None]]) -> str:
    return ", ".join(f"{job_id} on {worker or 'no worker'}" for job_id, worker in pairs)


def _key(job: JobRow) -> str:
    if job.partition_key is None:
        return "the jobs without a partition key"
    return f"partition key {job.partition_key!r}"


def dead_letter(job_id: uuid.UUID, dead: DeadLetterRow) -> Explanation:
    error = f" ({dead.error_line})" if dead.error_line else ""
    message = (
        f"Dead-lettered at {_at(dead.failed_at, dead.now)}: attempt {dead.attempt} of "
        f"{dead.max_attempts} failed{error}. Nothing runs it again until it is retried: "
        f"`manage.py pgjobs retry {job_id}`, retry_dead_letter_job(), or {REQUEUE_IN_ADMIN}."
    )
    return Explanation(
        job_id, Blocker.FINISHED, message, "dead", dead.job_name, dead.queue, until=None
    )


def finished(cur: Cursor, job_id: uuid.UUID, job: JobRow) -> Explanation:
    when = "" if job.completed_at is None else f" at {local_time(job.completed_at)}"
    workflow = workflow_of(job)
    if job.status == "completed":
        message = f"Completed{when}: it has run."
    elif workflow is not None and reads.status_of(cur, workflow) == "cancelled":
        # A retry of this job alone would find its workflow cancelled and run nothing.
        message = (
            f"Cancelled{when} with its workflow ({workflow}), which stays cancelled until it is "
            f"resumed (`manage.py pgjobs_workflows resume {shell_word(workflow)}`, "
            "resume_workflow())."
        )
    else:
        message = (
            f"Cancelled{when}: it will not run unless it is retried "
            f"(`manage.py pgjobs retry {job_id}`, retry_job())."
        )
    return _made(job_id, job, Blocker.FINISHED, message)


def running(
    job_id: uuid.UUID,
    job: JobRow,
    *,
    silent: float,
    live_workers: int,
    rescue_from: datetime | None,
) -> Explanation:
    """A job a worker holds. Whether that worker's process still lives is not known here (a
    killed one stays "live" until its silence passes the limit): the answer gives the last
    heartbeat and the lease, and says what happens when the lease runs out."""
    # A row written by SQL may name no worker, or '': no id to give.
    worker = f"worker {job.locked_by}" if job.locked_by else "no recorded worker"
    now = job.now
    attempt = f"attempt {job.attempt} of {job.max_attempts}"
    if job.locked_at is None:
        started = f"Claimed ahead by {worker} ({attempt}), which starts it when a thread is free."
    else:
        started = f"Held by {worker} ({attempt}, started {_at(job.locked_at, now)})."
    lease = job.lease_expires_at
    heartbeat = job.worker_heartbeat_at
    if lease is None:
        message = (
            f"{started} It has no lease expiry (a row written by SQL?), so no rescue will hand "
            f"it back: cancel it or retry it (`manage.py pgjobs cancel {job_id}`)."
        )
        return _made(job_id, job, Blocker.RUNNING, message, worker_id=job.locked_by)
    # The interval lets a reader see a heartbeat overdue; whether the process lives is not known.
    every = f"workers heartbeat every {conf.HEARTBEAT_SECONDS:g}s"
    if heartbeat is None:
        beat = "It has no worker row (it stopped, or was presumed dead and forgotten)."
    elif heartbeat >= now - timedelta(seconds=silent):
        beat = (
            f"Last heartbeat {_span(now - heartbeat)} ago ({every}, and count as live until "
            f"silent for {silent:g}s)."
        )
    else:
        beat = f"Silent since {_at(heartbeat, now)} ({every})."
    # As rescue_expired_leases decides: an attempt never started is undone; one that
    # started counts, and the last one buries the job.
    if job.locked_at is None:
        end = "hands the job back to the queue, this attempt not counted"
    elif job.attempt >= job.max_attempts:
        end = "moves the job to the dead letters (that was its last attempt)"
    else:
        end = "hands the job back to the queue, due at once"
    if lease > now:
        held = (
            f"Its lease expires at {_at(lease, now)}: a worker that runs renews it; if the "
            f"worker is gone, the rescue then {end}"
        )
    else:
        held = f"Its lease expired at {_at(lease, now)}: the rescue {end}"
    hold = f"{rescue_hold_seconds():g}s"
    # The blocker lifts when the rescue may act: at the lease's expiry, or at the end of the
    # live workers' start-up hold when that comes later (a lease already past is no answer).
    until = lease
    if not live_workers:
        rescue = (
            f", but no worker is live to sweep: the first worker to start does, after its "
            f"start-up hold ({hold})."
        )
    elif rescue_from is not None and rescue_from > max(lease, now):
        until = rescue_from
        rescue = (
            f", but not before {_at(rescue_from, now)}: a worker rescues nothing for {hold} after "
            "it starts, or after the database server restarts, so that workers cut off by an "
            "outage renew their leases first."
        )
    else:
        rescue = f" (a live worker's rescue sweep runs every {conf.HEARTBEAT_SECONDS:g}s)."
    message = f"{started} {beat} {held}{rescue}"
    return _made(job_id, job, Blocker.RUNNING, message, until=until, worker_id=job.locked_by)


def not_due(cur: Cursor, job_id: uuid.UUID, job: JobRow) -> Explanation:
    due = _at(job.scheduled_for, job.now)
    if job.failed and job.attempt > 0:
        error = f" ({job.error_line})" if job.error_line else ""
        message = (
            f"Attempt {job.attempt} of {job.max_attempts} failed{error}; the next is due at {due}."
        )
        return _made(job_id, job, Blocker.AWAITING_RETRY, message, until=job.scheduled_for)
    if job.job_name.startswith(WORKFLOW_JOB_PREFIX):
        return _made(
            job_id, job, Blocker.SCHEDULED, waiting_workflow(cur, job, due), until=job.scheduled_for
        )
    message = f"Due at {due}. (`manage.py pgjobs retry {job_id}` runs it now.)"
    return _made(job_id, job, Blocker.SCHEDULED, message, until=job.scheduled_for)


def due(cur: Cursor, job_id: uuid.UUID, job: JobRow, facts: DueJobFacts) -> Explanation:
    """A pending job that is due: what the classification found, in words."""
    blocker = Blocker(facts.blocker)
    queue = job.queue
    blocking: list[uuid.UUID] = []
    until: datetime | None = None
    ahead: int | None = None
    if blocker is Blocker.PAUSED:
        message = (
            f"Queue {queue} is paused: it accepts jobs and starts none until it is resumed "
            f"(`manage.py pgjobs resume {shell_word(queue)}`, resume_queue(), or the admin's "
            "queues page)."
        )
    elif blocker in (Blocker.QUEUE_CONCURRENCY, Blocker.WORKER_CONCURRENCY):
        held = details.running_jobs(cur, queue=queue, partition_key=None, keyed=False, limit=NAMED)
        blocking = [running_id for running_id, _ in held]
        if blocker is Blocker.QUEUE_CONCURRENCY:
            message = (
                f"Queue {queue} is at its concurrency limit: {facts.running} of "
                f"{facts.concurrency} jobs running across all workers ({_ids(held)}). "
                f"{_when_the_queue_frees(facts)}"
            )
        else:
            message = (
                f"{each_worker(facts.capable)} that can run it holds "
                f"{facts.worker_concurrency} or more jobs of queue {queue}, the queue's "
                f"worker_concurrency ({_ids(held)}). {_when_the_queue_frees(facts)}"
            )
    elif blocker is Blocker.PARTITION_CONCURRENCY:
        held = details.running_jobs(
            cur, queue=queue, partition_key=job.partition_key, keyed=True, limit=NAMED
        )
        blocking = [running_id for running_id, _ in held]
        message = (
            f"In queue {queue}, {_key(job)} is at its partition_concurrency: "
            f"{facts.key_running} of {facts.partition_concurrency} running ({_ids(held)}). "
            f"{_when_one_ends(facts.ahead_in_key)}"
        )
    elif blocker is Blocker.KEY_ORDER:
        blocking = details.earlier_in_key(
            cur, job_id=job_id, keyed=job.partition_key is not None, limit=NAMED
        )
        one = facts.ahead_in_key == 1
        message = (
            f"In queue {queue}, {capped(facts.ahead_in_key)} due job{'' if one else 's'} of "
            f"{_key(job)} {'comes' if one else 'come'} before it in the key's order (priority, "
            f"due time, enqueue order) and {'takes' if one else 'take'} the room the key has "
            f"now ({counted(facts.key_room or 0, 'start')}): "  # set: above 0
            f"{', '.join(map(str, blocking))}. A key's jobs start in that order."
        )
    elif blocker is Blocker.RATE_LIMITED:
        message, until = _rate_limited(cur, job, facts)
    elif blocker is Blocker.NO_WORKER:
        message = no_worker(cur, queue)
    elif blocker is Blocker.NO_HANDLER:
        message = no_handler(cur, job)
    elif blocker is Blocker.KEY_HEAD:
        message, blocking = _key_head(cur, job_id, job)
    elif blocker is Blocker.FAIR_TURN:
        ahead = facts.ahead_in_turns
        # (queue_room is set: the classification says FAIR_TURN only when it is above 0)
        message = (
            f"Queue {queue} takes turns between partition keys and has room for "
            f"{counted(facts.queue_room or 0, 'more start')} now (its concurrency or "
            f"rate_limit): {turns_before(facts)}; "
            f"{'it takes' if ahead == 1 else 'they take'} that room first."
        )
    elif blocker is Blocker.QUEUE_ORDER:
        ahead = facts.ahead_in_queue
        # (queue_room is set: the classification says QUEUE_ORDER only when it is above 0)
        message = (
            f"Queue {queue} has room for {counted(facts.queue_room or 0, 'more start')} now (its "
            f"concurrency or rate_limit), and {capped_jobs(ahead)} before it in its claim "
            f"order (priority, then due time): {'it takes' if ahead == 1 else 'they take'} "
            "that room first."
        )
    else:
        message, ahead = claimable(cur, job_id, job, facts)
    return _made(
        job_id, job, blocker, message, until=until, blocking=blocking, ahead=ahead, facts=facts
    )


def _rate_limited(cur: Cursor, job: JobRow, facts: DueJobFacts) -> tuple[str, datetime | None]:
    period = _period(facts.rate_period) if facts.rate_period is not None else "?"
    said: list[str] = []
    until: list[datetime] = []
    for keyed, starts, limit, whose, option in (
        (False, facts.starts, facts.rate_limit, f"queue {job.queue}", "rate_limit"),
        (
            True,
            facts.key_starts,
            facts.partition_rate_limit,
            f"its {_key(job)}",
            "partition_rate_limit",
        ),
    ):
        if limit is None or starts < limit:
            continue
        room = details.rate_room_at(
            cur, queue=job.queue, partition_key=job.partition_key, keyed=keyed, limit=limit
        )
        at = f"room for the next start at {_at(room, job.now)}" if room else "room again now"
        said.append(
            f"{whose[0].upper()}{whose[1:]} started {starts} job{'' if starts == 1 else 's'} "
            f"in the last {period} "
            f"(its {option} is {limit}); {at}."
        )
        if room is not None:
            until.append(room)
    return " ".join(said), max(until, default=None)


def _key_head(cur: Cursor, job_id: uuid.UUID, job: JobRow) -> tuple[str, list[uuid.UUID]]:
    keyed = job.partition_key is not None
    found = details.unreachable_in_key(
        cur, job_id=job_id, keyed=keyed, silent_seconds=silent_seconds(), limit=NAMED
    )
    if found:
        named = ", ".join(f"{pk} ({name!r})" for pk, name in found)
        which = f"no live worker that has its handler also has the handler of {named}"
    else:  # each earlier job has a worker, but none has them all
        found = [
            (pk, "") for pk in details.earlier_in_key(cur, job_id=job_id, keyed=keyed, limit=NAMED)
        ]
        which = (
            "no live worker that has its handler has the handlers of all the jobs before it: "
            + ", ".join(str(pk) for pk, _ in found)
        )
    message = (
        f"Queue {job.queue} claims {_key(job)} in order (priority, due time, enqueue order), "
        f"and a claim stops at the first job of a key it cannot run: {which}. It waits until "
        "they run (deploy their handlers to a worker of this queue) or are cancelled."
    )
    return message, [pk for pk, _ in found]


def _made(
    job_id: uuid.UUID,
    job: JobRow,
    blocker: Blocker,
    message: str,
    *,
    until: datetime | None = None,
    blocking: list[uuid.UUID] | None = None,
    worker_id: str | None = None,
    ahead: int | None = None,
    facts: DueJobFacts | None = None,
) -> Explanation:
    return Explanation(
        job_id=job_id,
        blocker=blocker,
        message=message,
        status=job.status,
        job_name=job.job_name,
        queue=job.queue,
        partition_key=job.partition_key,
        until=until,
        blocking_job_ids=tuple(blocking or ()),
        worker_id=worker_id,
        ahead=ahead,
        facts=facts,
    )


def _when_the_queue_frees(facts: DueJobFacts) -> str:
    """When a job held back by its queue's running jobs starts, in the order its queue's claims
    take jobs: turns in a queue that takes them, the walk of the keys in another partitioned
    queue, else claim order."""
    if facts.fair:
        ahead = facts.ahead_in_turns
        if ahead <= 0:
            return "It is next in its queue's turns: it starts when one of them ends."
        they = "it starts" if ahead == 1 else "they start"
        return f"{turns_before(facts)}: {they} first, as running jobs end; then it does."
    if facts.partitioned:
        return (
            "It starts when one of them ends and a claim's walk of the queue's partition keys "
            "(on from where the last one stopped) reaches its key."
        )
    return _when_one_ends(facts.ahead_in_queue)


def _when_one_ends(ahead: int) -> str:
    """When a job held back by running jobs starts: ``ahead`` due jobs come before it."""
    if ahead <= 0:
        return "It starts when one of them ends."
    if ahead == 1:
        return "1 due job ahead of it starts first, when one of them ends; then it does."
    jobs = f"{capped(ahead)} due jobs"
    return f"{jobs} ahead of it start first, each when one of them ends; then it does."
