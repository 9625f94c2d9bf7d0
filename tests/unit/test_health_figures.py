"""The health figures that need no database: the estimate of a table's free space, sizes and
durations as they are shown, and the warnings each threshold gives for given figures."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from django_pgjobs.observability.bloat import estimated_bloat_bytes, expected_pages
from django_pgjobs.observability.display import byte_size, elapsed
from django_pgjobs.observability.health import Health, TableHealth
from django_pgjobs.observability.health_report import dead_share_shown, few_rows_note
from django_pgjobs.observability.health_warnings import HealthThresholds, health_warnings
from django_pgjobs.observability.horizon import HorizonHolder

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
THRESHOLDS = HealthThresholds(
    dead_ratio=0.3, dead_rows=10_000, bloat_ratio=0.5, bloat_bytes=1024**3,
    xmin_age_seconds=300, xmin_age_transactions=1_000_000, xid_age=500_000_000,
)  # fmt: skip


def test_expected_pages_match_what_postgresql_wrote() -> None:
    # A table of (bigint, text, jsonb, timestamptz) rows, 51 bytes of data on average:
    # PostgreSQL 15 stored 100,000 of them in 1,031 pages of 8 KiB.
    pages = expected_pages(
        100_000, data_width=51, columns=4, has_nulls=False, block_size=8192, fillfactor=100
    )
    assert pages == 1031


def test_fillfactor_and_nulls_make_rows_take_more_pages() -> None:
    base = {"data_width": 51.0, "columns": 4, "block_size": 8192}
    packed = expected_pages(100_000, has_nulls=False, fillfactor=100, **base)  # type: ignore[arg-type]
    assert expected_pages(100_000, has_nulls=False, fillfactor=50, **base) > packed * 1.9  # type: ignore[arg-type]
    # Nine columns' null bitmap (two bytes) pushes the 23-byte header past 24, to 32 aligned;
    # four columns' (one byte) still fits in 24.
    wide = {"data_width": 51.0, "columns": 9, "block_size": 8192}
    assert expected_pages(100_000, has_nulls=True, fillfactor=100, **base) == packed  # type: ignore[arg-type]
    assert expected_pages(100_000, has_nulls=True, fillfactor=100, **wide) > packed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pages", "rows", "width", "bloat"),
    [
        (1031, 100_000, 51.0, 0),  # packed
        (900, 100_000, 51.0, 0),  # statistics older than the table: never below zero
        (10_310, 100_000, 51.0, (10_310 - 1031) * 8192),  # nine pages in ten empty
        (1031, -1, 51.0, None),  # never vacuumed or analysed
        (1031, 100_000, None, None),  # no column statistics
    ],
)
def test_bloat_is_the_heap_beyond_what_its_rows_need(
    pages: int, rows: float, width: float | None, bloat: int | None
) -> None:
    found = estimated_bloat_bytes(
        pages=pages, rows=rows, data_width=width, columns=4, has_nulls=False, block_size=8192,
        fillfactor=100,
    )  # fmt: skip
    assert found == bloat


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0 bytes"), (8192, "8,192 bytes"), (10 * 1024, "10 KiB"), (97 * 1024**2, "97 MiB"),
     (1536 * 1024**2, "1,536 MiB"), (20 * 1024**3, "20 GiB"), (2 * 1024**5, "2,048 TiB")],
)  # fmt: skip
def test_sizes_are_shown_as_pg_size_pretty_shows_them(count: int, shown: str) -> None:
    assert byte_size(count) == shown


def test_durations_are_shown_to_the_second() -> None:
    assert elapsed(7380.4) == "2:03:00"
    assert elapsed(90061) == "1 day, 1:01:01"


def figures(**changes: object) -> Health:
    fields: dict[str, object] = {
        "checked_at": NOW, "database": "shop", "server_version": "18.1", "tables": [],
        "holders": [], "xid_age": 1000, "multixact_age": 10, "oldest_database": "shop",
        "oldest_xid_age": 1000, "freeze_max_age": 200_000_000, "autovacuum": True,
        "sees_all_sessions": True,
    }  # fmt: skip
    return Health(**{**fields, **changes})  # type: ignore[arg-type]


def job_table(**changes: object) -> TableHealth:
    fields: dict[str, object] = {
        "name": "pgjobs_job_queue", "live_rows": 1000, "dead_rows": 0, "table_bytes": 8192,
        "index_bytes": 8192, "heap_bytes": 8192, "bloat_bytes": 0, "last_vacuum": None,
        "last_autovacuum": None, "last_analyze": None, "last_autoanalyze": None, "xid_age": 1000,
        "multixact_age": 10,
    }  # fmt: skip
    return TableHealth(**{**fields, **changes})  # type: ignore[arg-type]


def kinds(health: Health) -> list[tuple[str, str]]:
    return [(w.kind, w.subject) for w in health_warnings(health, THRESHOLDS)]


def test_healthy_figures_give_no_warning() -> None:
    assert kinds(figures(tables=[job_table()])) == []


def test_autovacuum_off_is_a_warning_of_its_own_before_any_dead_row() -> None:
    """pgjobs health said "autovacuum: OFF", then "No warnings." (a new user's trial)."""
    assert kinds(figures(tables=[job_table()], autovacuum=False)) == [
        ("autovacuum_off", "database 'shop'")
    ]
    table_off = job_table(autovacuum_enabled=False)
    assert kinds(figures(tables=[table_off])) == [("autovacuum_off", "pgjobs_job_queue")]
    # Off on the server: said once, not again for each table.
    assert kinds(figures(tables=[table_off], autovacuum=False)) == [
        ("autovacuum_off", "database 'shop'")
    ]


def test_bloat_warns_past_both_its_ratio_and_its_size() -> None:
    gib = 1024**3
    big = job_table(heap_bytes=3 * gib, bloat_bytes=2 * gib)
    assert kinds(figures(tables=[big])) == [("bloat", "pgjobs_job_queue")]
    (warning,) = health_warnings(figures(tables=[big]), THRESHOLDS)
    assert warning.message == (
        "pgjobs_job_queue: about 2,048 MiB of its 3,072 MiB heap holds no live row (67%, estimated)"
    )
    assert "VACUUM FULL pgjobs_job_queue (which locks the table" in warning.action
    small = job_table(heap_bytes=gib, bloat_bytes=gib - 1)  # 100% but under 1 GiB
    assert kinds(figures(tables=[small])) == []
    roomy = job_table(heap_bytes=10 * gib, bloat_bytes=2 * gib)  # 2 GiB but 20%
    assert kinds(figures(tables=[roomy])) == []


def test_transaction_id_age_warns_for_the_database_the_server_and_a_table() -> None:
    old = figures(
        xid_age=600_000_000, oldest_database="legacy", oldest_xid_age=700_000_000,
        multixact_age=500_000_000, tables=[job_table(xid_age=600_000_000)],
    )  # fmt: skip
    assert kinds(old) == [
        ("xid_age", "pgjobs_job_queue"),
        ("xid_age", "database 'shop'"),
        ("xid_age", "database 'legacy'"),
        ("multixact_age", "database 'shop'"),
    ]
    table, shop, legacy, _ = health_warnings(old, THRESHOLDS)
    assert table.action == "freeze it: VACUUM (FREEZE, VERBOSE) pgjobs_job_queue"
    assert "PostgreSQL stops the whole server at about 2,144,483,648" in shop.message
    assert "ORDER BY 2 DESC LIMIT 10" in shop.action and ", in database 'legacy'" in legacy.action


def test_an_inactive_slot_far_behind_warns_with_the_statement_that_drops_it() -> None:
    slot = HorizonHolder(
        "replication slot", xmin_age=2_000_000, name="old_standby", backend_type="physical",
        active=False,
    )  # fmt: skip
    (warning,) = health_warnings(figures(holders=[slot]), THRESHOLDS)
    assert warning.message == (
        "inactive physical replication slot 'old_standby' holds back vacuum, "
        "2,000,000 transactions behind"
    )
    assert warning.action.endswith("SELECT pg_drop_replication_slot('old_standby')")
    recent = HorizonHolder("replication slot", xmin_age=10, name="standby", active=True)
    assert health_warnings(figures(holders=[recent]), THRESHOLDS) == []


def test_a_logical_slot_holds_back_the_catalogs_not_our_tables() -> None:
    slot = HorizonHolder(
        "replication slot", xmin_age=2_000_000, name="cdc", backend_type="logical", active=True,
        catalogs_only=True,
    )  # fmt: skip
    health = figures(holders=[slot], tables=[job_table(dead_rows=50_000, live_rows=1)])
    assert health.horizon is None
    slot_warning, dead = health_warnings(health, THRESHOLDS)
    assert "holds back vacuum of the system catalogs" in slot_warning.message
    assert "cdc" not in dead.action  # not blamed for our tables' dead rows
    assert dead.action.startswith("normal for a minute after a burst")


def test_an_active_query_is_cancelled_rather_than_its_session_ended_first() -> None:
    query = HorizonHolder(
        "session", xmin_age=5, seconds=3600, pid=42, user="app", application="report",
        state="active", backend_type="client backend",
    )  # fmt: skip
    (warning,) = health_warnings(figures(holders=[query]), THRESHOLDS)
    assert warning.message == (
        "a transaction running for 1:00:00 in pid 42 (user 'app', app 'report', active) holds "
        "back vacuum, 5 transactions behind"
    )
    assert warning.action.startswith("if it may be stopped, cancel its query (SELECT pg_cancel")


def test_a_standbys_feedback_is_told_apart_from_a_session() -> None:
    walsender = HorizonHolder(
        "session", xmin_age=2_000_000, pid=7, user="replicator", application="walreceiver",
        state="streaming", backend_type="walsender",
    )  # fmt: skip
    (warning,) = health_warnings(figures(holders=[walsender]), THRESHOLDS)
    assert warning.message == (
        "the standby streaming from walsender pid 7 (user 'replicator', app 'walreceiver') holds "
        "back vacuum through hot_standby_feedback, 2,000,000 transactions behind"
    )
    assert warning.action.startswith("a long query on that standby holds it")


def session(**changes: object) -> HorizonHolder:
    fields: dict[str, object] = {
        "kind": "session", "xmin_age": 10, "seconds": 60, "pid": 42, "user": "app",
        "application": "report", "database": "shop", "state": "idle in transaction",
        "backend_type": "client backend", "query_start": NOW - timedelta(seconds=60),
    }  # fmt: skip
    return HorizonHolder(**{**fields, **changes})  # type: ignore[arg-type]


def dead_rows_action(*holders: HorizonHolder, **table: object) -> str:
    health = figures(holders=list(holders), tables=[job_table(dead_rows=50_000, **table)])
    (dead,) = [w for w in health_warnings(health, THRESHOLDS) if w.kind == "dead_rows"]
    return dead.action


def test_a_holder_is_the_cause_when_a_vacuum_since_it_began_left_the_rows() -> None:
    after = NOW - timedelta(seconds=30)  # the holder's query started 60 s ago
    action = dead_rows_action(session(), last_autovacuum=after)
    assert action.startswith("vacuum at 2026-12-03 11:59:30+0000 left them: it ran after the ")
    assert "pid 42 (user 'app', app 'report', idle in transaction, transaction open 0:01:00" in (
        action
    )
    assert action.endswith(
        "no row deleted after that goes until it ends: end it (SELECT pg_terminate_backend(42)) "
        "and set idle_in_transaction_session_timeout so that a forgotten transaction ends by "
        "itself"
    )
    # Autovacuum off for the table is said as well, not dropped for the holder.
    both = dead_rows_action(session(), last_vacuum=after, autovacuum_enabled=False)
    assert "pg_terminate_backend(42)" in both
    assert both.endswith("autovacuum is off for this table: ALTER TABLE pgjobs_job_queue RESET "
                         "(autovacuum_enabled), and VACUUM pgjobs_job_queue now")  # fmt: skip


def test_a_holder_vacuum_has_not_run_since_is_not_blamed_and_autovacuum_is_advised() -> None:
    # The rows may have died before the holder began (it then holds none of them): say what
    # is known, after the autovacuum advice.
    before = NOW - timedelta(seconds=90)
    for table in ({}, {"last_autovacuum": before}):
        action = dead_rows_action(session(), **table)
        assert action.startswith("normal for a minute after a burst, until autovacuum's next ")
        assert "pg_terminate_backend" not in action
        assert action.endswith(
            "; vacuum has not run since the session pid 42 (user 'app', app 'report', idle in "
            "transaction, transaction open 0:01:00, query started 2026-12-03 11:59:00+0000) "
            "began: if vacuum runs and rows remain, pid 42 is why"
        )
    off = dead_rows_action(session(), autovacuum_enabled=False)
    assert off.startswith("autovacuum is off for this table: ALTER TABLE pgjobs_job_queue RESET")
    assert off.endswith("if vacuum runs and rows remain, pid 42 is why")


def test_a_holder_whose_start_postgresql_does_not_show_is_never_blamed() -> None:
    slot = HorizonHolder(
        "replication slot", xmin_age=10, name="standby", backend_type="physical", active=True
    )
    hidden = session(state=None, backend_type=None, seconds=None, query_start=None)
    for holder, named, subject in (
        (slot, "active physical replication slot 'standby'", "replication slot 'standby'"),
        (hidden, "the session pid 42 (user 'app', app 'report'; state and start hidden from "
                 "this role)", "pid 42"),
    ):  # fmt: skip
        action = dead_rows_action(holder, last_autovacuum=NOW)
        assert action.endswith(
            f"; {named} holds back the xmin horizon (since when, PostgreSQL does not say): if "
            f"vacuum runs and rows remain, {subject} is why"
        )
        assert action.startswith("normal for a minute after a burst")


def test_a_prepared_transaction_is_blamed_from_its_prepare() -> None:
    prepared = HorizonHolder(
        "prepared transaction", xmin_age=10, seconds=5, name="tx1", user="app", database="shop"
    )
    action = dead_rows_action(prepared, last_vacuum=NOW - timedelta(seconds=1))
    assert action.startswith(
        "vacuum at 2026-12-03 11:59:59+0000 left them: it ran after prepared transaction 'tx1' "
        "(owner 'app', prepared 0:00:05 ago) began, 10 transactions behind"
    )
    assert action.endswith("COMMIT PREPARED 'tx1' or ROLLBACK PREPARED 'tx1'")
    assert dead_rows_action(prepared, last_vacuum=NOW - timedelta(seconds=6)).startswith(
        "normal for a minute"
    )


def test_a_session_of_another_database_is_never_named_for_our_dead_rows() -> None:
    # Its XID is the xmin of a session here (equal ages): the session here holds our horizon;
    # the one elsewhere is another application's, listed and labelled, never to be ended from
    # the advice about our rows.
    elsewhere = session(pid=7, database="other", elsewhere=True, state="active")
    here = session()
    health = figures(holders=[elsewhere, here], tables=[job_table(dead_rows=50_000)])
    assert health.horizon == here
    action = dead_rows_action(elsewhere, here, last_autovacuum=NOW)
    assert "pid 7" not in action and "pid 42" in action
    # Alone (nothing here held at it any more), it is no holder of ours at all.
    assert figures(holders=[elsewhere]).horizon is None
    alone = dead_rows_action(elsewhere)
    assert "pid 7" not in alone and alone.startswith("normal for a minute after a burst")
    over = THRESHOLDS.__class__(**{**THRESHOLDS.__dict__, "xmin_age_seconds": 0})
    warnings = health_warnings(figures(holders=[elsewhere, here]), over)
    assert [w.subject for w in warnings] == ["pid 7", "pid 42"]
    assert "in pid 7 (database 'other', user 'app'" in warnings[0].message
    assert "pg_terminate_backend" not in warnings[0].action
    assert "ask whose it is" in warnings[0].action


@pytest.mark.parametrize(
    ("live", "dead", "shown"),
    [(1, 3, "-"), (990, 9, "-"), (991, 9, "1%"), (10_000_000, 9_999, "0%"), (0, 1_000, "100%")],
)
def test_the_dead_share_is_shown_for_a_table_of_a_thousand_rows_or_more(
    live: int, dead: int, shown: str
) -> None:
    table = job_table(live_rows=live, dead_rows=dead)
    assert dead_share_shown(table) == shown
    health = replace(figures(tables=[table]), thresholds=THRESHOLDS)
    note = few_rows_note(health)
    if shown == "-":
        assert note == (
            'dead %: "-" for a table of fewer than 1,000 rows (live and dead), whose share says '
            'nothing; a table warns from 10,000 dead rows (PGJOBS["HEALTH"]["DEAD_ROWS"]), '
            "whatever its size"
        )
    else:
        assert note is None
    assert kinds(health) == []  # under DEAD_ROWS dead rows: never a warning
