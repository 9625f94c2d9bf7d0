"""Plain SQL on ``pgjobs_queues`` is a first-class producer: an ``UPDATE`` or ``INSERT`` an operator
writes is an override until reset, as one made in the admin, the CLI or Python is (the trigger
``pgjobs_queue_overridden``, migration 0024)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import IntegrityError, connection
from django.test import override_settings

from django_pgjobs.models import Queue
from django_pgjobs.queues import reset_queue_limits
from django_pgjobs.queues.control import sync_declared_queues

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def declared() -> Iterator[None]:
    queues = {"mail": {"concurrency": 5, "rate_limit": 100, "rate_period": 0.25}}
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": queues}):
        sync_declared_queues()  # a worker starts
        yield


def sql(statement: str) -> None:
    with connection.cursor() as cur:
        cur.execute(statement)


def row(name: str = "mail") -> tuple[Any, ...]:
    q = Queue.objects.get(name=name)
    return q.concurrency, q.paused, q.paused_at is not None, q.overridden


@pytest.mark.usefixtures("declared")
def test_a_limit_changed_with_sql_survives_the_next_worker_start_until_reset() -> None:
    assert row() == (5, False, False, False)  # the settings' own values, durations included
    sql("UPDATE pgjobs_queues SET concurrency = 2 WHERE name = 'mail'")
    assert row() == (2, False, False, True)
    sync_declared_queues()  # the next worker start
    assert row() == (2, False, False, True)
    assert reset_queue_limits("mail") is True
    assert row() == (5, False, False, False)


@pytest.mark.usefixtures("declared")
def test_sql_setting_the_settings_value_again_ends_the_override() -> None:
    sql("UPDATE pgjobs_queues SET concurrency = 2 WHERE name = 'mail'")
    sql("UPDATE pgjobs_queues SET concurrency = 5 WHERE name = 'mail'")
    assert row() == (5, False, False, False)
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 9}}}):
        sync_declared_queues()
    assert row()[0] == 9


@pytest.mark.usefixtures("declared")
def test_pausing_with_a_plain_update_stamps_the_pause_and_is_an_override() -> None:
    sql("UPDATE pgjobs_queues SET paused = true WHERE name = 'mail'")
    assert row() == (5, True, True, True)
    sync_declared_queues()
    assert row() == (5, True, True, True)
    sql("UPDATE pgjobs_queues SET paused = false WHERE name = 'mail'")
    assert row() == (5, False, False, False)


def test_a_row_inserted_with_sql_is_an_override_a_later_declaration_does_not_undo() -> None:
    sql("INSERT INTO pgjobs_queues (name, concurrency, paused) VALUES ('mail', 3, true)")
    assert row() == (3, True, True, True)
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 5}}}):
        sync_declared_queues()
    assert row() == (3, True, True, True)
    # A row inserted with the settings' own values is none.
    sql("INSERT INTO pgjobs_queues (name) VALUES ('plain')")
    assert row("plain") == (None, False, False, False)


@pytest.mark.usefixtures("declared")
def test_overridden_follows_the_row_and_cannot_be_written_over_it() -> None:
    sql("UPDATE pgjobs_queues SET concurrency = 2 WHERE name = 'mail'")
    sql("UPDATE pgjobs_queues SET overridden = false WHERE name = 'mail'")
    assert row()[3] is True
    sql("UPDATE pgjobs_queues SET key_cursor = 'k' WHERE name = 'mail'")
    assert row() == (2, False, False, True)


def test_the_claims_key_cursor_does_not_fire_the_trigger() -> None:
    """Every claim of a partitioned queue moves key_cursor: it costs no trigger call."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT a.attname FROM pg_trigger AS t JOIN pg_attribute AS a "
            "ON a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr) "
            "WHERE t.tgname = 'pgjobs_queue_overridden'"
        )
        columns = {name for (name,) in cur.fetchall()}
    assert "paused" in columns and "declared" in columns
    assert not columns & {"key_cursor", "updated_at"}


@pytest.mark.parametrize(
    "declared",
    [
        '{"rate_limit": 5, "rate_period": "zz"}',
        '{"concurrency": 2, "fair": "maybe"}',
        '{"concurrency": "two"}',
        '{"timeout": [1]}',
        # They cast in SQL, but Python reads a str: the admin's page of the queue failed (500).
        '{"rate_limit": 5, "rate_period": "60"}',
        '{"timeout": "5"}',
        '{"paused": "false", "fair": "false"}',
    ],
)
def test_a_declared_option_of_the_wrong_kind_is_refused_when_written(declared: str) -> None:
    """Compared as rows, the options after the first that differed were never read: the row was
    stored, and every later sync of the settings (pgjobs queues, pause, resume) and the admin's
    page of the queue failed on it (migration 0033)."""
    with pytest.raises(IntegrityError, match="declared holds an option of the wrong kind"):
        sql(f"INSERT INTO pgjobs_queues (name, declared) VALUES ('bad', '{declared}')")
    sql("INSERT INTO pgjobs_queues (name) VALUES ('bad')")
    with pytest.raises(IntegrityError, match="Queue bad: declared holds"):
        sql(f"UPDATE pgjobs_queues SET declared = '{declared}' WHERE name = 'bad'")
    sync_declared_queues()  # what pgjobs queues, pause and resume run first
