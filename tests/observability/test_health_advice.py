"""The dead rows' advice on a real server: a holder of this database is named as their cause only
once a vacuum that ran after it began has left them; one that began after the rows died is not
blamed (a VACUUM then removes them); a session of another database is never named, as since
PostgreSQL 14 it holds back nothing here by its snapshot; and a table's dead share is shown by
the table's size, not by its dead rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import override_settings
from psycopg.conninfo import make_conninfo

from django_pgjobs import enqueue_many
from django_pgjobs.admin.health import health_context
from django_pgjobs.models import Job
from django_pgjobs.observability.health import Health, database_health
from django_pgjobs.observability.health_report import health_report
from tests.helpers import database_conninfo, second_connection, wait_for
from tests.observability.conftest import flush_statistics
from tests.observability.test_health import sql, table

pytestmark = pytest.mark.django_db(transaction=True)
# The advice's thresholds for 40 dead rows of 40.
FORTY = {"HEALTH": {"DEAD_ROWS": 40, "DEAD_RATIO": 1}}


def repeatable_read(conninfo: str | None = None) -> psycopg.Connection[Any]:
    """A session in a REPEATABLE READ transaction that ran one query: its snapshot (no
    transaction ID) keeps every row deleted after it, as a report or a long read does."""
    conn = psycopg.connect(conninfo or database_conninfo(), autocommit=False)
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT 1")
    return conn


@pytest.fixture
def snapshot_holder() -> Iterator[psycopg.Connection[Any]]:
    conn = repeatable_read()
    yield conn
    conn.close()


def another_database() -> str:
    return make_conninfo(database_conninfo(), dbname="postgres")


def kill_forty_rows() -> None:
    enqueue_many("test.record", [{}] * 40)
    Job.objects.all().delete()
    flush_statistics()  # counted before the VACUUM, which would otherwise be undone by them


def autovacuum_on() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('autovacuum')::bool")
        return bool(cur.fetchone()[0])


def dead_rows_advice(health: Health) -> str:
    (warning,) = [w for w in health.warnings if w.kind == "dead_rows"]
    return warning.action


def test_a_snapshot_in_another_database_holds_back_nothing_here(quiet_table: str) -> None:
    # PostgreSQL 14+: other databases' sessions count for the shared catalogs only.
    elsewhere = repeatable_read(another_database())
    try:
        assert elsewhere.execute(
            "SELECT backend_xmin IS NOT NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone() == (True,)
        kill_forty_rows()  # after its snapshot
        with override_settings(PGJOBS=FORTY):
            health = database_health()
        assert elsewhere.info.backend_pid not in [h.pid for h in health.holders]
        assert str(elsewhere.info.backend_pid) not in dead_rows_advice(health)
        sql(f"VACUUM {quiet_table}")
        assert table(database_health(), quiet_table).dead_rows == 0
    finally:
        elsewhere.close()


def test_a_holder_older_than_the_rows_is_named_once_a_vacuum_has_left_them(
    quiet_table: str, snapshot_holder: psycopg.Connection[Any]
) -> None:
    pid = snapshot_holder.info.backend_pid
    kill_forty_rows()  # after the holder's snapshot
    with override_settings(PGJOBS=FORTY):
        before = dead_rows_advice(database_health())
    # No vacuum since it began: not blamed yet, and autovacuum (off for quiet_table) is advised.
    # (quiet_table turns it off for the table; some servers, this one perhaps, for all.)
    assert before.startswith(
        "autovacuum is off for this table"
        if autovacuum_on()
        else "autovacuum is off on this server"
    )
    assert before.endswith(f"began: if vacuum runs and rows remain, pid {pid} is why")
    assert "pg_terminate_backend" not in before

    sql(f"VACUUM {quiet_table}")
    with override_settings(PGJOBS=FORTY):
        health = database_health()
    assert table(health, quiet_table).dead_rows == 40  # the vacuum had to leave them
    advice = dead_rows_advice(health)
    # Younger than the horizon's thresholds, it has no warning of its own; the advice names it,
    # says how to end it, and still says autovacuum is off for the table.
    assert not [w for w in health.warnings if w.kind == "xmin_horizon"]
    assert advice.startswith("vacuum at ")
    assert f"left them: it ran after the session pid {pid} (user " in advice
    assert ", idle in transaction, transaction open 0:00:" in advice
    assert f"end it (SELECT pg_terminate_backend({pid}))" in advice
    assert advice.endswith(
        f"VACUUM {quiet_table} now" if autovacuum_on() else f"VACUUM {quiet_table}"
    )

    # Once it ends, nothing holds the horizon: the advice is about autovacuum alone.
    snapshot_holder.rollback()
    with override_settings(PGJOBS=FORTY):
        assert dead_rows_advice(database_health()).startswith("autovacuum is off")


def test_a_holder_that_began_after_the_rows_died_is_not_blamed_and_vacuum_removes_them(
    quiet_table: str,
) -> None:
    kill_forty_rows()
    # Its snapshot's xmin is the server's oldest running XID: wait until every transaction
    # older than the deletes has ended, or (another database's) it would hold them (see below).
    with second_connection() as conn:
        (after,) = conn.execute("SELECT pg_current_xact_id()::xid::text").fetchone()  # type: ignore[misc]
    try:
        wait_for(lambda: oldest_running_xid_is(after), what="older transactions to end")
    except AssertionError:
        pytest.skip("another session of the server keeps an older transaction open")
    young = repeatable_read()
    try:
        with override_settings(PGJOBS=FORTY):
            health = database_health()
        pid = young.info.backend_pid
        assert health.horizon is not None and health.horizon.pid == pid
        advice = dead_rows_advice(health)
        assert advice.startswith("autovacuum is off")
        assert f"; vacuum has not run since the session pid {pid} (" in advice
        assert "pg_terminate_backend" not in advice
        sql(f"VACUUM {quiet_table}")  # with it still open
        with override_settings(PGJOBS=FORTY):
            health = database_health()
        assert table(health, quiet_table).dead_rows == 0
        assert not [w for w in health.warnings if w.kind == "dead_rows"]
    finally:
        young.close()


def test_a_transaction_of_another_database_is_never_named_for_our_dead_rows(
    quiet_table: str,
) -> None:
    elsewhere = psycopg.connect(another_database(), autocommit=False)
    here = second_connection(autocommit=False)
    here.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    pids = elsewhere.info.backend_pid, here.info.backend_pid
    try:
        elsewhere.execute("SET application_name = 'report'")
        (xid,) = elsewhere.execute("SELECT pg_current_xact_id()::xid::text").fetchone()  # type: ignore[misc]
        # A snapshot's xmin is the server's oldest running XID: wait until that is this one.
        try:
            wait_for(lambda: oldest_running_xid_is(xid), what="the oldest running XID")
        except AssertionError:
            pytest.skip("another session of the server keeps an older transaction open")
        with override_settings(PGJOBS=FORTY):
            alone = database_health()
        # PostgreSQL ignores another database's sessions here; nothing here is held at it yet.
        assert pids[0] not in [h.pid for h in alone.holders]
        here.execute("SELECT 1")  # a snapshot here: its xmin is the other database's XID
        kill_forty_rows()
        sql(f"VACUUM {quiet_table}")
        thresholds = {"HEALTH": {**FORTY["HEALTH"], "XMIN_AGE_SECONDS": 0}}
        with override_settings(PGJOBS=thresholds):
            health = database_health()
    finally:
        here.close()
        elsewhere.close()
    # The session here holds the horizon; the transaction elsewhere is listed after it, as why.
    held, cause = health.holders[:2]
    assert (held.pid, held.elsewhere) == (pids[1], False)
    assert (cause.pid, cause.database, cause.elsewhere) == (pids[0], "postgres", True)
    assert cause.xmin_age == held.xmin_age and health.horizon == held
    advice = dead_rows_advice(health)
    assert f"pid {pids[1]} (" in advice and f"pg_terminate_backend({pids[1]})" in advice
    assert str(pids[0]) not in advice
    warning = next(w for w in health.warnings if w.subject == f"pid {pids[0]}")
    assert f"in pid {pids[0]} (database 'postgres', user " in warning.message
    assert "pg_terminate_backend" not in warning.action
    lines = [line for line, _ in health_report(health)]
    assert any(line.startswith(f"  another database's session pid {pids[0]} (") for line in lines)


def oldest_running_xid_is(xid: str) -> bool:
    """No transaction of the server (sessions, prepared) is older than ``xid``."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT NOT EXISTS (SELECT FROM pg_stat_activity"
            "                   WHERE age(backend_xid) > age(%(xid)s::xid))"
            "   AND NOT EXISTS (SELECT FROM pg_prepared_xacts"
            "                   WHERE age(transaction) > age(%(xid)s::xid))",
            {"xid": xid},
        )
        return bool(cur.fetchone()[0])


def job_table_cells(health: Health, name: str) -> list[str]:
    (line,) = [line for line, _ in health_report(health) if line.startswith(f"{name} ")]
    return line.split()[1:4]


def test_the_dead_share_is_shown_by_the_table_s_rows_not_its_dead_rows(quiet_table: str) -> None:
    enqueue_many("test.record", [{}] * 4)
    Job.objects.filter(id__in=list(Job.objects.values_list("id", flat=True)[:3])).delete()
    flush_statistics()
    health = database_health()  # the default DEAD_ROWS: 10,000
    assert job_table_cells(health, quiet_table) == ["1", "3", "-"]
    lines = [line for line, _ in health_report(health)]
    assert any(
        line.startswith('dead %: "-" for a table of fewer than 1,000 rows') for line in lines
    )
    shown = health_context(health)
    (cells,) = [t for t in shown["tables"] if t["name"] == quiet_table]
    assert (cells["dead"], cells["dead_ratio"]) == ("3", "-")
    # Its row is marked only for quiet_table's autovacuum off, never for these dead rows.
    assert [w.kind for w in health.warnings if w.subject == quiet_table] in ([], ["autovacuum_off"])
    assert cells["warns"] == any(w.subject == quiet_table for w in health.warnings)
    assert "warns from 10,000 dead rows" in shown["few_rows_note"]

    # 1,000 rows, 600 dead: far fewer than DEAD_ROWS, but the share is shown; no warning.
    enqueue_many("test.record", [{}] * 996)
    Job.objects.filter(id__in=list(Job.objects.values_list("id", flat=True)[:597])).delete()
    flush_statistics()
    health = database_health()
    assert job_table_cells(health, quiet_table) == ["400", "600", "60%"]
    assert not [w for w in health.warnings if w.kind == "dead_rows"]
