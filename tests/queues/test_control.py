"""An operator's controls from Python (``django_pgjobs.queues``), which the admin and the CLI call:
a change that changes nothing is no override, and mistakes are told in Python's values."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings

from django_pgjobs import queries
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.models import Queue
from django_pgjobs.queues import pause_queue, reset_queue_limits, set_queue_limits
from django_pgjobs.queues.control import sync_declared_queues
from django_pgjobs.queues.declarations import normalised

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def declared() -> Iterator[None]:
    """PGJOBS["QUEUES"] names mail, written as a worker's start writes it."""
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 5}}}):
        sync_declared_queues()
        yield


@pytest.fixture
def listener(other_connection: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    other_connection.execute("LISTEN pgjobs")
    return other_connection


def woken(listener: psycopg.Connection[Any]) -> list[str]:
    """The queues whose workers were woken since the last call (delivered at commit)."""
    listener.execute("SELECT 1")
    return [n.payload for n in listener.notifies(timeout=0)]


@pytest.mark.usefixtures("declared")
def test_setting_the_limits_a_queue_already_has_is_no_override(
    listener: psycopg.Connection[Any],
) -> None:
    before = Queue.objects.get(name="mail").updated_at
    woken(listener)
    assert set_queue_limits("mail", concurrency=5) is False
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.overridden, row.updated_at) == (5, False, before)
    assert woken(listener) == []
    # Still the settings': a deploy that changes them applies at the next worker start.
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 9}}}):
        sync_declared_queues()
    assert Queue.objects.get(name="mail").concurrency == 9


@pytest.mark.usefixtures("declared")
def test_a_change_overrides_and_the_same_change_again_changes_nothing(
    listener: psycopg.Connection[Any],
) -> None:
    woken(listener)
    assert set_queue_limits("mail", concurrency=2) is True
    assert woken(listener) == ["mail"]
    updated = Queue.objects.get(name="mail").updated_at
    assert set_queue_limits("mail", concurrency=2) is False
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.overridden, row.updated_at) == (2, True, updated)
    assert woken(listener) == []


@pytest.mark.usefixtures("declared")
def test_removing_every_limit_of_a_declared_queue_is_a_change() -> None:
    assert set_queue_limits("mail") is True
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.overridden) == (None, True)


def test_no_limits_for_a_queue_without_a_row_writes_no_row() -> None:
    assert set_queue_limits("fresh", timeout=None, rate_period=None) is False
    assert not Queue.objects.filter(name="fresh").exists()
    # A paused queue's row without limits: setting none changes nothing either (the row is
    # overridden by the pause, which the settings do not declare, and stays so).
    pause_queue("fresh")
    updated = Queue.objects.get(name="fresh").updated_at
    assert set_queue_limits("fresh") is False
    row = Queue.objects.get(name="fresh")
    assert (row.paused, row.overridden, row.updated_at) == (True, True, updated)


def test_python_callers_are_told_in_python_values() -> None:
    with pytest.raises(InvalidJobError) as refused:
        set_queue_limits("mail", concurrency=0, timeout=timedelta(0))
    assert str(refused.value) == (
        "concurrency must be a whole number from 1 to 2147483647, or None for no limit; got 0; "
        "timeout must be seconds from 0.001 to 31622400 (a year), as a number or a "
        "timedelta, or None for no timeout; got 0:00:00 (0 s)."
    )
    assert not Queue.objects.exists()


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"rate_limit": "10/m"}, "got '10/m' (for 10/m: rate_limit=10, rate_period=60)."),
        (
            {"partition_rate_limit": "100 / hours"},
            "(for 100 / hours: partition_rate_limit=100, rate_period=3600).",
        ),
        ({"rate_limit": "5/10s"}, "(for 5/10s: rate_limit=5, rate_period=10)."),
        ({"rate_limit": "5/ms"}, "got '5/ms'."),  # no such period: no hint
        ({"rate_limit": "5/2d"}, "got '5/2d'."),  # past a day
        ({"concurrency": "10/m"}, "got '10/m'."),  # not a rate
        ({"rate_limit": "10/"}, "got '10/'."),  # no period to show
    ],
)
def test_a_rate_written_as_text_is_told_how_to_say_it(given: dict[str, Any], said: str) -> None:
    """Trial: "10/m", as other queues take a rate, was refused with no word of rate_period."""
    with pytest.raises(InvalidJobError) as refused:
        set_queue_limits("mail", **given)
    assert str(refused.value).endswith(said)
    assert not Queue.objects.exists()


@pytest.mark.usefixtures("declared")
def test_setting_the_settings_limits_again_ends_the_override(
    listener: psycopg.Connection[Any],
) -> None:
    assert set_queue_limits("mail", concurrency=2) is True
    assert Queue.objects.get(name="mail").overridden
    woken(listener)
    # Back to exactly PGJOBS["QUEUES"]: as if reset, and the workers are woken to the change.
    assert set_queue_limits("mail", concurrency=5) is True
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.overridden) == (5, False)
    assert woken(listener) == ["mail"]
    assert set_queue_limits("mail", concurrency=5) is False
    # The settings decide again: a deploy that changes them applies at the next worker start.
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 9}}}):
        sync_declared_queues()
    assert Queue.objects.get(name="mail").concurrency == 9


@pytest.mark.usefixtures("declared")
def test_settings_deployed_equal_to_an_override_end_it_at_the_next_same_setting() -> None:
    assert set_queue_limits("mail", concurrency=2) is True
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 2}}}):
        # The limits do not change; the override does: it ends.
        assert set_queue_limits("mail", concurrency=2) is True
    assert not Queue.objects.get(name="mail").overridden


def test_an_undeclared_queue_set_back_to_no_limits_is_no_longer_overridden() -> None:
    assert set_queue_limits("fresh", concurrency=3, timeout=timedelta(minutes=1)) is True
    assert Queue.objects.get(name="fresh").overridden
    assert set_queue_limits("fresh") is True
    row = Queue.objects.get(name="fresh")
    assert (row.concurrency, row.timeout, row.overridden) == (None, None, False)


@pytest.mark.parametrize(
    ("limits", "told"),
    [
        ({"timeout": 1e-7}, "timeout must be seconds from 0.001 to 31622400 (a year)"),
        ({"timeout": timedelta(microseconds=1)}, "timeout must be seconds from 0.001"),
        ({"rate_limit": 5, "rate_period": 0.0000004}, "rate_period must be seconds from 0.001"),
    ],
)
def test_a_duration_postgresql_would_round_to_nothing_is_refused_before_the_write(
    limits: dict[str, Any], told: str
) -> None:
    with transaction.atomic():
        with pytest.raises(InvalidJobError, match=rf"^{re.escape(told)}"):
            set_queue_limits("mail", **limits)
        # Refused in Python, not by the table's CHECK: the caller's transaction goes on.
        assert set_queue_limits("mail", concurrency=1) is True
    assert Queue.objects.get(name="mail").concurrency == 1


def test_settings_with_a_sub_millisecond_timeout_leave_that_queue_out_and_sync_the_rest() -> None:
    queues = {"tiny": {"timeout": 1e-7}, "mail": {"concurrency": 5}}
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": queues}):
        assert sync_declared_queues() == 1
        # Every limit edit syncs first: the bad entry does not stop it either.
        assert set_queue_limits("mail", concurrency=2) is True
    assert list(Queue.objects.values_list("name", flat=True)) == ["mail"]


def old_deploy_syncs(other: psycopg.Connection[Any], concurrency: int) -> None:
    """A worker of the previous deploy starting: it syncs its own PGJOBS["QUEUES"] on its own
    connection (committed), between this process's sync and its limit edit."""
    with other.cursor() as cur:
        queries.sync_declared_queues(cur, {"mail": normalised({"concurrency": concurrency})})


@pytest.mark.usefixtures("declared")
def test_the_settings_an_edit_compares_with_are_this_process_s_not_the_last_syncers(
    other_connection: psycopg.Connection[Any],
) -> None:
    assert set_queue_limits("mail", concurrency=2) is True
    old_deploy_syncs(other_connection, concurrency=3)
    assert Queue.objects.get(name="mail").declared["concurrency"] == 3
    # This process's settings say 5: back to them is the end of the override, not an override
    # of the old deploy's 3.
    assert set_queue_limits("mail", concurrency=5) is True
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.overridden, row.declared["concurrency"]) == (5, False, 5)
    # So the next deploy's settings reach the queue.
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 9}}}):
        sync_declared_queues()
    assert Queue.objects.get(name="mail").concurrency == 9


@pytest.mark.usefixtures("declared")
def test_a_reset_restores_this_process_s_settings_not_the_last_syncers(
    other_connection: psycopg.Connection[Any],
) -> None:
    assert set_queue_limits("mail", concurrency=2) is True
    old_deploy_syncs(other_connection, concurrency=3)
    assert reset_queue_limits("mail") is True
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.overridden, row.declared["concurrency"]) == (5, False, 5)


def test_the_settings_limits_for_a_declared_queue_without_a_row_write_one_not_overridden() -> None:
    # No worker has synced yet: the admin adding the queue with the settings' limits gets a row.
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 5}}}):
        assert set_queue_limits("mail", concurrency=5) is True
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.overridden, row.declared["concurrency"]) == (5, False, 5)


def test_a_rate_as_text_past_the_largest_count_gets_no_hint() -> None:
    """rev26: the hint never suggests a count the same message refuses."""
    with pytest.raises(InvalidJobError) as refused:
        set_queue_limits("mail", rate_limit="99999999999/m")
    assert str(refused.value).endswith("got '99999999999/m'.")
