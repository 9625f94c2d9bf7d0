"""The PostgreSQL health gauges in a scrape: a table's known dead rows, the session holding the
xmin horizon, and the warnings in force, parsed with prometheus_client's parser."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs import enqueue_many
from django_pgjobs.models import Job
from django_pgjobs.observability.health_warnings import WARNING_KINDS
from tests.metrics.scrapes import scrape_command
from tests.observability.conftest import flush_statistics, quiet_table

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["quiet_table"]  # the fixture, used by name


@override_settings(PGJOBS={"METRICS_CACHE_SECONDS": 0, "HEALTH": {"DEAD_ROWS": 150}})
def test_a_tables_rows_sizes_and_dead_rows_warning(quiet_table: str) -> None:
    enqueue_many("test.record", [{}] * 300)
    Job.objects.filter(id__in=list(Job.objects.values_list("id", flat=True)[:200])).delete()
    flush_statistics()

    scrape = scrape_command()

    assert scrape("pgjobs_table_live_rows", table=quiet_table) == 100
    assert scrape("pgjobs_table_dead_rows", table=quiet_table) == 200
    assert (scrape("pgjobs_table_size_bytes", table=quiet_table) or 0) > 0
    assert (scrape("pgjobs_table_index_size_bytes", table=quiet_table) or 0) > 0
    assert (scrape("pgjobs_table_xid_age", table=quiet_table) or 0) > 0
    assert scrape.by("pgjobs_health_warnings", "kind") == {
        kind: (1 if kind == "dead_rows" else 0) for kind in WARNING_KINDS
    } | {
        "autovacuum_off": 1  # the server's, or quiet_table's: off for the job table
    }
    assert (scrape("pgjobs_database_xid_age") or 0) >= (scrape("pgjobs_table_xid_age",
            table=quiet_table) or 0)  # fmt: skip
    assert scrape("pgjobs_server_oldest_xid_age") is not None

    before = time.time()
    with connection.cursor() as cur:
        cur.execute(f"VACUUM {quiet_table}")
    vacuumed = scrape_command()
    assert (vacuumed("pgjobs_table_last_vacuum_timestamp_seconds", table=quiet_table) or 0) >= (
        before - 1
    )
    assert vacuumed("pgjobs_table_dead_rows", table=quiet_table) == 0
    assert vacuumed("pgjobs_health_warnings", kind="dead_rows") == 0


@override_settings(PGJOBS={"METRICS_CACHE_SECONDS": 0, "HEALTH": {"XMIN_AGE_SECONDS": 3600}})
def test_the_session_holding_the_horizon_is_its_age(holder: psycopg.Connection[Any]) -> None:
    with psycopg.connect(holder.info.dsn, autocommit=True) as other:
        for _ in range(3):  # transactions begun after the holder's
            other.execute("SELECT txid_current()")

    scrape = scrape_command()

    assert (scrape("pgjobs_xmin_horizon_age_transactions") or 0) >= 3
    assert (scrape("pgjobs_xmin_horizon_age_seconds") or -1) >= 0
    assert scrape("pgjobs_health_warnings", kind="xmin_horizon") == 0
