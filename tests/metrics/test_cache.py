"""The database figures are read at most once per PGJOBS["METRICS_CACHE_SECONDS"] per process,
whoever scrapes: within the window a scrape runs no statement at all."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from django_pgjobs import enqueue
from django_pgjobs.metrics.collector import DatabaseCollector
from tests.helpers import in_thread
from tests.metrics.scrapes import Scrape, scrape_command

pytestmark = pytest.mark.django_db(transaction=True)


def reads(captured: CaptureQueriesContext) -> list[str]:
    """The statements that read the figures: all but the command's check that our tables are
    there."""
    return [q["sql"] for q in captured.captured_queries if "to_regclass" not in q["sql"]]


def test_a_second_scrape_within_the_window_runs_no_statement() -> None:
    enqueue("test.record", queue="mail")
    with CaptureQueriesContext(connection) as first:
        assert scrape_command()("pgjobs_jobs", queue="mail", state="due") == 1
    assert len(reads(first)) > 0
    enqueue("test.record", queue="mail")
    with CaptureQueriesContext(connection) as second:
        again = scrape_command()
    assert reads(second) == []
    # The figures of the first read, as they were: the new job shows after the window.
    assert again("pgjobs_jobs", queue="mail", state="due") == 1


def test_with_no_window_every_scrape_reads() -> None:
    enqueue("test.record", queue="mail")
    with override_settings(PGJOBS={"METRICS_CACHE_SECONDS": 0}):
        scrape_command()
        enqueue("test.record", queue="mail")
        with CaptureQueriesContext(connection) as second:
            assert scrape_command()("pgjobs_jobs", queue="mail", state="due") == 2
    assert len(reads(second)) > 0


def test_the_command_and_the_view_share_the_figures(client: Client) -> None:
    enqueue("test.record", queue="mail")
    scrape_command()
    client.force_login(User.objects.create_superuser("ops"))  # staff, with every view permission
    with CaptureQueriesContext(connection) as view:
        response = client.get("/pgjobs/metrics")
    # The session and the user were read; the queue was not.
    assert [sql for sql in reads(view) if "pgjobs_" in sql] == []
    assert Scrape(response.content.decode())("pgjobs_jobs", queue="mail", state="due") == 1


def test_scrapers_arriving_together_wait_for_one_read() -> None:
    """Eight threads scrape at once on their own connections: one of them reads the database,
    the others get its figures."""
    enqueue("test.record", queue="mail")
    start = threading.Barrier(8)
    reads: list[int] = []
    seen: list[float | None] = []
    lock = threading.Lock()

    def scrape() -> None:
        start.wait()
        with CaptureQueriesContext(connection) as queries:
            families = list(DatabaseCollector().collect())
        jobs = next(f for f in families if f.name == "pgjobs_jobs")
        with lock:
            reads.append(len(queries))
            seen.extend(s.value for s in jobs.samples if s.labels["state"] == "due")

    threads = [in_thread(scrape) for _ in range(8)]
    for thread in threads:
        thread.join(timeout=30)
    assert len(reads) == 8
    assert sorted(reads)[:7] == [0] * 7 and sorted(reads)[7] > 0
    assert seen == [1] * 8
