"""What the caller's open transaction did to workflows: started, forked or resumed one, or sent
one a message. Nothing of it reaches a worker before that transaction commits, which it cannot
while its own thread waits for the workflow: a wait from inside it (``get_result()``,
``get_event()``, ``run_workflow()`` in ``atomic()`` or a view under ``ATOMIC_REQUESTS``) would last
its whole timeout, or for ever. :func:`refuse_wait` stops such a wait at once.

Kept on Django's connection object, per workflow, with the ``on_commit`` callback that forgets it:
an entry holds while that callback is still pending on the connection, so a commit (the callback
runs), a rollback (Django drops the pending callbacks) or the rollback of the savepoint it was
made in (Django drops that savepoint's) ends it, with no statement and no connection of its own.
Only inside a caller's ``atomic()``: a test's own blocks (Django's ``TestCase``) never commit, and
``drain()`` runs the workflow inside them, so they are left out (``in_callers_transaction``).
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections, transaction

from django_pgjobs.database import in_callers_transaction
from django_pgjobs.exceptions import WorkflowStateError

# Django's connection attribute the entries live on: {workflow id: {id of its on_commit callback:
# (what, the callback, kept so that its id names no other while the entry lives)}}, one per
# thing done, in the order done: a later one made in a savepoint
# rolled back leaves the earlier ones (a start, then a send() in a savepoint that failed). Keyed
# by the callback, so each forgets itself in constant time: a transaction that sends 40,000
# messages commits as fast as before (a list rebuilt by each took 18 s).
_ATTRIBUTE = "_pgjobs_uncommitted_workflows"

Entries = dict[str, dict[int, tuple[str, Callable[[], None]]]]


def noted(alias: str, workflow_id: str, what: str) -> None:
    """Note that the caller's open transaction on ``alias`` did ``what`` ("started", "sent a
    message") to workflow ``workflow_id``; nothing outside a caller's ``atomic()``."""
    if not in_callers_transaction(alias):
        return
    connection = connections[alias]
    entries: Entries = connection.__dict__.setdefault(_ATTRIBUTE, {})
    if not connection.run_on_commit:
        # No callback pending: what is kept is of transactions rolled back (whose callbacks never
        # ran), on a connection that may live for hours.
        entries.clear()

    def forget() -> None:
        kept = entries.get(workflow_id)
        if kept is not None:
            kept.pop(id(forget), None)
            if not kept:
                del entries[workflow_id]

    entries.setdefault(workflow_id, {})[id(forget)] = (what, forget)
    transaction.on_commit(forget, using=alias)


def _pending(alias: str, workflow_id: str) -> str | None:
    """What the open transaction did to the workflow, if that is still uncommitted."""
    connection = connections[alias]
    entries: Entries = connection.__dict__.get(_ATTRIBUTE, {})
    noted_here = entries.get(workflow_id)
    if not noted_here or not in_callers_transaction(alias):
        return None
    # Django's pending callbacks are (savepoint ids, callback, robust): an entry's is among them
    # until the transaction (or the savepoint it was made in) ends. The earliest still pending
    # says what was done first.
    pending = {id(callback[1]) for callback in connection.run_on_commit}
    for key, (what, _forget) in noted_here.items():
        if key in pending:
            return what
    return None


def refuse_wait(alias: str, workflow_id: str) -> None:
    """Raise :class:`WorkflowStateError` if what a wait for ``workflow_id`` waits on depends on
    the caller's open transaction (see the module's docstring)."""
    what = _pending(alias, workflow_id)
    if what is None:
        return
    raise WorkflowStateError(
        f"Workflow {workflow_id!r} was {what} in the transaction this wait runs in, which has "
        "not committed: no worker sees that until the transaction commits, and it cannot commit "
        "while this waits. Wait after the commit (outside transaction.atomic(), or in "
        "transaction.on_commit()); run_workflow() starts and waits, so call it outside atomic() "
        "too."
    )
