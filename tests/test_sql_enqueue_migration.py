"""Migration 0018 drops and creates ``pgjobs_enqueue()`` (its arguments change): its owner and
EXECUTE privileges survive both ways, and objects that depend on it stop it, changing nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

OLD = "pgjobs_enqueue(text, jsonb, text, integer, timestamptz, integer, text)"
NEW = "pgjobs_enqueue(text, jsonb, text, integer, timestamptz, integer, text, text, interval)"


@pytest.fixture
def roles() -> Iterator[tuple[str, str, str]]:
    """Three throwaway roles (roles belong to the cluster, not the test database): a caller
    with EXECUTE, one without, and an owner; dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = (f"pgjobs_caller_{tag}", f"pgjobs_stranger_{tag}", f"pgjobs_owner_{tag}")
    with connection.cursor() as cur:
        for name in names:
            cur.execute(f"CREATE ROLE {name}")
    yield names
    call_command("migrate", "pgjobs", verbosity=0)
    with connection.cursor() as cur:
        # The function's ACL outlives the test's data: put the default back (PUBLIC may call).
        cur.execute(f"ALTER FUNCTION {NEW} OWNER TO CURRENT_USER")
        cur.execute(f"GRANT EXECUTE ON FUNCTION {NEW} TO PUBLIC")
        for name in names:
            cur.execute(f"DROP OWNED BY {name}")
            cur.execute(f"DROP ROLE {name}")


def may_execute(role: str, signature: str) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", [role, signature])
        return bool(cur.fetchone()[0])


def owner_of(signature: str) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT proowner::regrole::text FROM pg_proc WHERE oid = %s::regprocedure",
                    [signature])  # fmt: skip
        return str(cur.fetchone()[0])


def test_owner_and_privileges_survive_the_migration_both_ways(
    roles: tuple[str, str, str],
) -> None:
    caller, stranger, owner = roles
    # What a careful deployment does: nobody may enqueue from SQL but the role it names.
    with connection.cursor() as cur:
        cur.execute(f"REVOKE EXECUTE ON FUNCTION {NEW} FROM PUBLIC")
        cur.execute(f"GRANT EXECUTE ON FUNCTION {NEW} TO {caller}")
        cur.execute(f"ALTER FUNCTION {NEW} OWNER TO {owner}")
    assert may_execute(caller, NEW) and not may_execute(stranger, NEW)

    call_command("migrate", "pgjobs", "0017", verbosity=0)
    assert may_execute(caller, OLD) and not may_execute(stranger, OLD)
    assert owner_of(OLD) == owner

    call_command("migrate", "pgjobs", "0018", verbosity=0)
    assert may_execute(caller, NEW) and not may_execute(stranger, NEW)
    assert owner_of(NEW) == owner
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_proc WHERE proname = 'pgjobs_enqueue'")
        assert cur.fetchone()[0] == 1


def test_the_default_privileges_stay_the_default(roles: tuple[str, str, str]) -> None:
    """A function nobody granted anything on: PUBLIC keeps EXECUTE, as before."""
    _, stranger, _ = roles
    call_command("migrate", "pgjobs", "0017", verbosity=0)
    assert may_execute(stranger, OLD)
    call_command("migrate", "pgjobs", "0018", verbosity=0)
    assert may_execute(stranger, NEW)


def test_a_grant_option_survives(roles: tuple[str, str, str]) -> None:
    caller, stranger, _ = roles
    with connection.cursor() as cur:
        cur.execute(f"GRANT EXECUTE ON FUNCTION {NEW} TO {caller} WITH GRANT OPTION")
    call_command("migrate", "pgjobs", "0017", verbosity=0)
    call_command("migrate", "pgjobs", "0018", verbosity=0)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT has_function_privilege(%s, %s, 'EXECUTE WITH GRANT OPTION')", [caller, NEW]
        )
        assert cur.fetchone()[0] is True
        cur.execute(
            "SELECT has_function_privilege(%s, %s, 'EXECUTE WITH GRANT OPTION')", [stranger, NEW]
        )
        assert cur.fetchone()[0] is False


def test_an_object_that_depends_on_the_function_stops_the_migration_and_changes_nothing() -> None:
    """A SQL-standard body (PG 14+) records a dependency on the functions it calls: a plain
    DROP would fail with PostgreSQL's error; the migration names it and says what to do."""
    with connection.cursor() as cur:
        cur.execute("SHOW server_version_num")
        if int(cur.fetchone()[0]) < 140000:
            pytest.skip("BEGIN ATOMIC needs PostgreSQL 14")
        cur.execute(
            "CREATE FUNCTION enqueue_report() RETURNS uuid LANGUAGE sql "
            "BEGIN ATOMIC SELECT pgjobs_enqueue('test.record', partition_key => 'r'); END"
        )
    try:
        with pytest.raises(RuntimeError) as refused:
            call_command("migrate", "pgjobs", "0017", verbosity=0)
        message = str(refused.value)
        assert "function enqueue_report()" in message and "Nothing was changed" in message
        with connection.cursor() as cur:
            cur.execute("SELECT enqueue_report()")  # the new function, still there
            assert cur.fetchone()[0] is not None
    finally:
        with connection.cursor() as cur:
            cur.execute("DROP FUNCTION IF EXISTS enqueue_report()")
    call_command("migrate", "pgjobs", "0017", verbosity=0)
    call_command("migrate", "pgjobs", verbosity=0)
