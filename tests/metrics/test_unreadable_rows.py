"""What the database gauges' read meets that it cannot change: a table an operator locks, a row
written by plain SQL that no reader expects. A scrape gives up within its statement timeout,
and a worker's port serves the worker's own metrics whatever the read met."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connections
from prometheus_client import CollectorRegistry

from django_pgjobs.metrics import database_text
from django_pgjobs.metrics.collector import DatabaseCollector
from django_pgjobs.metrics.exporter import start_exporter
from django_pgjobs.metrics.worker import WorkerMetrics
from django_pgjobs.models import Schedule
from tests.helpers import add_schedule, second_connection
from tests.metrics.test_exporter import fetch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def locked_table() -> Iterator[psycopg.Connection[Any]]:
    """A table of ours the gauges do not count from, held as VACUUM FULL or a migration holds
    it (ACCESS EXCLUSIVE): the health read's sizes wait for it."""
    locker = second_connection(autocommit=False)
    locker.execute("LOCK TABLE pgjobs_workflow_steps IN ACCESS EXCLUSIVE MODE")
    yield locker
    locker.rollback()
    locker.close()


@pytest.mark.usefixtures("locked_table")
def test_a_read_gives_up_within_its_statement_timeout_while_a_table_is_locked() -> None:
    """It waited for as long as the lock was held, holding the process's collector lock: every
    later scrape of the process queued behind it (as reviewed)."""
    done: list[object] = []

    def scrape() -> None:
        try:
            done.append(database_text())
        except Exception as error:
            done.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=scrape)
    thread.start()
    thread.join(15)  # the read's statements give up after 5 s
    assert not thread.is_alive(), "the read still waited for the locked table"
    [outcome] = done
    assert isinstance(outcome, Exception) and "statement timeout" in str(outcome)


def nightly_in_a_zone_directory() -> None:
    add_schedule("nightly", "0 3 * * *")
    # As an operator's UPDATE could leave it: a timezone that names a tzdata directory, and
    # next_run_at cleared for a scheduler to compute.
    Schedule.objects.filter(name="nightly").update(timezone="Europe", next_run_at=None)


def test_a_schedule_whose_timezone_is_a_zone_directory_has_no_next_fire() -> None:
    """ZoneInfo('Europe') raises IsADirectoryError, which failed every read."""
    nightly_in_a_zone_directory()
    text = database_text()
    assert 'pgjobs_schedule_enabled{schedule="nightly"} 1.0' in text
    assert 'pgjobs_schedule_next_fire_timestamp_seconds{schedule="nightly"}' not in text
    assert list(DatabaseCollector(quiet=True, close_connection=True).collect())


def test_a_workers_port_serves_its_own_metrics_whatever_the_read_met(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unexpected(*args: Any, **kwargs: Any) -> Any:
        raise LookupError("a reader met what it did not expect")

    monkeypatch.setattr("django_pgjobs.metrics.collector.read_figures", unexpected)
    exporter = start_exporter(WorkerMetrics(), port=0, registry=CollectorRegistry())
    try:
        scrape = fetch(exporter.url)  # it failed with a 500, the worker's own metrics with it
    finally:
        exporter.close()
    assert scrape("pgjobs_worker_slots") is not None
