"""explain_job by a short id (the 8 characters the admin shows, or any unique prefix of at least
4 hex digits) or a dead letter's."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from django_pgjobs import enqueue, explain_job
from django_pgjobs.exceptions import JobNotFound
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
    said = explain_job(str(job_id)[:8])
    assert said.job_id == job_id
    assert explain_job(str(job_id)[:8].upper()).job_id == job_id


def test_four_hex_digits_are_the_shortest_prefix_looked_up() -> None:
    job_id = job_with_id("9a8b7c6d-0000-4000-8000-000000000001")
    assert explain_job("9a8b").job_id == job_id
    with pytest.raises(JobNotFound, match="at least 4 of its first hex digits"):
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
        ("fedcba98", "No job or dead letter has an id starting with 'fedcba98'"),
        ("abc", "'abc' is not a job id: give the UUID, or at least 4"),
        ("nope-nope", "'nope-nope' is not a job id"),
    ],
)
def test_an_unknown_or_malformed_prefix_is_a_clear_error(given: str, error: str) -> None:
    job_with_id("12345678-0000-4000-8000-000000000001")
    with pytest.raises(JobNotFound, match=error):
        explain_job(given)
