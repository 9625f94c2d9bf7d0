"""``manage.py pgjobs health``: the figures and warnings of observability.health, stored text
escaped, and an exit status a cron job or a monitor can act on."""

from __future__ import annotations

from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_pgjobs.observability.health import pgjobs_tables
from tests.helpers import autovacuum_off, start_worker

pytestmark = pytest.mark.django_db(transaction=True)
WARN_AT_ONCE = {"HEALTH": {"XMIN_AGE_SECONDS": 0}}


def warnings_line(count: int) -> str:
    return f"{count} health warning{'' if count == 1 else 's'}."


def health() -> str:
    """What ``pgjobs health`` prints, with only the warning about autovacuum on a server
    without it (a CommandError, as any warning is)."""
    out = StringIO()
    if not autovacuum_off():
        call_command("pgjobs", "health", stdout=out)
        return out.getvalue()
    with pytest.raises(CommandError, match=f"^{warnings_line(1)}$"):
        call_command("pgjobs", "health", stdout=out)
    return out.getvalue()


def test_health_lists_every_table_and_says_when_nothing_warns() -> None:
    lines = health().splitlines()
    assert lines[0].startswith("PostgreSQL ") and "database 'test_" in lines[0]
    header = lines[2].split()
    assert header[:6] == ["table", "live", "dead", "dead", "size", "indexes"]
    assert [line.split()[0] for line in lines[3 : 3 + len(pgjobs_tables())]] == pgjobs_tables()
    assert "xmin horizon: nothing holds back vacuum of these tables" in lines
    if autovacuum_off():
        (warning,) = [line for line in lines if line.startswith("WARNING: ")]
        assert warning.startswith("WARNING: autovacuum is off on this server")
    else:
        assert lines[-1] == "No warnings."


def test_a_warning_is_printed_with_what_to_do_and_is_a_command_error(
    holder: psycopg.Connection[Any],
) -> None:
    pid = holder.info.backend_pid
    out = StringIO()
    with override_settings(PGJOBS=WARN_AT_ONCE), pytest.raises(CommandError) as raised:
        call_command("pgjobs", "health", stdout=out)
    assert raised.value.returncode == 1
    assert str(raised.value) == warnings_line(1 + autovacuum_off())
    lines = out.getvalue().splitlines()
    assert any(
        line.startswith(f"xmin horizon: held by session pid {pid} (user ")
        and ", app 'health-test', idle in transaction), transaction open 0:00:" in line
        for line in lines
    )
    assert "    query: SELECT txid_current()" in lines
    (warning,) = [line for line in lines if line.startswith("WARNING: ") and "pid" in line]
    assert warning.endswith(f"end it (SELECT pg_terminate_backend({pid})) and set "
                            "idle_in_transaction_session_timeout so that a forgotten transaction "
                            "ends by itself")  # fmt: skip


def test_a_holders_query_is_printed_on_one_line_with_control_characters_escaped(
    holder: psycopg.Connection[Any],
) -> None:
    holder.execute("SELECT 'evil\x1b[2J',\r\n  'forged line'")
    out = health()
    assert "\x1b" not in out and "\r" not in out
    assert "    query: SELECT 'evil\\x1b[2J', 'forged line'" in out.splitlines()


@pytest.mark.parametrize(("settings", "status"), [({}, 0), (WARN_AT_ONCE, 1)])
def test_the_process_exits_1_when_something_warns(
    holder: psycopg.Connection[Any], settings: dict[str, Any], status: int
) -> None:
    proc = start_worker("health", command="pgjobs", settings=settings, pipes=True)
    out, err = proc.communicate(timeout=60)
    warned = status + autovacuum_off()
    assert proc.returncode == min(warned, 1), err.decode()
    assert b"xmin horizon: held by session pid" in out
    assert (f"CommandError: {warnings_line(warned)}".encode() in err) == bool(warned)
