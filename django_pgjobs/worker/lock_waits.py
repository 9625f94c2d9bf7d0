"""Bounded lock waits for the worker's writes that can meet an application's locks.

The loop's writes skip a job row another transaction holds (queries.base.MINE), but burying an
attempt of a workflow fires a trigger that marks the workflow failed and wakes its waiters: it
updates ``pgjobs_workflow_executions`` and other jobs' rows, and a transaction holding one of
those (a ``WorkflowHandle.cancel()`` inside ``atomic()``) would make the loop wait for as long as
that transaction lasts, its heartbeats stalled behind it. Such writes run in a transaction of
their own with ``lock_timeout`` set for that transaction only (``set_config(..., true)``: nothing
outlives it, behind a pooler in transaction mode too); past it the write fails, its outcome stays
buffered and is written again after the loop's pause.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

# How long one of those writes may wait for a lock before it gives up and is tried again. Short:
# the wait holds the worker's loop (its heartbeats, and the start of jobs claimed ahead, which
# must be recorded within 2.5 s); the locks it meets are a statement's, or an application's
# transaction, which a longer wait would not outlast either.
LOCK_TIMEOUT = "200ms"


def statement_bound(conn: psycopg.Connection[Any]) -> str | None:
    """The ``lock_timeout`` a statement that sets its own may set on ``conn`` (a completion that
    ends workflows: queries.completions): LOCK_TIMEOUT on the worker's autocommit connection,
    None inside a caller's transaction (``testing.drain()``), which the setting would outlast."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return LOCK_TIMEOUT if idle else None


@contextlib.contextmanager
def bounded(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A transaction on the loop's autocommit ``conn`` whose lock waits end after LOCK_TIMEOUT
    (raising ``psycopg.errors.LockNotAvailable``). Three more statements than the write alone:
    for failures and rescues, never for the completions of a busy worker."""
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
        yield
