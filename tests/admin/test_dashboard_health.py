"""The dashboard's PostgreSQL health section: every table's figures, the holder of the xmin
horizon by pid and application (never its query), and the warnings with what to do."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings

from django_pgjobs.observability.health import pgjobs_tables
from tests.helpers import autovacuum_off

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/admin/pgjobs/dashboard/"


@pytest.fixture
def staff() -> Client:
    user = User.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_job"))
    client = Client()
    client.force_login(user)
    return client


def section(page: str) -> str:
    return page.split('<div id="pgjobs-health">')[1].split("</div>")[0]


def test_the_dashboard_shows_each_tables_health(staff: Client) -> None:
    shown = section(staff.get(URL).content.decode())
    names = re.findall(r"<tr[^>]*><td><code>([a-z_]+)</code></td>", shown)
    assert names == pgjobs_tables()
    assert "Nothing holds back vacuum of these tables." in shown
    if autovacuum_off():
        assert "1 health warning</strong>" in shown and "autovacuum is off" in shown
    else:
        assert 'id="pgjobs-health-warnings"' not in shown


def test_the_holder_and_its_warning_are_shown_without_its_query(
    staff: Client, holder: psycopg.Connection[Any]
) -> None:
    holder.execute("SELECT 'card 4111 1111 1111 1111'")
    pid = holder.info.backend_pid
    with override_settings(PGJOBS={"HEALTH": {"XMIN_AGE_SECONDS": 0}}):
        partial = staff.get(URL, {"partial": "1"}).content.decode()
    shown = section(partial)
    assert f"Vacuum is held back by session pid {pid} (user " in shown
    assert "app &#x27;health-test&#x27;, idle in transaction)" in shown
    warnings = shown.split('id="pgjobs-health-warnings"')[1]
    assert f"{1 + autovacuum_off()} health warning" in warnings
    assert f"SELECT pg_terminate_backend({pid})" in warnings
    assert "4111" not in partial
