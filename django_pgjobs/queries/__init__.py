"""Every statement that changes a row, one small named function each, and the state table below.

Each function's docstring says which rows it locks, which index it relies on and what a crash at
that point leaves behind. The rule they all follow: a state change is one statement, so it either
happened or it did not, and no row lock is ever held while user code runs.

Fencing: every claim stamps its rows with a fresh random ``lease_token``, and a worker must present
``(id, lease_token)`` to complete, fail, release, heartbeat or report progress. A worker whose
lease expired (it was paused, partitioned, or presumed dead) and whose job was rescued, cancelled
or claimed again therefore finds its writes matching no row: it can never overwrite the outcome
of the attempt that took over, even when that attempt runs on the same worker.

Functions take any DB-API cursor (a psycopg cursor or Django's wrapper): enqueueing uses the
caller's Django connection so it joins the caller's transaction; the worker uses its own.

The writers of every state, by table (``module.function``; SQL functions and triggers are in the
migrations named)::

    pgjobs_job_queue (jobs)
      -> pending      enqueue.insert_job, enqueue.insert_job_stamped, enqueue.insert_jobs,
                      schedules.fire_tick, operator.requeue_dead_letter(s),
                      workflow_runs.start, workflow_control.resume / .fork;
                      a plain INSERT (0001) or pgjobs_enqueue() (0009)
      pending -> pending   enqueue.upsert_pending_job (replaced in place), operator.retry_job
                      (due now), pgjobs_workflow_wake() (0008: a waiting workflow's job due now)
      pending -> running   claim.claim_jobs (or sent behind completions: .claim_behind)
      running -> running   lease.heartbeat (lease renewed; a job claimed ahead: its start
                      recorded), lease.report_progress, lease.save_metadata (a task's),
                      enqueue.detach_key_from_running_job (key given up)
      running -> completed completions.complete_jobs (or sent without waiting: .send_completion)
      running -> pending   outcomes.fail_job (a retry; lost connection: attempt undone, once),
                      rescue.rescue_expired_leases (expired; never started: attempt undone),
                      lease.release_jobs / .release_lost_claims (never started: attempt
                      undone), lease.snooze_job (the handler snoozed: attempt undone),
                      workflow_runs.suspend (a workflow waits: attempt undone),
                      workflow_control.resume (re-pointed to another code version; a pending
                      job is re-pointed the same way)
      running -> dead letter  outcomes.fail_job, rescue.rescue_expired_leases (last attempt: the row
                      moves to pgjobs_failed_jobs in the same statement), outcomes.bury_job
                      (attempts left, but its payload cannot be decoded, or the handler
                      raised Discard or a task's backoff said no more)
      pending, running -> cancelled  operator.cancel_job (NOTIFY pgjobs_cancel for a running
                      one), workflow_control.cancel (pending only)
      running -> cancelled  outcomes.cancel_held_job (the handler raised Cancel)
      cancelled -> pending  operator.retry_job (a fresh attempt budget)
      completed, cancelled -> deleted  upkeep.prune_finished_jobs
      every insert: NOTIFY pgjobs, one per queue per statement (trigger, 0002)

    pgjobs_failed_jobs (dead letters)
      -> dead         outcomes.fail_job, outcomes.bury_job, rescue.rescue_expired_leases
      dead -> deleted operator.requeue_dead_letter (back to the queue, same id),
                      operator.requeue_dead_letters (many at once: one statement),
                      workflow_control.resume (a dead workflow's job); the admin's delete action
                      (the ORM: an operator discarding a dead letter)
      a workflow's job buried: its workflow -> dead (trigger pgjobs_failed_workflow, 0008)

    pgjobs_workflow_executions (workflows)
      -> pending      workflow_runs.start, workflow_control.fork
      pending, running, dead -> running   workflow_runs.load
      running -> pending   workflow_runs.suspend
      pending, running -> completed, failed   completions.complete_jobs (with its job's completion)
      pending, running -> cancelled  workflow_control.cancel
      cancelled, dead, pending -> pending  workflow_control.resume
      pending, running -> dead   trigger pgjobs_failed_workflow (0008)
      wake_seq + 1    pgjobs_workflow_wake() (0008)
      ended -> deleted  upkeep.prune_finished_workflows (with steps, messages, events)

    pgjobs_workflow_steps (checkpoints)
      -> completed, failed  workflow_steps.record_step, .send_from_step, .set_event_from_step;
                      workflow_control.fork (copied)
      -> waiting      workflow_steps.register_wait
      waiting -> completed  workflow_steps.finish_wait

    pgjobs_workflow_messages   workflow_steps.send / .send_from_step insert; .finish_wait (recv)
                      deletes the message it receives
    pgjobs_workflow_events     workflow_steps.set_event_from_step (upsert)

    pgjobs_schedules
      declared rows   schedules.upsert_declared_schedule, schedules.orphan_undeclared_schedules
      next_run_at     schedules.set_next_run (first fire time), schedules.fire_tick (advanced
                      with the tick's jobs); cleared by trigger pgjobs_schedule_changed (0003)
                      when the timing changes; an operator's edits go through the model (admin)

    pgjobs_queues     queues.sync_declared_queues (PGJOBS["QUEUES"], at worker start),
                      queues.set_queue_limits / .reset_queue_limits (an operator's override),
                      queues.pause_queue / .resume_queue = pgjobs_pause() / pgjobs_resume()
                      (0017); the admin's queue form (the ORM); an operator's SQL.
                      overridden, paused_at: trigger pgjobs_queue_overridden (0024), for
                      every writer. Read by every claim (flow).
    pgjobs_queue_starts  claim.claim_jobs appends (rate-limited queues);
                      upkeep.prune_queue_starts deletes rows past their window

    pgjobs_workers    upkeep: upkeep.register_worker (a live worker's id is refused),
                      lease.heartbeat (upsert, own row only), upkeep.deregister_worker,
                      upkeep.delete_stale_workers
"""

from __future__ import annotations

from django_pgjobs.queries.base import CANCEL_CHANNEL, NOTIFY_CHANNEL, ClaimedJob, Cursor, Token
from django_pgjobs.queries.claim import FlowHint, claim_jobs
from django_pgjobs.queries.claim_behind import ClaimBehind
from django_pgjobs.queries.completions import (
    Completed,
    SentCompletion,
    complete_jobs,
    send_completion,
)
from django_pgjobs.queries.enqueue import (
    detach_key_from_running_job,
    find_active_job_by_key,
    insert_job,
    insert_job_stamped,
    insert_jobs,
    upsert_pending_job,
)
from django_pgjobs.queries.lease import (
    heartbeat,
    no_longer_held,
    release_jobs,
    release_lost_claims,
    report_progress,
    save_metadata,
    snooze_job,
)
from django_pgjobs.queries.operator import (
    Changed,
    Requeued,
    cancel_job,
    requeue_dead_letter,
    requeue_dead_letters,
    retry_job,
)
from django_pgjobs.queries.outcomes import (
    FailOutcome,
    JobState,
    bury_job,
    cancel_held_job,
    fail_job,
    find_job_state,
)
from django_pgjobs.queries.queues import (
    pause_queue,
    reset_queue_limits,
    resume_queue,
    set_queue_limits,
    sync_declared_queues,
)
from django_pgjobs.queries.rescue import DeadLettered, rescue_expired_leases
from django_pgjobs.queries.schedules import (
    SCHEDULES_CHANNEL,
    due_schedules,
    fire_tick,
    orphan_undeclared_schedules,
    seconds_until_next_schedule,
    set_next_run,
    upsert_declared_schedule,
)
from django_pgjobs.queries.upkeep import (
    delete_stale_workers,
    deregister_worker,
    find_worker,
    prune_finished_jobs,
    prune_finished_workflows,
    prune_queue_starts,
    register_worker,
    seconds_until_next_due,
    seconds_until_rate_room,
)

__all__ = [
    "CANCEL_CHANNEL",
    "NOTIFY_CHANNEL",
    "SCHEDULES_CHANNEL",
    "Changed",
    "ClaimBehind",
    "ClaimedJob",
    "Completed",
    "Cursor",
    "DeadLettered",
    "FailOutcome",
    "FlowHint",
    "JobState",
    "Requeued",
    "SentCompletion",
    "Token",
    "bury_job",
    "cancel_held_job",
    "cancel_job",
    "claim_jobs",
    "complete_jobs",
    "delete_stale_workers",
    "deregister_worker",
    "detach_key_from_running_job",
    "due_schedules",
    "fail_job",
    "find_active_job_by_key",
    "find_job_state",
    "find_worker",
    "fire_tick",
    "heartbeat",
    "insert_job",
    "insert_job_stamped",
    "insert_jobs",
    "no_longer_held",
    "orphan_undeclared_schedules",
    "pause_queue",
    "prune_finished_jobs",
    "prune_finished_workflows",
    "prune_queue_starts",
    "register_worker",
    "release_jobs",
    "release_lost_claims",
    "report_progress",
    "requeue_dead_letter",
    "requeue_dead_letters",
    "rescue_expired_leases",
    "reset_queue_limits",
    "resume_queue",
    "retry_job",
    "save_metadata",
    "seconds_until_next_due",
    "seconds_until_next_schedule",
    "seconds_until_rate_room",
    "send_completion",
    "set_next_run",
    "set_queue_limits",
    "snooze_job",
    "sync_declared_queues",
    "upsert_declared_schedule",
    "upsert_pending_job",
]
