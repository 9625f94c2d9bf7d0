"""``pgjobs status``'s lines: the figures of
:func:`~django_pgjobs.observability.status.queue_status` as people read them, each with whether
it warns."""

from __future__ import annotations

from collections.abc import Iterator

from django_pgjobs.observability.connections import ConnectionCounts
from django_pgjobs.observability.display import counted, elapsed, in_number
from django_pgjobs.observability.status import QueueCounts, QueueStatus
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX

COLUMNS = ("due", "scheduled", "running", "completed", "cancelled")
LEGEND = (
    "(paused: starts none until `pgjobs resume QUEUE`; limited: a limit can hold its due jobs "
    "back, `pgjobs queues` shows them)"
)


def status_report(
    status: QueueStatus, connections: ConnectionCounts | None = None
) -> Iterator[tuple[str, bool]]:
    """The lines of ``pgjobs status`` and whether each warns. A queue's line is marked
    ``paused`` or ``limited`` (a limit that can hold its due jobs back); a paused queue is
    listed even without jobs, since its pause outlives them."""
    yield f"{'queue':<20}" + "".join(f"{c:>11}" for c in COLUMNS), False
    paused, limited = set(status.paused), set(status.limited)
    for queue in sorted(set(status.queues) | paused):
        counts = status.queues.get(queue, QueueCounts())
        marks = [
            mark for mark, named in (("paused", paused), ("limited", limited)) if queue in named
        ]
        line = f"{queue:<20}" + "".join(f"{getattr(counts, c):>11}" for c in COLUMNS)
        yield line + (f"  {', '.join(marks)}" if marks else ""), False
    if not status.queues:
        yield "(no jobs)", False
    total = QueueCounts(**{c: sum(getattr(q, c) for q in status.queues.values()) for c in COLUMNS})
    yield f"{'total':<20}" + "".join(f"{getattr(total, c):>11}" for c in COLUMNS), False
    shown = set(status.queues) | paused
    if paused or limited & shown:
        yield LEGEND, False
    yield f"dead letters: {status.dead_letters}", False
    yield f"live workers: {len(status.live_workers)}", False
    for worker in status.live_workers:
        queues = ",".join(map(str, worker.queues)) or "all"
        where = f"host={worker.hostname} pid={worker.pid}"
        yield f"  {worker.id} {where} queues={queues} concurrency={worker.concurrency}", False
    if connections is not None:
        yield from _connections(connections, status)
    yield _oldest_due(status), False
    if status.workflows:
        states = ", ".join(f"{state} {count}" for state, count in sorted(status.workflows.items()))
        yield f"workflows: {states}", False
    for name, ids in status.stranded_workflows.items():
        waiting = status.stranded_waiting.get(name, 0)
        count = status.unhandled.get(name, 0) + waiting
        version = name.removeprefix(WORKFLOW_JOB_PREFIX)
        more = "" if len(ids) >= count else f" and {count - len(ids)} more"
        waits = f", {waiting} of them waiting for what they wait for" if waiting else ""
        yield (
            (
                f"{count} {in_number('workflow(s)', count)} pinned to code version {version!r}, "
                f"which no worker of this deployment runs ({', '.join(ids)}{more}{waits}): deploy "
                "that version, or move them with `manage.py pgjobs_workflows resume ID --deployed`"
            ),
            True,
        )
    for name, count in status.unhandled.items():
        if name.startswith(WORKFLOW_JOB_PREFIX):
            continue  # said above
        yield (
            f"due but no handler is registered for {name!r}: {count} {in_number('job(s)', count)}",
            True,
        )


def _connections(counts: ConnectionCounts, status: QueueStatus) -> Iterator[tuple[str, bool]]:
    """Connections by role, and what the server has left; a warning when it has fewer left than
    one more worker like the largest live one would take (its concurrency + 2: its handler
    threads, its loop and its scheduler)."""
    # Listeners only where there are some: with LISTEN_DATABASE (behind PgBouncer).
    listeners = f"direct listeners {counts.listeners}, " if counts.listeners else ""
    roles = (
        f"worker loops {counts.loops}, worker handlers {counts.handlers}, "
        f"schedulers {counts.schedulers}, outside waits {counts.waits}, {listeners}"
        f"other {counts.other}"
    )
    yield f"connections on database {counts.database} (not this command's): {roles}", False
    yield (
        f"connections on the server: {counts.server} of max_connections "
        f"{counts.max_connections}, {counts.left} left ({counts.reserved} reserved for "
        "superusers)",
        False,
    )
    largest = max((worker.concurrency for worker in status.live_workers), default=None)
    if largest is not None and counts.left < largest + 2:
        yield (
            f"{counted(counts.left, 'connection')} left on the server: one "
            f"more worker of concurrency {largest} would need {largest + 2}",
            True,
        )


def _ago(age: float | None) -> str:
    return "none" if age is None else f"{elapsed(age)} ago"


def _oldest_due(status: QueueStatus) -> str:
    """How far behind the workers are: paused queues' jobs wait on purpose, so when a queue is
    paused they are left out, and their own oldest is said apart."""
    line = f"oldest due job: {_ago(status.oldest_due_age)}"
    if not status.paused:
        return line
    if status.oldest_paused_due_age is None:
        return f"{line} (queues not paused; the paused queues have no due job)"
    return f"{line} (queues not paused; paused queues: {_ago(status.oldest_paused_due_age)})"
