"""The metrics view: staff users with the view permissions of what it shows and holders of
PGJOBS["METRICS_TOKEN"] only (compared in constant time); never open by default, nor by an empty
token; GET and HEAD only, outside ATOMIC_REQUESTS' transaction of every database; the database
gauges in the format the scraper asks for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client, override_settings

from django_pgjobs import enqueue
from tests.metrics.scrapes import Scrape

pytestmark = pytest.mark.django_db

URL = "/pgjobs/metrics"
TOKEN = "s3cret-metrics-token-0123456789"


@pytest.fixture
def with_token() -> Iterator[None]:
    with override_settings(PGJOBS={"METRICS_TOKEN": TOKEN}):
        yield


def test_anonymous_is_refused_when_no_token_is_configured(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 403
    assert b"pgjobs_jobs" not in response.content


@pytest.mark.usefixtures("with_token")
def test_anonymous_is_asked_for_the_bearer_token_when_one_is_configured(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"pgjobs_jobs" not in response.content


def test_a_user_who_is_not_staff_is_refused(client: Client) -> None:
    client.force_login(User.objects.create_user("someone"))
    assert client.get(URL).status_code == 403


def test_an_inactive_staff_user_is_refused(client: Client) -> None:
    user = staff()
    client.force_login(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert client.get(URL).status_code == 403


VIEWS = ("view_job", "view_queue", "view_schedule", "view_workflowexecution")


def staff(*codenames: str) -> User:
    """An active staff user with these permissions, by default those the view asks for."""
    user = User.objects.create_user("ops", is_staff=True)
    for codename in codenames or VIEWS:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def test_staff_without_the_view_job_permission_are_refused(client: Client) -> None:
    client.force_login(User.objects.create_user("ops", is_staff=True))
    response = client.get(URL)
    assert response.status_code == 403
    assert b"pgjobs.view_job" in response.content


@pytest.mark.parametrize("missing", VIEWS[1:])
def test_staff_who_may_not_see_queues_schedules_or_workflows_are_refused(
    client: Client, missing: str
) -> None:
    # The gauges show queue limits, schedules and workflow counts: the admin keeps each behind
    # its own view permission, so view_job alone is not enough.
    client.force_login(staff(*(codename for codename in VIEWS if codename != missing)))
    response = client.get(URL)
    assert response.status_code == 403
    assert f"pgjobs.{missing}".encode() in response.content
    assert b"pgjobs_jobs" not in response.content


@pytest.mark.usefixtures("with_token")
def test_a_signed_in_user_is_told_the_missing_permission_even_when_a_token_is_configured(
    client: Client,
) -> None:
    # A browser has no token to offer: "a bearer token is required" would hide the real reason.
    client.force_login(staff("view_job", "view_queue", "view_schedule"))
    response = client.get(URL)
    assert response.status_code == 403
    assert b"lacks the permission(s) pgjobs.view_workflowexecution." in response.content
    client.force_login(User.objects.create_user("someone"))
    response = client.get(URL)
    assert response.status_code == 403
    assert b"not an active staff account" in response.content


def test_the_view_permissions_without_staff_are_refused(client: Client) -> None:
    user = User.objects.create_user("viewer")
    for codename in VIEWS:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    assert client.get(URL).status_code == 403


def test_a_superuser_sees_the_gauges(client: Client) -> None:
    client.force_login(User.objects.create_superuser("root"))
    assert client.get(URL).status_code == 200


def test_staff_see_the_database_gauges(client: Client) -> None:
    enqueue("test.record", queue="mail")
    client.force_login(staff())
    response = client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    scrape = Scrape(response.content.decode())
    assert scrape("pgjobs_jobs", queue="mail", state="due") == 1


@pytest.mark.usefixtures("with_token")
def test_the_token_opens_the_view(client: Client) -> None:
    enqueue("test.record", queue="mail")
    response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert Scrape(response.content.decode())("pgjobs_jobs", queue="mail", state="due") == 1
    # The scheme is case-insensitive (RFC 7235).
    assert client.get(URL, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.usefixtures("with_token")
@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", "Bearer", "Bearer \t ",
        "Bearer ünïcode-token-of-length", f"Bearer {TOKEN}\x0b", f"Bearer \xa0{TOKEN}",
    ],
    ids=[
        "longer", "shorter", "empty", "no-token", "blank", "non-ascii", "vertical-tab",
        "no-break-space",
    ],
)  # fmt: skip
def test_a_wrong_token_is_401(client: Client, header: str) -> None:
    response = client.get(URL, headers={"Authorization": header})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert b"pgjobs_jobs" not in response.content


@pytest.mark.usefixtures("with_token")
def test_a_wrong_token_is_refused_even_to_a_staff_session(client: Client) -> None:
    client.force_login(staff())
    assert client.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_token_is_refused_when_none_is_configured(client: Client) -> None:
    response = client.get(URL, headers={"Authorization": "Bearer anything-at-all-0123456789"})
    assert response.status_code == 401


@pytest.mark.usefixtures("with_token")
def test_other_authorization_schemes_are_not_tokens(client: Client) -> None:
    assert client.get(URL, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401


@pytest.mark.usefixtures("with_token")
def test_openmetrics_when_the_scraper_asks_for_it(client: Client) -> None:
    response = client.get(
        URL,
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/openmetrics-text; version=1.0.0",
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.endswith(b"# EOF\n")


@pytest.mark.parametrize("setting", ["", None, 0, False], ids=repr)
@pytest.mark.parametrize("header", ["Bearer ", "Bearer", "Bearer \t", "bearer  "])
def test_an_empty_token_setting_opens_nothing(client: Client, setting: Any, header: str) -> None:
    # As os.environ.get("PGJOBS_METRICS_TOKEN", "") gives where the variable is not set: the
    # token door stays shut (401) and the view is the staff's, as with None (pgjobs.E004 says so
    # at start-up, but a server need not run the checks).
    with override_settings(PGJOBS={"METRICS_TOKEN": setting}):
        response = client.get(URL, headers={"Authorization": header})
        assert response.status_code == 401
        assert b"pgjobs_jobs" not in response.content
        assert client.get(URL).status_code == 403  # no token configured: staff only
        client.force_login(staff())
        assert client.get(URL).status_code == 200


@pytest.mark.parametrize("setting", [True, 1], ids=repr)
def test_a_token_setting_not_a_str_opens_nothing(client: Client, setting: Any) -> None:
    # It was str()-ed: METRICS_TOKEN = True opened the view to "Bearer True".
    with override_settings(PGJOBS={"METRICS_TOKEN": setting}):
        response = client.get(URL, headers={"Authorization": f"Bearer {setting}"})
        assert response.status_code == 401
        assert b"pgjobs_jobs" not in response.content


@pytest.mark.usefixtures("with_token")
def test_spaces_and_tabs_around_the_header_are_not_part_of_the_token(client: Client) -> None:
    for header in (f"Bearer {TOKEN} ", f" Bearer  {TOKEN}\t", f"\tbearer {TOKEN} \t"):
        assert client.get(URL, headers={"Authorization": header}).status_code == 200, header


@pytest.mark.usefixtures("with_token")
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_only_get_and_head_the_rest_405_even_under_csrf_protection(method: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    middleware = [*settings.MIDDLEWARE, "django.middleware.csrf.CsrfViewMiddleware"]
    with override_settings(MIDDLEWARE=middleware):
        client = Client(enforce_csrf_checks=True)
        assert client.head(URL, headers=auth).status_code == 200
        response = getattr(client, method)(URL, headers=auth)
        assert response.status_code == 405
        assert sorted(response["Allow"].split(", ")) == ["GET", "HEAD"]


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
@pytest.mark.parametrize("alias", ["default", "other"])
def test_the_read_runs_in_its_own_read_only_snapshot_under_atomic_requests(
    client: Client, monkeypatch: pytest.MonkeyPatch, alias: str
) -> None:
    # The connection's settings dict is the one Django's handler consults for each request.
    # "other": PGJOBS["DATABASE"] names a database other than default, whose requests are
    # atomic too (a bare non_atomic_requests exempted default only).
    monkeypatch.setitem(connections.settings[alias], "ATOMIC_REQUESTS", True)
    assert connections[alias].settings_dict["ATOMIC_REQUESTS"] is True
    enqueue("test.record", queue="mail")
    executed: list[str] = []

    def record(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        executed.append(sql)
        return execute(sql, *args)

    with (
        override_settings(PGJOBS={"METRICS_TOKEN": TOKEN, "DATABASE": alias}),
        connections[alias].execute_wrapper(record),
    ):
        response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert Scrape(response.content.decode())("pgjobs_jobs", queue="mail", state="due") == 1
    # Inside the request's transaction the read could not set these (they must come first).
    assert "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY" in executed
