"""The metrics' settings: METRICS_CACHE_SECONDS and METRICS_TOKEN are checked (pgjobs.E004, as
every setting's value), and a token's check never repeats the token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings

from django_pgjobs.checks import check_settings
from django_pgjobs.conf import conf


def errors() -> list[Any]:
    return check_settings(app_configs=None, databases=None)


@pytest.mark.parametrize("value", [0, 0.5, 10, 60.0, timedelta(seconds=30)], ids=repr)
def test_the_cache_may_be_any_number_of_seconds_from_zero(value: Any) -> None:
    with override_settings(PGJOBS={"METRICS_CACHE_SECONDS": value}):
        assert errors() == []
        expected = value.total_seconds() if isinstance(value, timedelta) else value
        window = conf.METRICS_CACHE_SECONDS
        assert window == expected


@pytest.mark.parametrize("value", [-1, "10", None, True, float("nan")], ids=repr)
def test_a_cache_that_is_not_seconds_is_e004(value: Any) -> None:
    with override_settings(PGJOBS={"METRICS_CACHE_SECONDS": value}):
        [error] = errors()
    assert error.id == "pgjobs.E004"
    assert "METRICS_CACHE_SECONDS" in error.msg


def test_the_cache_defaults_to_ten_seconds_and_the_token_to_none() -> None:
    with override_settings(PGJOBS={}):
        assert (conf.METRICS_CACHE_SECONDS, conf.METRICS_TOKEN) == (10.0, None)


@pytest.mark.parametrize(
    "token",
    [
        "short-token",
        "",
        " padded-token-of-enough-length ",
        " " * 32,
        "\t" * 20,
        1234567890123456789,
        b"x" * 32,
        True,
        "ünïcode-token-of-enough-length",
        "token-of-enough-length\x0b-inside",
    ],
    ids=[
        "short",
        "empty",
        "padded",
        "spaces",
        "tabs",
        "int",
        "bytes",
        "true",
        "non-ascii",
        "control",
    ],
)
def test_a_token_that_is_not_a_long_enough_str_is_e004_and_never_shown(token: Any) -> None:
    with override_settings(PGJOBS={"METRICS_TOKEN": token}):
        [error] = errors()
    assert error.id == "pgjobs.E004"
    assert "METRICS_TOKEN" in error.msg
    assert str(token) not in error.msg or not str(token)


@pytest.mark.parametrize("token", ["", 0, False, True, 1, 1234567890123456789], ids=repr)
def test_an_empty_token_or_one_not_a_str_reads_as_none(token: Any) -> None:
    # What the view compares against: an empty token is no token (the view is the staff's),
    # and True was the token "True".
    with override_settings(PGJOBS={"METRICS_TOKEN": token}):
        assert conf.METRICS_TOKEN is None


def test_a_long_token_is_accepted() -> None:
    with override_settings(PGJOBS={"METRICS_TOKEN": "k3Jx9-vQ2mZr8LpT0aYw"}):
        assert errors() == []
        assert conf.METRICS_TOKEN == "k3Jx9-vQ2mZr8LpT0aYw"
