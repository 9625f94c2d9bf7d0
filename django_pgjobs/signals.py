"""Django signals for what happens to jobs and workflows.

Connect receivers as for any Django signal (``@receiver(job_failed)``). Every signal is sent
with ``sender`` the model of what changed (:class:`~django_pgjobs.models.Job`, or
:class:`~django_pgjobs.models.WorkflowExecution`), so ``@receiver(job_failed, sender=Job)``
works too, and with keyword arguments only. A receiver that raises is logged (by Django's
``django.dispatch`` logger, with its traceback) and the others still run: a receiver can never
fail an enqueue or a job. Where each is sent, and in which thread:

- In the process that calls the API, in the calling thread, inside the caller's transaction
  (like Django's ``post_save``: a rollback undoes the job, not the signal):
  ``job_enqueued`` (after the row is written; not for a job a ``key`` found already there, nor
  for rows written by SQL), ``job_cancelled`` from ``cancel_job()``, ``workflow_started`` from
  ``start_workflow()``.
- In a worker, in one thread of the worker's own, in the order things happened, never on the
  thread that claims and writes outcomes nor on a handler's thread: ``job_started`` (when the
  handler begins), and after each outcome is committed ``job_succeeded``, ``job_failed``,
  ``job_dead_lettered``, ``job_cancelled`` (the handler raised ``Cancel``), ``job_snoozed`` and
  ``workflow_finished``; and ``job_dead_lettered`` for each job its rescue moved to the dead
  letters (then ``workflow_finished`` for a workflow's job). So a slow receiver delays other
  receivers, never jobs. At most
  ``after_write.MAX_WAITING`` wait to be sent; past that new ones are dropped, with a warning.
  When no receiver is connected, a worker does nothing per job for them.

Arguments (besides ``sender``):

- every job signal: ``job_id`` (UUID), ``job_name``, ``queue``;
- ``job_enqueued``: ``payload``, ``priority``, ``partition_key``, ``using`` (the alias);
- ``job_started``: ``attempt`` (1 for the first), ``max_attempts``, ``worker_id``;
- ``job_succeeded``: ``attempt``, ``duration`` (seconds the handler ran), ``worker_id``;
- ``job_failed``: ``attempt``, ``max_attempts``, ``error`` (the text stored on the job),
  ``exception`` (the class path, or None), ``will_retry``, ``delay`` (seconds until the retry;
  0 when it will not retry), ``duration``, ``worker_id``;
- ``job_dead_lettered``: ``attempt``, ``error``, ``worker_id`` (after its ``job_failed``; a
  rescue's has none, and its ``worker_id`` is the dead worker's);
- ``job_cancelled``: ``reason`` (the handler's ``Cancel`` text, or None for ``cancel_job()``),
  ``worker_id`` (None for ``cancel_job()``);
- ``job_snoozed``: ``attempt``, ``delay``, ``worker_id``;
- ``workflow_started``: ``workflow_id``, ``name``, ``using``;
- ``workflow_finished``: ``workflow_id``, ``name``, ``status`` ("completed", "failed",
  "cancelled" or "dead": its job moved to the dead letters), ``error`` (None, the failure's
  ``Class: message``, or ``WorkflowDead: ...`` followed by the dead job's error).
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.db import DatabaseError, connections, transaction
from django.dispatch import Signal

from django_pgjobs.jobs.error_text import log_exception

logger = logging.getLogger("django_pgjobs.signals")

job_enqueued = Signal()
job_started = Signal()
job_succeeded = Signal()
job_failed = Signal()
job_dead_lettered = Signal()
job_cancelled = Signal()
job_snoozed = Signal()
workflow_started = Signal()
workflow_finished = Signal()


def listened(signal: Signal) -> bool:
    """Whether ``signal`` has a receiver. The empty list first: ``has_listeners()`` takes the
    signal's lock and walks its weak references, and the worker asks for every job it starts
    and every outcome it writes, thousands of times a second, mostly to find none."""
    return bool(signal.receivers) and signal.has_listeners()


def send_job(signal: Signal, **kwargs: Any) -> None:
    """:func:`send` a job signal, its sender :class:`~django_pgjobs.models.Job`."""
    if signal.has_listeners():
        send(signal, apps.get_model("pgjobs", "Job"), **kwargs)


def send_workflow(signal: Signal, **kwargs: Any) -> None:
    """:func:`send` a workflow signal, its sender
    :class:`~django_pgjobs.models.WorkflowExecution`."""
    if signal.has_listeners():
        send(signal, apps.get_model("pgjobs", "WorkflowExecution"), **kwargs)


def send(signal: Signal, sender: Any, *, within: str | None = None, **kwargs: Any) -> None:
    """Send ``signal`` to every receiver; one that raises is logged by Django
    (``django.dispatch``, with its traceback), never propagated. (The senders are looked up by
    name in :func:`send_job` and :func:`send_workflow`: the producer, which sends, is imported
    while the models load.)

    Sent from inside a transaction on database ``within`` (default: the ``using`` it sends),
    the receivers run in a savepoint of it, rolled back if one of them failed in the database:
    a receiver's failed statement would otherwise leave the caller's transaction aborted, the
    job it just wrote lost with everything else at the caller's next statement."""
    if not signal.has_listeners(sender):
        return
    alias = within if within is not None else kwargs.get("using")
    try:
        if alias is None or not connections[alias].in_atomic_block:
            signal.send_robust(sender, **kwargs)
            return
        with transaction.atomic(using=alias):
            answers = signal.send_robust(sender, **kwargs)
            if any(isinstance(answer, DatabaseError) for _, answer in answers):
                transaction.set_rollback(True, using=alias)
    except Exception:
        # Django's own logging of a receiver's error can fail too (a functools.partial
        # receiver has no __qualname__ for its message): still never the caller's problem.
        log_exception(logger, "Sending a django_pgjobs signal failed")
