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

# Django's connection attribute the entries live on: {workflow id: (what, its on_commit callback)}.
_ATTRIBUTE = "_pgjobs_uncommitted_workflows"


def noted(alias: str, workflow_id: str, what: str) -> None:
    """Note that the caller's open transaction on ``alias`` did ``what`` ("started", "sent a
    message") to workflow ``workflow_id``; nothing outside a caller's ``atomic()``."""
    if not in_callers_transaction(alias):
        return
    connection = connections[alias]
    entries: dict[str, tuple[str, Callable[[], None]]] = connection.__dict__.setdefault(
        _ATTRIBUTE, {}
    )

    def forget() -> None:
        if entries.get(workflow_id, (None, None))[1] is forget:
            del entries[workflow_id]

    entries[workflow_id] = (what, forget)
    transaction.on_commit(forget, using=alias)


def _pending(alias: str, workflow_id: str) -> str | None:
    """What the open transaction did to the workflow, if that is still uncommitted."""
    connection = connections[alias]
    entries: dict[str, tuple[str, Callable[[], None]]] = connection.__dict__.get(_ATTRIBUTE, {})
    entry = entries.get(workflow_id)
    if entry is None or not in_callers_transaction(alias):
        return None
    what, forget = entry
    # Django's pending callbacks are (savepoint ids, callback, robust): ours is among them until
    # the transaction (or the savepoint it was made in) ends.
    if any(pending[1] is forget for pending in connection.run_on_commit):
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
