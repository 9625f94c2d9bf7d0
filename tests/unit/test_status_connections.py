"""``pgjobs status``'s connection lines, and when they warn (no database: the figures are
given)."""

from __future__ import annotations

import pytest

from django_pgjobs.models import Worker
from django_pgjobs.observability.connections import ConnectionCounts
from django_pgjobs.observability.status import QueueStatus
from django_pgjobs.observability.status_report import status_report


def counts(
    *, server: int, max_connections: int = 100, reserved: int = 3, listeners: int = 0
) -> ConnectionCounts:
    return ConnectionCounts(
        database="shop", loops=2, handlers=9, schedulers=3, waits=1, listeners=listeners,
        other=4, server=server, max_connections=max_connections, reserved=reserved,
    )  # fmt: skip


def lines(status: QueueStatus, figures: ConnectionCounts) -> list[tuple[str, bool]]:
    return [line for line in status_report(status, figures) if "connection" in line[0]]


def workers(*concurrency: int) -> QueueStatus:
    return QueueStatus(
        live_workers=[
            Worker(id=f"w{n}", concurrency=c, queues=[]) for n, c in enumerate(concurrency)
        ]
    )


def test_connections_by_role_and_what_the_server_has_left() -> None:
    assert lines(QueueStatus(), counts(server=30)) == [
        (
            "connections on database shop (not this command's): worker loops 2, worker handlers "
            "9, schedulers 3, outside waits 1, other 4",
            False,
        ),
        (
            "connections on the server: 30 of max_connections 100, 67 left (3 reserved for "
            "superusers)",
            False,
        ),
    ]


def test_direct_listeners_are_counted_where_there_are_some() -> None:
    """With LISTEN_DATABASE (behind PgBouncer) workers and schedulers listen on connections of
    their own, straight to PostgreSQL."""
    [roles, _] = lines(QueueStatus(), counts(server=30, listeners=3))
    assert roles[0] == (
        "connections on database shop (not this command's): worker loops 2, worker handlers "
        "9, schedulers 3, outside waits 1, direct listeners 3, other 4"
    )


@pytest.mark.parametrize(("server", "warns"), [(87, False), (88, True), (120, True)])
def test_it_warns_when_one_more_worker_like_the_largest_would_not_fit(
    server: int, warns: bool
) -> None:
    """The largest live worker has concurrency 8: one more needs 10 (its handler threads, its
    loop, its scheduler); 100 - 3 reserved - 87 in use leaves 10."""
    said = lines(workers(4, 8), counts(server=server))
    warnings = [text for text, warning in said if warning]
    left = max(97 - server, 0)
    expected = [
        f"{left} connection{'' if left == 1 else 's'} left on the server: one more worker of "
        "concurrency 8 would need 10"
    ]
    assert warnings == (expected if warns else [])


def test_without_live_workers_nothing_to_compare_with() -> None:
    assert not any(warning for _, warning in lines(QueueStatus(), counts(server=97)))
