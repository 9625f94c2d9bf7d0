"""How migration 0014 (times in range) meets a live queue and an operator (issue 13, review).

Its ``ALTER TABLE``s wait for the table's ACCESS EXCLUSIVE lock under ``lock_timeout`` so a
producer's open transaction cannot stop the queue behind them; the repair the upgrade guide
documents lets it apply; its refusal says what it kept.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from tests.helpers import in_thread, require_prepared_transactions, second_connection, wait_for

_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")
UPGRADE = Path(__file__).resolve().parent.parent / "docs" / "howto" / "upgrade.md"


@pytest.fixture
def at_0013(transactional_db: None) -> Iterator[None]:
    """The database before 0014; migrated back to the latest afterwards."""
    call_command("migrate", "pgjobs", "0013", verbosity=0)
    yield
    with connection.cursor() as cur:
        for table in (
            "pgjobs_job_queue",
            "pgjobs_failed_jobs",
            "pgjobs_workers",
            "pgjobs_schedules",
        ):
            cur.execute(f"DELETE FROM {table}")
    call_command("migrate", "pgjobs", verbosity=0)


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_0014, "LOCK_TIMEOUT", "300ms")
    monkeypatch.setattr(_0014, "FIRST_PAUSE_SECONDS", 0.05)


def range_checks() -> dict[str, bool]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT conname, convalidated FROM pg_constraint WHERE conname LIKE 'pgjobs%%_range' "
            "AND conname NOT IN ('pgjobs_job_priority_range', 'pgjobs_job_progress_range', "
            "'pgjobs_schedule_priority_range')"
        )
        return dict(cur.fetchall())


def waiting(statement: str) -> bool:
    """A session of this database runs a statement starting with ``statement``, waiting for a
    lock."""
    with second_connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND starts_with(query, %s) AND datname = current_database()",
            [statement],
        ).fetchone()
    return bool(row and row[0])


def test_0014_waits_for_an_open_transaction_without_stopping_the_queue(
    at_0013: None, short_waits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_0014, "LOCK_TRIES", 50)
    blocker = second_connection(autocommit=False)  # a producer inside atomic(), not committed
    blocker.execute("SELECT pgjobs_enqueue('test.record')")
    producer = second_connection()
    producer.execute("SET statement_timeout = '10s'")  # without lock_timeout it waited forever
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            call_command("migrate", "pgjobs", "0014", verbosity=0)
        except BaseException as error:
            errors.append(error)
            raise

    thread = in_thread(migrate)
    try:
        for _ in range(3):
            wait_for(
                lambda: waiting("ALTER TABLE"), what="the ALTER waiting for the open transaction"
            )
            started = time.monotonic()
            producer.execute("SELECT pgjobs_enqueue('test.record')")
            assert time.monotonic() - started < 2.0  # lock_timeout 0.3 s, with room for a slow CI
    finally:
        blocker.commit()
        thread.join(60)
        blocker.close()
        producer.close()
    assert not thread.is_alive() and errors == []
    checks = range_checks()
    assert len(checks) == 24 and all(checks.values())


@pytest.mark.parametrize(
    ("before", "migration", "checks_kept"),
    [
        ("0015", "0014", 24),
        ("0016", "0016", 26),
        ("0019", "0017", 29),
        ("0020", "0020", 29),
        ("0022", "0021", 29),
        ("0029", "0023", 29),
        ("0030", "0030", 29),
        (None, "0031", 29),
    ],
)
def test_a_migration_back_stops_naming_the_session_it_waited_for(
    transactional_db: None,
    short_waits: None,
    monkeypatch: pytest.MonkeyPatch,
    before: str | None,
    migration: str,
    checks_kept: int,
) -> None:
    """Migrating back waits the same way (0014 dropping its checks, 0016 its columns, 0017 its
    indexes, 0020 its column, 0021 its index, 0023 the index it dropped, 0030 its id default,
    0031 its index); after its tries it names who holds the table. (An index build that gave up
    left an invalid index, which the next try took as built: 0023's went on so, invalid.)"""
    monkeypatch.setattr(_0014, "LOCK_TRIES", 3)
    if before is not None:
        call_command("migrate", "pgjobs", before, verbosity=0)
    blocker = second_connection(autocommit=False)
    blocker.execute("SELECT pgjobs_enqueue('test.record')")
    pid = blocker.info.backend_pid
    with connection.cursor() as cur:
        cur.execute("SET statement_timeout = '20s'")  # without lock_timeout it waited forever
    try:
        with pytest.raises(RuntimeError) as refused:
            call_command("migrate", "pgjobs", "0013", verbosity=0)
    finally:
        blocker.rollback()
        with connection.cursor() as cur:
            cur.execute("RESET statement_timeout")
        blocker.close()
    message = str(refused.value)
    assert f"Migration pgjobs {migration} could not lock table pgjobs_job_queue" in message
    assert "3 tries waited 300ms" in message
    assert f"pid {pid} (idle in transaction" in message
    assert "pg_terminate_backend" in message and "run migrate again" in message
    checks = range_checks()
    assert len(checks) == checks_kept and all(checks.values())  # nothing dropped, the queue went on
    call_command("migrate", "pgjobs", verbosity=0)


_0017 = importlib.import_module("django_pgjobs.migrations.0017_flow_control")
BUILD = "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON pgjobs_job_queue (priority)"


def refused_build(index: str) -> Callable[[], None]:
    """A build of ``index`` by 0017's helper (0017, 0021, 0031, 0023 back): its refusal goes
    into ``build.refusals``. The caller drops the invalid index it leaves once nothing holds
    the table (:func:`drop_index`)."""

    def build() -> None:
        with connection.schema_editor(atomic=False) as editor:
            try:
                _0017._concurrently(editor, BUILD.format(index), indexes=(index,))
            except RuntimeError as refusal:
                refusals.append(str(refusal))

    refusals: list[str] = []
    build.refusals = refusals  # type: ignore[attr-defined]
    return build


def drop_index(index: str) -> None:
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX IF EXISTS {index}")


def test_an_index_build_names_an_older_transaction_that_never_touched_the_table(
    transactional_db: None, short_waits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once built, a build CONCURRENTLY waits for each transaction of the database whose
    snapshot is older, one that never touched the table included; its refusal named nobody then
    (review). Named apart from the sessions holding the table: one whose snapshot is taken while
    the build waits for a producer (so after the try began), and not a session with a
    transaction id but no snapshot (READ COMMITTED between statements), which it never waits
    for."""
    monkeypatch.setattr(_0014, "LOCK_TRIES", 1)
    monkeypatch.setattr(_0014, "LOCK_TIMEOUT", "2s")
    producer = second_connection(autocommit=False)  # holds the table: the build waits for it
    producer.execute("SELECT pgjobs_enqueue('test.record')")
    idle = second_connection(autocommit=False)
    idle.execute("SELECT txid_current()")  # a transaction id, and no snapshot between statements
    report = second_connection(autocommit=False)  # a long report elsewhere in the database
    pids = {"idle": idle.info.backend_pid, "report": report.info.backend_pid}
    build = refused_build("pgjobs_test_older_snapshot")
    thread = in_thread(build)
    try:
        wait_for(lambda: waiting("CREATE INDEX"), what="the build waiting for the producer")
        report.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        report.execute("SELECT count(*) FROM pg_class")
        producer.commit()  # the build goes on, builds, then waits for the report's snapshot
        thread.join(30)
    finally:
        for conn in (producer, idle, report):
            conn.rollback()
            conn.close()
        drop_index("pgjobs_test_older_snapshot")
    assert not thread.is_alive()
    (message,) = build.refusals  # type: ignore[attr-defined]
    holding, older = message.split("Sessions holding the table: ", 1)[1].split(". Other ", 1)
    assert holding == "none left by now"
    assert "a build CONCURRENTLY waits for, even if they never touched the table" in older
    assert f"pid {pids['report']} (idle in transaction" in older
    assert f"pid {pids['idle']} " not in message


def test_a_role_without_pg_read_all_stats_still_learns_which_sessions(
    transactional_db: None,
) -> None:
    """Migrating as a role that may not see other roles' activity: their sessions still come
    with their pid and role (pg_stat_activity hides their state, start and type)."""
    role = f"pgjobs_migrate_{connection.settings_dict['NAME']}"
    report = second_connection(autocommit=False)
    report.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    report.execute("SELECT count(*) FROM pg_class")
    pid, user = report.info.backend_pid, report.info.user
    with connection.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {role}")
        cur.execute(f"CREATE ROLE {role}")
        cur.execute(f"SET ROLE {role}")
    try:
        with connection.schema_editor(atomic=False) as editor:
            older = _0014._older_transactions(editor, "pgjobs_job_queue")
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET ROLE")
            cur.execute(f"DROP ROLE {role}")
        report.rollback()
        report.close()
    expected = f"(a session of {user!r}, whose activity needs pg_read_all_stats to see)"
    assert f"pid {pid} {expected}" in older


def test_a_refusal_names_a_prepared_transaction_holding_the_table(
    transactional_db: None, short_waits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prepared transaction has no session (pg_terminate_backend cannot end it): named
    apart, with the statements that end it."""
    require_prepared_transactions()
    monkeypatch.setattr(_0014, "LOCK_TRIES", 1)
    with second_connection(autocommit=False) as preparing:
        # A producer's lock (an enqueue's NOTIFY cannot be prepared).
        preparing.execute("LOCK TABLE pgjobs_job_queue IN ROW EXCLUSIVE MODE")
        preparing.execute("PREPARE TRANSACTION 'pgjobs-migration''s test'")
    build = refused_build("pgjobs_test_prepared")
    try:
        build()
    finally:
        with second_connection() as conn:
            conn.execute("ROLLBACK PREPARED 'pgjobs-migration''s test'")
        drop_index("pgjobs_test_prepared")
    (message,) = build.refusals  # type: ignore[attr-defined]
    holding = message.split("Sessions holding the table: ", 1)[1].split(". Other ", 1)[0]
    assert holding.startswith('prepared transaction "pgjobs-migration\'s test" (prepared at ')
    # The statements that end it, ready to paste (the gid quoted as SQL quotes it).
    gid = "'pgjobs-migration''s test'"
    assert f"end it with COMMIT PREPARED {gid} or ROLLBACK PREPARED {gid})" in holding


def documented_repair() -> str:
    """The SQL the upgrade guide gives for rows out of range, exactly as written there."""
    section = UPGRADE.read_text().split("## Times in range", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the section should hold one SQL block"
    return str(blocks[0])


def test_the_documented_repair_lets_0014_apply(at_0013: None) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, scheduled_for) "
            "VALUES ('test.record', 'infinity') RETURNING id"
        )
        job_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO pgjobs_failed_jobs (job_name, failed_at) VALUES ('x', '-infinity')"
        )
        cur.execute("INSERT INTO pgjobs_workers (id, last_heartbeat_at) VALUES ('w', 'infinity')")
        cur.execute(
            "INSERT INTO pgjobs_schedules (name, cron, job_name, start_at, end_at) "
            "VALUES ('s', '* * * * *', 'test.record', '-infinity', 'infinity')"
        )
    with pytest.raises(RuntimeError, match="Nothing was changed"):
        call_command("migrate", "pgjobs", "0014", verbosity=0)
    with connection.cursor() as cur:
        cur.execute(documented_repair())
    call_command("migrate", "pgjobs", "0014", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT status FROM pgjobs_job_queue WHERE id = %s", [job_id])
        assert cur.fetchone() == ("cancelled",)
    assert all(range_checks().values())


def test_a_rerun_that_finds_bad_rows_says_it_kept_the_checks_added(at_0013: None) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "ALTER TABLE pgjobs_workers ADD CONSTRAINT pgjobs_worker_started_at_range "
            "CHECK (started_at >= '0002-01-01 00:00:00+00' "
            "AND started_at < '9000-01-01 00:00:00+00') NOT VALID"
        )
        cur.execute("INSERT INTO pgjobs_job_queue (job_name, created_at) VALUES ('x', 'infinity')")
    with pytest.raises(RuntimeError) as refused:
        call_command("migrate", "pgjobs", "0014", verbosity=0)
    message = str(refused.value)
    assert "Nothing was changed" not in message
    assert "The 1 check(s) a previous run added NOT VALID are kept" in message
