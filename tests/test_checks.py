from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.test import override_settings

from django_pgjobs.checks import check_database, check_queue_router, check_settings


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def run_settings_check() -> list[str]:
    return ids(check_settings(app_configs=None, databases=None))


def run_database_check() -> list[str]:
    return ids(check_database(app_configs=None, databases=None))


def test_default_configuration_passes() -> None:
    assert run_settings_check() == []
    assert run_database_check() == []


def test_e001_database_is_not_postgresql() -> None:
    sqlite = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    # The check only reads settings; nothing connects to the overridden database.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(DATABASES=sqlite):
            assert run_database_check() == ["pgjobs.E001"]


@pytest.mark.parametrize(
    ("engine", "postgresql"),
    [
        ("django.db.backends.postgresql", True),
        ("django.contrib.gis.db.backends.postgis", True),  # GeoDjango: told by its name
        ("tests.custom_backend", True),  # any other: its DatabaseWrapper's vendor
        ("django.db.backends.sqlite3", False),
        ("no.such.backend", False),
    ],
)
def test_e001_takes_every_postgresql_backend_for_postgresql(engine: str, postgresql: bool) -> None:
    databases = {"default": {**settings.DATABASES["default"], "ENGINE": engine}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(DATABASES=databases):
            assert ("pgjobs.E001" in run_database_check()) is not postgresql


def test_e002_psycopg2_is_refused() -> None:
    with mock.patch("django.db.backends.postgresql.psycopg_any.is_psycopg3", False):
        assert run_database_check() == ["pgjobs.E002"]


def test_e003_pgjobs_is_not_a_dict() -> None:
    with override_settings(PGJOBS=["not", "a", "dict"]):
        assert run_settings_check() == ["pgjobs.E003"]


def test_e007_an_unknown_key_is_a_typo() -> None:
    with override_settings(PGJOBS={"MAX_ATEMPTS": 3}):
        assert run_settings_check() == ["pgjobs.E007"]


def test_e007_suggests_the_closest_known_setting() -> None:
    with override_settings(PGJOBS={"MAX_ATEMPTS": 3, "LEASE_SECOND": 5, "ZZZ": 1}):
        (error,) = check_settings(app_configs=None, databases=None)
    assert error.hint is not None
    assert error.hint.startswith(
        "Did you mean LEASE_SECONDS for LEASE_SECOND, MAX_ATTEMPTS for MAX_ATEMPTS? Known"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"MAX_ATTEMPTS": 0},
        {"MAX_ATTEMPTS": "3"},
        {"RETRY_DELAY": -1},
        {"POLL_INTERVAL": 0},
        {"RETENTION": "1 day"},
        {"CONCURRENCY": 0},
        {"RETRY_JITTER": 2},
        {"POLL_ONLY": "yes"},
        {"LISTEN_DATABASE": 1},
        {"LISTEN_DATABASE": ["default"]},
        {"SHUTDOWN_GRACE": -5},
        {"APP_VERSION": ""},
        {"PREFETCH": -1},
        {"WORKFLOW_RETENTION": 0},
        {"APP_VERSION": 3},
        {"APP_VERSION": "x" * 65},
        {"MAX_PAYLOAD_BYTES": 0},
        {"MAX_PAYLOAD_BYTES": "1MB"},
        {"MAX_PAYLOAD_BYTES": True},
        {"MAX_PAYLOAD_BYTES": 1.5},
        # A lease's end or a retry's due time would lie beyond the stored range (0014).
        {"LEASE_SECONDS": 1e12},
        {"RETRY_DELAY_MAX": 1e12},
        # now() less a retention before 4713 BC: every prune failed, so every worker loop.
        {"RETENTION": 10**12},
        {"WORKFLOW_RETENTION": timedelta(days=10**7)},
        # Past poll()'s 24.8 days, the scheduler's thread died.
        {"POLL_INTERVAL": 30 * 86400},
    ],
)
def test_e004_bad_values(bad: dict[str, Any]) -> None:
    with override_settings(PGJOBS=bad):
        assert run_settings_check() == ["pgjobs.E004"]


@pytest.mark.parametrize("value", [None, 2, 10 * 1024 * 1024])
def test_max_payload_bytes_may_be_none_or_a_size(value: int | None) -> None:
    with override_settings(PGJOBS={"MAX_PAYLOAD_BYTES": value}):
        assert run_settings_check() == []


def test_e005_heartbeat_must_fit_twice_in_the_lease() -> None:
    with override_settings(PGJOBS={"LEASE_SECONDS": 10, "HEARTBEAT_SECONDS": 6}):
        assert run_settings_check() == ["pgjobs.E005"]


@pytest.mark.parametrize(
    "value", [0, -1, "1h", True, float("inf"), float("nan"), 366 * 86400 + 1, timedelta(0)]
)
def test_e008_timeout_must_be_none_or_positive_seconds_up_to_a_year(value: Any) -> None:
    with override_settings(PGJOBS={"TIMEOUT": value}):
        assert run_settings_check() == ["pgjobs.E008"]


@pytest.mark.parametrize("value", [None, 0.5, 7200, timedelta(hours=2), 366 * 86400])
def test_timeout_may_be_none_for_no_limit_or_seconds(value: Any) -> None:
    with override_settings(PGJOBS={"TIMEOUT": value}):
        assert run_settings_check() == []


def test_e006_unknown_database_alias() -> None:
    with override_settings(PGJOBS={"DATABASE": "jobs"}):
        assert run_database_check() == ["pgjobs.E006"]


@pytest.mark.parametrize("alias", [["x"], {"a": 1}])
def test_an_alias_that_is_no_str_is_reported_not_raised(alias: Any) -> None:
    """An unhashable one raised TypeError from the check, so from every command."""
    with override_settings(PGJOBS={"DATABASE": alias, "LISTEN_DATABASE": alias}):
        assert run_database_check() == ["pgjobs.E006"]  # LISTEN_DATABASE: E004 alone
        assert "pgjobs.E004" in run_settings_check()


def test_e009_listen_database_must_be_a_postgresql_alias() -> None:
    with override_settings(PGJOBS={"LISTEN_DATABASE": "direct"}):
        [error] = check_database(app_configs=None, databases=None)
    assert (error.id, error.msg) == (
        "pgjobs.E009",
        "PGJOBS['LISTEN_DATABASE'] is 'direct', which is not in settings.DATABASES.",
    )
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(
            DATABASES={**settings.DATABASES, "direct": sqlite},
            PGJOBS={"LISTEN_DATABASE": "direct"},
        ):
            assert run_database_check() == ["pgjobs.E009"]
    with override_settings(PGJOBS={"LISTEN_DATABASE": "other"}):
        assert run_database_check() == []
        assert run_settings_check() == []


def test_w002_listen_database_does_nothing_under_poll_only() -> None:
    with override_settings(PGJOBS={"LISTEN_DATABASE": "other", "POLL_ONLY": True}):
        [warning] = check_settings(app_configs=None, databases=None)
    assert warning.id == "pgjobs.W002"
    assert warning.msg == "LISTEN_DATABASE is set but POLL_ONLY is True, so nothing listens there."


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_e004_non_finite_numbers(value: float) -> None:
    with override_settings(PGJOBS={"LEASE_SECONDS": value}):
        assert "pgjobs.E004" in run_settings_check()


def test_e001_points_at_how_to_get_a_postgresql_for_development() -> None:
    from django_pgjobs.checks import POSTGRESQL_FOR_DEVELOPMENT
    from tests.unit.test_docs import ROOT, broken_link

    mysql = {"default": {"ENGINE": "django.db.backends.mysql", "NAME": "shop"}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(DATABASES=mysql):
            [error] = check_database(app_configs=None, databases=None)
    assert "'django.db.backends.mysql'" in error.msg
    assert error.hint is not None
    assert POSTGRESQL_FOR_DEVELOPMENT in error.hint
    assert "pip install 'django-pgjobs[embedded]'" in error.hint
    # The section exists (a renamed heading would leave the hint pointing nowhere).
    assert broken_link(ROOT / "README.md", POSTGRESQL_FOR_DEVELOPMENT) is None


def test_e020_the_admin_needs_the_dropdown_filter_app() -> None:
    from django.test import modify_settings

    from django_pgjobs.checks import check_admin_filters

    assert check_admin_filters(app_configs=None) == []
    with modify_settings(INSTALLED_APPS={"remove": ["django_admin_listfilter_dropdown"]}):
        assert ids(check_admin_filters(app_configs=None)) == ["pgjobs.E020"]
        with modify_settings(INSTALLED_APPS={"remove": ["django.contrib.admin"]}):
            assert check_admin_filters(app_configs=None) == []


def test_e021_the_queue_needs_time_zone_support() -> None:
    from django_pgjobs.checks import check_time_zone_support

    assert check_time_zone_support(app_configs=None) == []
    with override_settings(USE_TZ=False):
        assert ids(check_time_zone_support(app_configs=None)) == ["pgjobs.E021"]


def test_e013_a_timeout_postgresql_would_store_as_zero_is_malformed() -> None:
    from django_pgjobs.checks import check_queues

    with override_settings(PGJOBS={"QUEUES": {"q": {"timeout": 1e-7}}}):
        errors = check_queues(app_configs=None, databases=None)
    assert [(e.id, e.msg) for e in errors] == [
        (
            "pgjobs.E013",
            "PGJOBS[\"QUEUES\"]['q']: timeout must be seconds from 0.001 to 31622400 (a year), as "
            "a number or a timedelta, or None for no timeout; got 1e-07.",
        )
    ]


def test_e013_paused_is_an_option_of_the_settings_and_takes_a_bool() -> None:
    from django_pgjobs.checks import check_queues

    queues = {"held": {"paused": True}, "bad": {"paused": "yes"}, "typo": {"pause": True}}
    with override_settings(PGJOBS={"QUEUES": queues}):
        errors = check_queues(app_configs=None, databases=None)
    assert [(e.id, e.msg) for e in errors] == [
        ("pgjobs.E013", "PGJOBS[\"QUEUES\"]['bad']: paused must be True or False; got 'yes'."),
        (
            "pgjobs.E013",
            "PGJOBS[\"QUEUES\"]['typo']: unknown option 'pause'; the options are concurrency, "
            "worker_concurrency, rate_limit, rate_period, partition_concurrency, "
            "partition_rate_limit, fair, timeout, paused.",
        ),
    ]


def test_e013_a_malformed_queue_is_named_and_told_in_python_values() -> None:
    from django_pgjobs.checks import check_queues

    queues = {"mail": {"concurrency": 0, "rate_period": timedelta(days=2)}, "ok": {"fair": True}}
    with override_settings(PGJOBS={"QUEUES": queues}):
        errors = check_queues(app_configs=None, databases=None)
    assert [(e.id, e.msg) for e in errors] == [
        (
            "pgjobs.E013",
            "PGJOBS[\"QUEUES\"]['mail']: concurrency must be a whole number from 1 to "
            "2147483647, or None for no limit; got 0.",
        ),
        (
            "pgjobs.E013",
            "PGJOBS[\"QUEUES\"]['mail']: rate_period must be seconds from 0.001 to 86400 (a "
            "day), as a number or a timedelta, or None for the default (1 second); got 2 days, "
            "0:00:00 (172800 s).",
        ),
    ]


def test_e013_a_rate_period_without_a_rate_limit_is_malformed_as_everywhere_else() -> None:
    from django_pgjobs.checks import check_queues
    from django_pgjobs.queues.declarations import RATE_PERIOD_ALONE

    queues = {"x": {"rate_period": 5}, "ok": {"rate_limit": 3, "rate_period": 5}}
    with override_settings(PGJOBS={"QUEUES": queues}):
        errors = check_queues(app_configs=None, databases=None)
    assert [(e.id, e.msg) for e in errors] == [
        ("pgjobs.E013", f"PGJOBS[\"QUEUES\"]['x']: {RATE_PERIOD_ALONE}")
    ]
    assert "refuse to run" in (errors[0].hint or "")


@pytest.mark.parametrize(
    "health",
    [
        "strict",
        {"DEAD_RATO": 0.5},
        {"DEAD_RATIO": 1.5},
        {"DEAD_RATIO": "30%"},
        {"BLOAT_RATIO": -0.1},
        {"DEAD_ROWS": 1.5},
        {"XID_AGE": True},
        {"BLOAT_BYTES": -1},
        {"XMIN_AGE_TRANSACTIONS": "1M"},
        {"XMIN_AGE_SECONDS": -1},
        {"XMIN_AGE_SECONDS": float("inf")},
    ],
)
def test_e040_health_thresholds_must_be_known_numbers_in_range(health: Any) -> None:
    with override_settings(PGJOBS={"HEALTH": health}):
        assert run_settings_check() == ["pgjobs.E040"]


@pytest.mark.parametrize(
    "health",
    [{}, {"DEAD_RATIO": 0, "XMIN_AGE_SECONDS": timedelta(minutes=10)}, {"XID_AGE": 10**9}],
)
def test_health_thresholds_given_in_part_are_merged_over_the_defaults(health: Any) -> None:
    from django_pgjobs.conf import HEALTH_DEFAULTS, conf

    with override_settings(PGJOBS={"HEALTH": health}):
        assert run_settings_check() == []
        assert {**HEALTH_DEFAULTS, **health} == conf.HEALTH


def run_router_check() -> list[Any]:
    return check_queue_router(app_configs=None, databases=None)


def test_w003_a_queue_of_its_own_needs_the_router() -> None:
    with override_settings(PGJOBS={"DATABASE": "other"}):
        [warning] = run_router_check()
    assert warning.id == "pgjobs.W003"
    assert warning.msg.startswith(
        "PGJOBS['DATABASE'] is 'other', but the routers let django-pgjobs' migrations run on "
        "'default' too"
    )
    assert "Add 'django_pgjobs.routers.QueueDatabaseRouter' to DATABASE_ROUTERS, first" in (
        warning.hint
    )
    with override_settings(
        PGJOBS={"DATABASE": "other"},
        DATABASE_ROUTERS=["django_pgjobs.routers.QueueDatabaseRouter"],
    ):
        assert run_router_check() == []


class QueueOnOtherOnly:
    """A project's own router that already keeps the queue on 'other'."""

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
        return db == "other" if app_label == "pgjobs" else None


class PrimaryReplicaRouter:
    """Django's documented pattern: allow_migrate answers True for every app on every alias."""

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
        return True


def test_w003_the_router_placed_after_one_that_answers_for_every_app_is_told_to_go_first() -> None:
    # The hint said "Add QueueDatabaseRouter" though it was there: its place was the mistake.
    routers = [f"{__name__}.PrimaryReplicaRouter", "django_pgjobs.routers.QueueDatabaseRouter"]
    with override_settings(PGJOBS={"DATABASE": "other"}, DATABASE_ROUTERS=routers):
        [warning] = run_router_check()
    assert warning.id == "pgjobs.W003"
    assert warning.hint.startswith(
        "'django_pgjobs.routers.QueueDatabaseRouter' is in DATABASE_ROUTERS, but a router before "
        "it answers allow_migrate for django-pgjobs first: put it before routers that answer for "
        "every app (first in the list)."
    )
    assert "Add" not in warning.hint
    with override_settings(PGJOBS={"DATABASE": "other"}, DATABASE_ROUTERS=routers[::-1]):
        assert run_router_check() == []


def test_w003_a_projects_own_router_that_keeps_the_queue_in_place_is_enough() -> None:
    with override_settings(
        PGJOBS={"DATABASE": "other"}, DATABASE_ROUTERS=[f"{__name__}.QueueOnOtherOnly"]
    ):
        assert run_router_check() == []


def test_w003_the_queue_on_default_needs_no_router() -> None:
    assert run_router_check() == []
    with override_settings(PGJOBS={"DATABASE": "jobs"}):
        assert run_router_check() == []  # not in DATABASES: pgjobs.E006 says so


def test_w003_points_at_the_section_on_a_database_of_its_own() -> None:
    from django_pgjobs.checks import SEPARATE_DATABASE
    from tests.unit.test_docs import ROOT, broken_link

    assert broken_link(ROOT / "README.md", SEPARATE_DATABASE) is None
