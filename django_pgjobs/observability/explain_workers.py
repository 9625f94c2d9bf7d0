"""The sentences of an ``explain_job`` answer about the live workers that could take a due job
(:mod:`.explain_messages` has the others): none serves its queue, none has its handler, or those
that can and how busy they are, with the due jobs its queue's order (or turns) puts first; and
a waiting workflow's job, which no live worker may run once it is due."""

from __future__ import annotations

import uuid

from django_pgjobs.jobs.registry import registry
from django_pgjobs.observability.display import counted, shell_word
from django_pgjobs.observability.explanation import COUNT_CAP, NAMED, silent_seconds
from django_pgjobs.queries import explain_details as details
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX, WORKFLOW_KEY_PREFIX, Cursor
from django_pgjobs.queries.explain import DueJobFacts
from django_pgjobs.queries.explain_rows import JobRow


def capped(count: int) -> str:
    return f"{COUNT_CAP:,}+" if count >= COUNT_CAP else f"{count:,}"


def capped_jobs(count: int, come: str = "come") -> str:
    """``1 due job comes``, ``3 due jobs come``, ``10,000+ due jobs come``."""
    if count == 1:
        return f"1 due job {come}s"
    return f"{capped(count)} due jobs {come}"


# How the dead letter's message names the admin's way to requeue it; the dead letter's own
# admin page names it as seen from there (admin.explain_panel).


def each_worker(count: int) -> str:
    return "The one live worker" if count == 1 else f"Each of the {count:,} live workers"


def _serving(workers: list[tuple[str, list[str] | None]], queue: str) -> str:
    return f"The live worker{'' if len(workers) == 1 else 's'} serving queue {queue}"


def no_worker(cur: Cursor, queue: str) -> str:
    count, ids = details.live_workers(cur, silent_seconds=silent_seconds(), limit=NAMED)
    others = (
        f"the {counted(count, 'live worker')} ({', '.join(ids)}"
        f"{', ...' if count > len(ids) else ''}) {'serves' if count == 1 else 'serve'} other queues"
        if count
        else f"no worker has sent a heartbeat in the last {silent_seconds():g}s"
    )
    return (
        f"No live worker serves queue {queue}: {others}. Start one that does "
        f"(`manage.py pgjobs_worker`, or with `--queues {shell_word(queue)}`)."
    )


def no_handler(cur: Cursor, job: JobRow) -> str:
    workers = details.serving_workers(
        cur, queue=job.queue, silent_seconds=silent_seconds(), limit=NAMED
    )
    names = ", ".join(worker for worker, _ in workers)
    if not job.job_name.startswith(WORKFLOW_JOB_PREFIX):
        return (
            f"{_serving(workers, job.queue)} ({names}) {'has' if len(workers) == 1 else 'have'} "
            "no handler for "
            f"{job.job_name!r}. Deploy code that registers it to a worker of that queue (a "
            "job name no code registers waits for ever)."
        )
    version = job.job_name.removeprefix(WORKFLOW_JOB_PREFIX)
    running = sorted(
        {
            name.removeprefix(WORKFLOW_JOB_PREFIX)
            for _, handlers in workers
            for name in handlers or ()
            if name.startswith(WORKFLOW_JOB_PREFIX)
        }
    )
    workflow = workflow_of(job) or "ID"
    serving = f"live worker{'' if len(workers) == 1 else 's'} serving queue {job.queue} ({names})"
    which = (
        f"the {serving} does not run (it runs: "
        if len(workers) == 1
        else f"none of the {serving} runs (they run: "
    )
    # The deployed version (this process registers its runner): moving the workflow to it
    # changes nothing; the workers are what lag behind.
    advice = (
        upgrade_advice(job.queue) if job.job_name in registry.names() else move_advice(workflow)
    )
    return (
        f"Its workflow ({workflow}) is pinned to code version {version!r}, which {which}"
        f"{', '.join(running) or 'none'}). {advice}"
    )


def move_advice(workflow: str) -> str:
    """What to do about a workflow pinned to a code version no worker runs."""
    return (
        "Deploy that version, or move the workflow to the deployed one: "
        f"`manage.py pgjobs_workflows resume {shell_word(workflow)} --deployed`."
    )


def upgrade_advice(queue: str) -> str:
    """What to do about a workflow pinned to the deployed code version no live worker runs."""
    return (
        "That is the code version deployed here: start a worker with this code serving that "
        f"queue (`manage.py pgjobs_worker --queues {shell_word(queue)}`), or upgrade the workers "
        "that serve it."
    )


def turns_before(facts: DueJobFacts) -> str:
    """How many due jobs a fair queue's turns put before the job, and what a turn is."""
    ahead = facts.ahead_in_turns
    own = (
        f", {facts.ahead_in_key:,} of them its own key's" if 0 < facts.ahead_in_key < ahead else ""
    )
    return (
        f"{capped_jobs(ahead)} before it in its queue's turns{own} (each key with due jobs "
        "starts one a round, from the key after where the last claim stopped; jobs without a "
        "key first)"
    )


def claimable(cur: Cursor, job_id: uuid.UUID, job: JobRow, facts: DueJobFacts) -> tuple[str, int]:
    if facts.fair:
        ahead = facts.ahead_in_turns
        order = f"Queue {job.queue} takes turns between partition keys: {turns_before(facts)}."
    else:
        ahead = details.ahead_in_queue(cur, job_id=job_id, cap=COUNT_CAP)
        order = (
            f"{capped_jobs(ahead).capitalize()} before it in queue {job.queue} (priority, then "
            "due time)."
        )
    parts = [f"The next claim of a live worker with its handler may take it. {order}"]
    # Free threads count per worker, and only those of workers under the queue's
    # worker_concurrency: a free thread of a worker at that limit cannot take it.
    limited = facts.worker_concurrency is not None and facts.with_room < facts.capable
    busy = facts.free == 0
    under = (
        f", {facts.with_room:,} of them under the queue's worker_concurrency "
        f"({facts.worker_concurrency})"
        if limited
        else ""
    )
    if busy:
        then = (
            ": those are all busy, so it starts when one of them is free"
            if limited
            else ": all busy, so it starts when one is free"
        )
    else:
        then = f" ({counted(facts.free, 'free thread')} that can take it)" if limited else ""
    parts.append(
        f"{counted(facts.capable, 'live worker')} can run it, holding "
        f"{counted(facts.held, 'job')} on {counted(facts.threads, 'thread')}{under}{then}."
    )
    if facts.unknown:
        parts.append(
            f"{facts.unknown} of them did not record their handlers (started before migration "
            "0019), so whether they have this one is not known."
        )
    return " ".join(parts), ahead


def workflow_of(job: JobRow) -> str | None:
    """The workflow a workflow's job runs (its key names it), else None."""
    key = job.key or ""
    if job.job_name.startswith(WORKFLOW_JOB_PREFIX) and key.startswith(WORKFLOW_KEY_PREFIX):
        return key.removeprefix(WORKFLOW_KEY_PREFIX)
    return None


# Live workers read to tell whether any of them runs a workflow's code version.
_ALL_WORKERS = 1_000


def waiting_workflow(cur: Cursor, job: JobRow, until: str) -> str:
    """A workflow's job that is not due: its workflow waits, and running the job sooner would
    only look again. Said too when no live worker serving its queue runs its code version, so
    a workflow waiting days on an old version is not found out only when it is due."""
    workflow = workflow_of(job) or "ID"
    message = (
        f"Its workflow ({workflow}) waits (a durable sleep, recv(), get_event() or a child's "
        f"result) until {until} at the latest, or until what it waits "
        "for comes (a message, an event or a result wakes it at once)."
    )
    unrun = version_not_run(cur, job)
    return message if unrun is None else f"{message} Then: {unrun}"


def version_not_run(cur: Cursor, job: JobRow) -> str | None:
    """:func:`no_handler`'s sentence when live workers serve the job's queue and none of them
    runs its name (a workflow's: its code version), each having recorded what it runs; None
    when one does or may, or when none is live (a worker started later may run it)."""
    workers = details.serving_workers(
        cur, queue=job.queue, silent_seconds=silent_seconds(), limit=_ALL_WORKERS
    )
    if workers and all(
        handlers is not None and job.job_name not in handlers for _, handlers in workers
    ):
        return no_handler(cur, job)
    return None
