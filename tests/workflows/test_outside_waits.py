"""How often get_result() and get_event() re-read from ordinary code: woken by the NOTIFY of the
commit that ends the wait, they re-read only as a safety net; without LISTEN, every
POLL_INTERVAL (it was once a second, whatever the settings said). A listening connection that
cannot be had in time never makes a wait outlast its timeout."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs.listening import LISTEN_CONNECT_TIMEOUT
from django_pgjobs.workflows.handles import wait_outside
from tests.helpers import in_thread, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def counting() -> tuple[list[int], Callable[[], None]]:
    looks: list[int] = []

    def check() -> None:
        looks.append(1)

    return looks, check


def test_a_listening_wait_reads_only_at_its_start_and_its_deadline() -> None:
    looks, check = counting()
    with override_settings(PGJOBS={"POLL_INTERVAL": 0.05}):
        assert wait_outside("never", check, timeout=1.0) is None
    assert len(looks) == 3  # before LISTEN, after it, at the deadline


def test_a_wait_that_does_not_listen_reads_every_poll_interval() -> None:
    looks, check = counting()
    with override_settings(PGJOBS={"POLL_ONLY": True, "POLL_INTERVAL": 0.05}):
        assert wait_outside("never", check, timeout=1.0) is None
    assert len(looks) >= 10  # about twenty in the second


def test_a_listening_wait_is_woken_by_its_key() -> None:
    done = {"now": False}
    results: list[object] = []
    waiter = in_thread(
        lambda: results.append(wait_outside("k", lambda: "done" if done["now"] else None, 60))
    )
    wait_for(lambda: listening_waits() == 1, what="the wait to listen")
    done["now"] = True
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_notify('pgjobs_workflow', 'other'), pg_notify('pgjobs_workflow', 'k')"
        )
    waiter.join(10)  # its deadline is a minute away, its safety re-read 30 s
    assert results == ["done"]


def test_a_wait_whose_listening_path_never_answers_ends_at_its_timeout(
    unanswering_database: str,
) -> None:
    looks, check = counting()
    with override_settings(PGJOBS={"LISTEN_DATABASE": unanswering_database}):
        began = time.monotonic()
        assert wait_outside("never", check, timeout=1.0) is None
        assert time.monotonic() - began < 1.5
    assert len(looks) == 2  # at its start and at its deadline


def test_a_wait_without_a_timeout_polls_once_its_listening_path_fails_to_answer(
    unanswering_database: str,
) -> None:
    looks: list[int] = []

    def check() -> str | None:
        looks.append(1)
        return "done" if len(looks) == 3 else None

    with override_settings(PGJOBS={"LISTEN_DATABASE": unanswering_database, "POLL_INTERVAL": 0.05}):
        began = time.monotonic()
        assert wait_outside("k", check, timeout=None) == "done"
        assert time.monotonic() - began < LISTEN_CONNECT_TIMEOUT + 2


def listening_waits() -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgjobs wait' "
            "AND state = 'idle' AND query LIKE 'LISTEN%%'"
        )
        return int(cur.fetchone()[0])
