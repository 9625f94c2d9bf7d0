"""``pgjobs metrics`` prints the text format as prometheus_client writes it, byte for byte: a
textfile collector reads it, so a queue name holding U+2028 or a tab (plain SQL writes any) must
not split a line or gain an escape the format does not know."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from django_pgjobs.metrics import database_text

pytestmark = pytest.mark.django_db(transaction=True)

ODD = {"mail\u2028box", "tab\there", "esc\x1bape"}


def queues(text: str) -> set[str]:
    return {
        sample.labels["queue"]
        for family in text_string_to_metric_families(text)
        if family.name == "pgjobs_jobs"
        for sample in family.samples
    }


def test_the_command_prints_what_database_text_gives() -> None:
    with connection.cursor() as cur:
        cur.executemany(
            "INSERT INTO pgjobs_job_queue (job_name, queue) VALUES ('test.record', %s)",
            [[name] for name in sorted(ODD)],
        )
    out = io.StringIO()
    call_command("pgjobs", "metrics", stdout=out)
    assert queues(out.getvalue()) == ODD
    assert out.getvalue() == database_text()
