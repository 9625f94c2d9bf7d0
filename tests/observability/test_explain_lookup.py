"""explain_job by a short id (the 8 characters the admin shows, or any unique prefix of at least
4 hex digits) or a dead letter's."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from django_pgjobs import enqueue, explain_job
from django_pgjobs.exceptions import JobNotFound
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.observability.explain import Blocker

pytestmark = pytest.mark.django_db(transaction=True)


def job_with_id(job_id: str, table: str = "pgjobs_job_queue") -> uuid.UUID:
    """A row with a chosen id, written by plain SQL (prefixes need ids that share one)."""
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (id, job_name, queue) VALUES (%s, 'test.record', 'q') "
            "RETURNING id",
            [job_id],
        )
        return uuid.UUID(str(cur.fetchone()[0]))


def test_a_short_id_names_its_job() -> None:
    job_id = enqueue("test.record")
    said = explain_job(short_id(job_id))
    assert said.job_id == job_id
    assert explain_job(short_id(job_id).upper()).job_id == job_id


def test_four_hex_digits_are_the_shortest_prefix_looked_up() -> None:
    job_id = job_with_id("9a8b7c6d-0000-4000-8000-000000000001")
    assert explain_job("9a8b").job_id == job_id
    with pytest.raises(JobNotFound, match="at least 4 of its first or last hex digits"):
        explain_job("9a8")


def test_a_short_id_names_a_dead_letter_too() -> None:
    dead = job_with_id("abcdef01-0000-4000-8000-000000000001", "pgjobs_failed_jobs")
    said = explain_job("abcdef01")
    assert (said.job_id, said.status, said.blocker) == (dead, "dead", Blocker.FINISHED)


def test_an_ambiguous_prefix_names_two_of_its_ids() -> None:
    first = job_with_id("12345678-0000-4000-8000-000000000001")
    second = job_with_id("12345678-1000-4000-8000-000000000002")
    with pytest.raises(JobNotFound, match="More than one job") as caught:
        explain_job("12345678")
    assert str(first) in str(caught.value) and str(second) in str(caught.value)
    assert explain_job("12345678-0").job_id == first


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("fedcba98", "No job or dead letter has an id starting or ending with 'fedcba98'"),
        ("abc", "'abc' is not a job id: give the UUID, or at least 4"),
        ("nope-nope", "'nope-nope' is not a job id"),
    ],
)
def test_an_unknown_or_malformed_prefix_is_a_clear_error(given: str, error: str) -> None:
    job_with_id("12345678-0000-4000-8000-000000000001")
    with pytest.raises(JobNotFound, match=error):
        explain_job(given)


def test_an_ids_end_names_its_job_when_no_id_starts_with_it() -> None:
    """The admin shows a job id's end (its start is the time it was made: version 7)."""
    job_id = job_with_id("01a24700-0000-7000-8000-00000000c0de")
    assert explain_job("c0de").job_id == job_id
    assert explain_job("0000-0000c0de").job_id == job_id  # dashes ignored, as in a prefix
    dead = job_with_id("01a24700-0000-7000-8000-0000000dead1", "pgjobs_failed_jobs")
    assert explain_job("dead1").job_id == dead


def test_digits_one_id_starts_with_and_another_ends_with_name_neither() -> None:
    """The admin's short id of one job (its end) can be another's start (a job enqueued
    before ids were ordered by time, or in the minute the digits spell): neither is chosen
    (a review found `pgjobs cancel` acting on the other)."""
    job_with_id("beef0000-0000-4000-8000-000000000001")
    job_with_id("01a24700-0000-7000-8000-00000000beef")
    with pytest.raises(JobNotFound, match="More than one job or dead letter has an id starting"):
        explain_job("beef")
    assert explain_job("beef0").job_id == uuid.UUID("beef0000-0000-4000-8000-000000000001")


def test_an_end_more_than_one_id_has_is_ambiguous() -> None:
    job_with_id("01a24700-0000-7000-8000-000000abc123")
    job_with_id("01a24701-0000-7000-8000-000000abc123", "pgjobs_failed_jobs")
    with pytest.raises(JobNotFound, match="More than one job or dead letter has an id start"):
        explain_job("abc123")
    with pytest.raises(JobNotFound, match="No job or dead letter has an id starting or ending"):
        explain_job("abc124")
