"""What ``pgjobs_workflows`` says a workflow is doing beyond its status: the wait it is in (``list``
and ``show`` word it the same way), the run of a cancelled workflow still in a step, and, once it
is resumed, a code version no live worker runs. Reads a few rows by key; writes nothing."""

from __future__ import annotations

from datetime import datetime

from django_pgjobs.jobs.registry import registry
from django_pgjobs.observability.display import local_time
from django_pgjobs.observability.explain_workers import move_advice, version_not_run
from django_pgjobs.observability.explanation import silent_seconds
from django_pgjobs.queries import explain_details as details
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX, WORKFLOW_KEY_PREFIX, Cursor
from django_pgjobs.queries.enqueue import find_active_job_by_key
from django_pgjobs.queries.explain_rows import JobRow, find_job
from django_pgjobs.workflows.context import IN_PROCESS_SLEEP

# How much of a wait's topic or key ``list`` and ``show`` print (``show --full``: all of it).
# Python's are names of at most 200 characters (an event's, two joined); a row written by SQL
# may hold any length, and a key of 5,000 characters made a list line as long.
WAIT_KEY_CHARS = 200


def described_wait(
    workflow_id: str,
    step_name: str,
    wait_key: str | None,
    wake_at: datetime | None,
    *,
    whole: bool = False,
) -> str:
    """A wait in progress in words, from its step row: ``sleeping until <time>``, ``waiting
    (recv 'topic') until <time>``, ``waiting (get_event 'WORKFLOW:KEY')``, ``waiting
    (get_result of 'child')``, with ``, no time limit`` for one without a deadline. The wake-up
    keys are those :mod:`django_pgjobs.workflows.waits` registers; an event's target and key
    both may hold a colon, so they are shown as the key joins them. A topic or key longer than
    ``WAIT_KEY_CHARS`` is cut there, with its length, unless ``whole``."""
    until = f" until {local_time(wake_at)}" if wake_at is not None else ", no time limit"
    if step_name == "pgjobs.sleep":
        return f"sleeping{until}"
    key = wait_key or ""

    def quoted(text: str) -> str:
        if whole or len(text) <= WAIT_KEY_CHARS:
            return repr(text)
        cut = text[:WAIT_KEY_CHARS]
        return f"{cut!r}... ({len(text):,} characters in all; show --full prints them)"

    if step_name == "pgjobs.recv":
        topic = key.removeprefix(f"message:{workflow_id}:")
        what = f"recv {quoted(topic)}" if topic else "recv"
    elif step_name == "pgjobs.get_event":
        what = f"get_event {quoted(key.removeprefix('event:'))}"
    elif step_name == "pgjobs.get_result":
        what = f"get_result of {quoted(key.removeprefix('result:'))}"
    else:  # a kind of wait this version does not know (a later one wrote it)
        what = step_name  # at most MAX_NAME_LENGTH, as its column is
    return f"waiting ({what}){until}"


def _job(cur: Cursor, workflow_id: str) -> JobRow | None:
    """The workflow's pending or running job (its key), read as ``explain`` reads a job."""
    job_id = find_active_job_by_key(cur, f"{WORKFLOW_KEY_PREFIX}{workflow_id}")
    return None if job_id is None else find_job(cur, job_id=job_id)


def run_in_flight(cur: Cursor, workflow_id: str, wait: str | None = None) -> str | None:
    """What the run still holding a cancelled workflow's job is doing, as far as the rows tell;
    None when no run holds it. A cancel does not interrupt a step: the run records the step it
    is in when it ends and stops before the next, so until then that step has no row. ``wait``:
    the workflow's last step is a wait in progress, in :func:`described_wait`'s words; the run
    is in it (a sleep of ``IN_PROCESS_SLEEP`` or less is waited out holding the job)."""
    job = _job(cur, workflow_id)
    if job is None or job.status != "running":
        return None
    since = "" if job.locked_at is None else f" since {local_time(job.locked_at)}"
    run = f"its last run (worker {job.locked_by}{since})"
    if job.lease_expires_at is not None and job.lease_expires_at <= job.now:
        died = (
            "in a step, the step is not recorded, and a resume runs it again"
            if wait is None
            else f"in its wait ({wait}), a resume goes on with that wait"
        )
        expired = local_time(job.lease_expires_at)
        return f"{run} let its lease run out at {expired}: if that worker died {died}"
    # resume_workflow() is refused while the lease lives: it would run the step a second time.
    if wait is not None:
        return (
            f"{run} is in its wait ({wait}), holding the job (a sleep of {IN_PROCESS_SLEEP:g}s "
            "or less is waited out so, and a run woken from a wait checks whether it ended): it "
            "stops before the next step (a resume is refused until then)"
        )
    return (
        f"{run} is still in a step not recorded yet (or between two): the step is not "
        "interrupted, and is recorded when it ends; the run stops before the next one (a "
        "resume is refused until then)"
    )


def unrun_version(cur: Cursor, workflow_id: str) -> str | None:
    """Why the workflow's queued job will not run as things stand, for the operator who just
    resumed it: the live workers serving its queue run other code versions (``explain``'s
    sentence), or none serves it and this deployment runs another version too (``pgjobs
    status``'s judgement). None when one runs it or may, or its job is already taken."""
    job = _job(cur, workflow_id)
    if job is None or job.status != "pending":
        return None
    said = version_not_run(cur, job)
    if said is not None or job.job_name in registry.names():
        return said
    if details.serving_workers(cur, queue=job.queue, silent_seconds=silent_seconds(), limit=1):
        return None  # they may run it: some did not record what they run
    version = job.job_name.removeprefix(WORKFLOW_JOB_PREFIX)
    return (
        f"Its workflow ({workflow_id}) is pinned to code version {version!r}, which no worker "
        f"of this deployment runs, and no live worker serves queue {job.queue}. "
        f"{move_advice(workflow_id)}"
    )
