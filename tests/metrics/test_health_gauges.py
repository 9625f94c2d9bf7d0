"""The PostgreSQL health gauges in a scrape: a table's known dead rows and free space, its last
vacuum and analyse, the session holding the xmin horizon, a logical slot holding the catalogs',
the multixact age, and the warnings in force, parsed with prometheus_client's parser."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs import enqueue_many
from django_pgjobs.models import Job
from django_pgjobs.observability.health import database_health
from django_pgjobs.observability.health_warnings import WARNING_KINDS
from tests.helpers import second_connection
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


@override_settings(PGJOBS={"METRICS_CACHE_SECONDS": 0})
def test_bloat_and_the_last_analyze_appear_once_the_table_is_analysed(quiet_table: str) -> None:
    enqueue_many("test.record", [{"n": n} for n in range(8000)])
    assert scrape_command()("pgjobs_table_bloat_bytes", table=quiet_table) is None
    before = time.time()
    sql(f"ANALYZE {quiet_table}")
    packed = scrape_command()
    assert (packed("pgjobs_table_last_analyze_timestamp_seconds", table=quiet_table) or 0) >= (
        before - 1
    )
    size, bloat = (packed(name, table=quiet_table) for name in (
        "pgjobs_table_size_bytes", "pgjobs_table_bloat_bytes"
    ))  # fmt: skip
    assert size is not None and bloat is not None and 0 <= bloat < 0.1 * size
    # Nine rows in ten deleted from every page: vacuum frees the space but keeps the pages.
    sql(f"DELETE FROM {quiet_table} WHERE (ctid::text::point)[1]::int % 10 <> 0")
    sql(f"VACUUM ANALYZE {quiet_table}")
    emptied = scrape_command()
    [figures] = [t for t in database_health().tables if t.name == quiet_table]
    assert emptied("pgjobs_table_bloat_bytes", table=quiet_table) == figures.bloat_bytes
    assert (figures.bloat_bytes or 0) > 0.8 * figures.heap_bytes


@override_settings(PGJOBS={"METRICS_CACHE_SECONDS": 0})
def test_the_multixact_age_is_the_database_s_and_grows_with_a_new_multixact() -> None:
    job_id = enqueue_many("test.record", [{}])[0]
    before = scrape_command()("pgjobs_database_multixact_age")
    assert before == database_figure("mxid_age(datminmxid)")
    # Two transactions share-locking one row: its lock becomes a new multixact.
    with second_connection(autocommit=False) as one, second_connection(autocommit=False) as two:
        for conn in (one, two):
            conn.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR SHARE", [job_id])
        one.rollback()
        two.rollback()
    after = scrape_command()("pgjobs_database_multixact_age")
    assert after == database_figure("mxid_age(datminmxid)")
    assert (after or 0) >= (before or 0) + 1


def test_a_real_logical_slot_holds_back_the_catalogs_and_is_not_our_horizon() -> None:
    """A logical slot keeps a catalog_xmin (never an xmin of ours): listed, warned about past
    XMIN_AGE_TRANSACTIONS, never the horizon of our tables' dead rows."""
    with connection.cursor() as cur:
        cur.execute("SHOW wal_level")
        if cur.fetchone()[0] != "logical":
            pytest.skip(
                "the server runs without wal_level=logical, which a logical replication slot "
                "needs (changing it takes a server restart)"
            )
    slot = f"pgjobs_test_{connection.settings_dict['NAME']}_{uuid.uuid4().hex[:8]}"[:63]
    with connection.cursor() as cur:
        # Creating it waits for the transactions running on the whole server to end.
        cur.execute("SET statement_timeout = '60s'")
        cur.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", [slot])
        cur.execute("RESET statement_timeout")
    try:
        with second_connection(autocommit=True) as other:
            for _ in range(3):  # transactions begun after the slot's catalog_xmin
                other.execute("SELECT txid_current()")
        with override_settings(
            PGJOBS={"METRICS_CACHE_SECONDS": 0, "HEALTH": {"XMIN_AGE_TRANSACTIONS": 3}}
        ):
            health = database_health()
            scrape = scrape_command()
        [held] = [h for h in health.holders if h.name == slot]
        assert (held.kind, held.backend_type, held.active, held.catalogs_only) == (
            "replication slot", "logical", False, True
        )  # fmt: skip
        assert held.xmin_age >= 3 and held.seconds is None
        assert health.horizon is None or health.horizon.name != slot
        [warning] = [w for w in health.warnings if slot in w.message]
        assert "system catalogs" in warning.message
        assert warning.action.endswith(f"SELECT pg_drop_replication_slot('{slot}')")
        assert (scrape("pgjobs_health_warnings", kind="xmin_horizon") or 0) >= 1
        horizon = scrape("pgjobs_xmin_horizon_age_transactions")
        assert horizon == (health.horizon.xmin_age if health.horizon else 0)
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_drop_replication_slot(%s)", [slot])


def sql(statement: str) -> None:
    with connection.cursor() as cur:
        cur.execute(statement)


def database_figure(expression: str) -> float:
    with connection.cursor() as cur:
        cur.execute(f"SELECT {expression} FROM pg_database WHERE datname = current_database()")
        return float(cur.fetchone()[0])
