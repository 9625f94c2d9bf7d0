"""The metrics view: staff users and holders of PGJOBS["METRICS_TOKEN"] only (compared in
constant time); never open by default; the database gauges in the format the scraper asks for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
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
    user = User.objects.create_user("former", is_staff=True)
    client.force_login(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert client.get(URL).status_code == 403


def test_staff_see_the_database_gauges(client: Client) -> None:
    enqueue("test.record", queue="mail")
    client.force_login(User.objects.create_user("ops", is_staff=True))
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
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", "Bearer ünïcode-token-of-length"],
    ids=["longer", "shorter", "empty", "non-ascii"],
)
def test_a_wrong_token_is_401(client: Client, header: str) -> None:
    response = client.get(URL, headers={"Authorization": header})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert b"pgjobs_jobs" not in response.content


@pytest.mark.usefixtures("with_token")
def test_a_wrong_token_is_refused_even_to_a_staff_session(client: Client) -> None:
    client.force_login(User.objects.create_user("ops", is_staff=True))
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


@pytest.mark.usefixtures("with_token")
def test_only_get_and_head(client: Client) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.head(URL, headers=auth).status_code == 200
    assert client.post(URL, headers=auth).status_code == 405
