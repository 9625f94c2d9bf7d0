"""The database gauges' bounds never drop a queue silently: queues are bounded first (the first
MAX_SERIES, declared ones first, then those with work, then those known only from finished
jobs, each group by name and counted whatever its priorities), the rest summed into queue=""
(a name no queue can have), and pgjobs_metrics_truncated says which metric was cut. The bounds
are made small here so that a handful of rows reaches them; the statements are the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs import enqueue
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.metrics import readings
from django_pgjobs.metrics.readings import OTHER
from django_pgjobs.models import Schedule
from django_pgjobs.queues import set_queue_limits
from tests.metrics.scrapes import Scrape, scrape_command

pytestmark = pytest.mark.django_db(transaction=True)


def sql(statement: str, params: Any = None) -> None:
    with connection.cursor() as cur:
        cur.execute(statement, params)


def pending(queue: str, *, priorities: int = 1, each: int = 1, later: bool = False) -> None:
    """``each`` jobs at each of ``priorities`` priorities (0, 1, ...), due now or in an hour."""
    sql(
        "INSERT INTO pgjobs_job_queue (job_name, queue, priority, scheduled_for) "
        "SELECT 'test.record', %s, (i %% %s)::smallint, now() + %s "
        "FROM generate_series(0, %s - 1) AS i",
        [queue, priorities, timedelta(hours=1 if later else 0), priorities * each],
    )


def truncated(scrape: Scrape) -> set[str]:
    flags = scrape.by("pgjobs_metrics_truncated", "metric")
    return {name for name, value in flags.items() if value}


@pytest.fixture
def three_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most 3 queues, 6 (queue, priority) pairs counted one by one, at least 1 each."""
    monkeypatch.setattr(readings, "MAX_SERIES", 3)
    monkeypatch.setattr(readings, "MAX_PAIRS", 6)
    monkeypatch.setattr(readings, "PRIORITIES_PER_QUEUE", 1)


@pytest.mark.usefixtures("three_queues")
def test_a_queue_of_many_priorities_does_not_push_the_later_queues_out() -> None:
    # Ten priorities in "a" once took every pair the read allowed, and "b" and "c" vanished.
    pending("a", priorities=10, each=2)
    pending("a", priorities=3, later=True)
    pending("b")
    pending("c", later=True)
    scrape = scrape_command()
    assert scrape.by("pgjobs_jobs", "queue", state="due") == {"a": 20, "b": 1, "c": 0}
    assert scrape.by("pgjobs_jobs", "queue", state="scheduled") == {"a": 3, "b": 0, "c": 1}
    # Exact: the priorities past "a"'s share were read whole, nothing was cut.
    assert truncated(scrape) == set()
    assert scrape.by("pgjobs_metrics_truncated", "metric").keys() == set(
        readings.QUEUE_FAMILIES + readings.SCHEDULE_FAMILIES
    )


@pytest.mark.usefixtures("three_queues")
def test_the_queues_past_the_bound_are_summed_into_other() -> None:
    set_queue_limits("a0", concurrency=2)  # a row and no jobs: a queue all the same
    for queue in ("a", "b", "c"):
        pending(queue)
    pending("d", each=2)
    pending("e", priorities=4, later=True)
    sql(
        "INSERT INTO pgjobs_failed_jobs (job_name, queue) VALUES "
        "('test.fail', 'a'), ('test.fail', 'd'), ('test.fail', 'zz')"
    )
    set_queue_limits("e", concurrency=7)
    sql("UPDATE pgjobs_job_queue SET scheduled_for = now() - interval '1 hour' WHERE queue = 'd'")

    scrape = scrape_command()
    due = scrape.by("pgjobs_jobs", "queue", state="due")
    assert due == {"a": 1, "a0": 0, "b": 1, "": 3}  # c, d and e
    assert scrape("pgjobs_jobs", queue="", state="scheduled") == 4
    assert scrape.by("pgjobs_dead_letters", "queue") == {"a": 1, "a0": 0, "b": 0, "": 2}
    assert scrape("pgjobs_oldest_due_job_age_seconds", queue="") >= 3600  # type: ignore[operator]
    # Limits of the summed queues mean nothing added up: left out, and said to be.
    assert scrape.by("pgjobs_queue_concurrency_limit", "queue") == {"a0": 2}
    assert truncated(scrape) == set(readings.QUEUE_FAMILIES)


@pytest.mark.usefixtures("three_queues")
def test_priorities_past_a_queues_share_beyond_the_cap_are_said_to_be_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readings, "COUNT_CAP", 5)
    pending("a", priorities=10, each=2)  # two priorities counted, eight more past the share
    pending("b")
    pending("c")
    scrape = scrape_command()
    assert scrape("pgjobs_jobs", queue="a", state="due") == 5
    assert truncated(scrape) == {"pgjobs_jobs", "pgjobs_oldest_due_job_age_seconds"}


def test_schedules_past_the_bound_are_left_out_and_said_to_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readings, "MAX_SERIES", 2)
    for name in ("s1", "s2", "s3"):
        Schedule.objects.create(name=name, cron="0 2 * * *", job_name="test.record")
    enqueue("test.record", queue="mail")
    scrape = scrape_command()
    assert scrape.by("pgjobs_schedule_enabled", "schedule") == {"s1": 1, "s2": 1}
    assert truncated(scrape) == set(readings.SCHEDULE_FAMILIES)


# Collations where 'a' < 'b' < 'c' < 'Z': ICU's where the server has ICU, else the C
# library's English locale (a server built without ICU, as the embedded one may be).
_ENGLISH = ("en-US-x-icu", "und-x-icu", "en_US.utf8", "en_US.UTF-8", "en_US")


def english_collation() -> str | None:
    """The first of _ENGLISH this server has for UTF8 and that sorts 'a' before 'Z'."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT collname FROM pg_collation WHERE collname = ANY(%s)"
            " AND collencoding IN (-1, pg_char_to_encoding('UTF8'))",
            [list(_ENGLISH)],
        )
        found = {name for (name,) in cur.fetchall()}
        for name in (name for name in _ENGLISH if name in found):
            cur.execute(f"SELECT 'a' < ('Z' COLLATE \"{name}\")")
            if cur.fetchone() == (True,):
                return name
    return None


@pytest.fixture
def english_queue_names() -> Iterator[None]:
    """pgjobs_job_queue.queue in an English collation, where 'a' < 'b' < 'c' < 'Z' (in code
    points, Python's order, 'Z' comes first); the column's own again afterwards."""
    collation = english_collation()
    if collation is None:
        pytest.skip(f"this server has none of the collations {', '.join(_ENGLISH)}")
    sql(f'ALTER TABLE pgjobs_job_queue ALTER COLUMN queue TYPE varchar(200) COLLATE "{collation}"')
    try:
        yield
    finally:
        sql('ALTER TABLE pgjobs_job_queue ALTER COLUMN queue TYPE varchar(200) COLLATE "default"')


@pytest.mark.usefixtures("three_queues", "english_queue_names")
def test_a_queue_the_read_summed_is_never_exported_as_empty_whatever_the_collation() -> None:
    # The skip scan counts the first queues in the column's collation (a, b, c) and sums Z's
    # pending job; Z's dead letter lists it too, and in Python's order it came first: it was
    # exported on its own with due=0, its due job hidden in the sum.
    for queue in ("Z", "a", "b", "c"):
        pending(queue)
    sql("INSERT INTO pgjobs_failed_jobs (job_name, queue) VALUES ('test.fail', 'Z')")
    scrape = scrape_command()
    assert scrape.by("pgjobs_jobs", "queue", state="due") == {"a": 1, "b": 1, "c": 1, "": 1}


@pytest.mark.usefixtures("three_queues")
def test_the_sum_can_never_be_taken_for_a_queue() -> None:
    # "_other" was the sum's label, and a queue could be named so: now it is a queue like any.
    with pytest.raises(InvalidJobError):
        enqueue("test.record", queue=OTHER)
    for queue in ("_other", "a", "b", "c"):
        pending(queue)
    scrape = scrape_command()
    assert scrape.by("pgjobs_jobs", "queue", state="due") == {"_other": 1, "a": 1, "b": 1, "": 1}


@pytest.mark.usefixtures("three_queues")
def test_declared_queues_get_their_own_series_before_the_names_that_come_first() -> None:
    # "zz" in the settings and "yy" with a row: named by an operator, never the ones summed.
    set_queue_limits("yy", concurrency=3)
    sql("INSERT INTO pgjobs_failed_jobs (job_name, queue) VALUES ('test.fail', 'zz')")
    for queue in ("a", "b", "c"):
        pending(queue)
    with override_settings(PGJOBS={"QUEUES": {"zz": {"concurrency": 2}}}):
        scrape = scrape_command()
    assert scrape.by("pgjobs_jobs", "queue", state="due") == {"a": 1, "yy": 0, "zz": 0, "": 2}
    assert scrape.by("pgjobs_dead_letters", "queue") == {"a": 0, "yy": 0, "zz": 1, "": 0}


@pytest.mark.usefixtures("three_queues")
def test_queues_known_only_from_finished_jobs_never_push_out_a_queue_with_work() -> None:
    # Exported as zeros so a drained queue keeps its series, they were sorted by name with the
    # others: a0..a3 took the series, and p0 and p1, with jobs, were summed into queue="".
    sql(
        "INSERT INTO pgjobs_job_queue (job_name, queue, status, completed_at) "
        "SELECT 'test.record', 'a' || i, 'completed', now() FROM generate_series(0, 3) AS i"
    )
    pending("p0")
    sql("INSERT INTO pgjobs_failed_jobs (job_name, queue) VALUES ('test.fail', 'p1')")
    scrape = scrape_command()
    assert scrape.by("pgjobs_jobs", "queue", state="due") == {"p0": 1, "p1": 0, "a0": 0, "": 0}
    assert scrape.by("pgjobs_dead_letters", "queue") == {"p0": 0, "p1": 1, "a0": 0, "": 0}
    assert truncated(scrape) == set(readings.QUEUE_FAMILIES)  # a1..a3 summed, and said to be
