"""The jobs dashboard in a real browser: it refreshes itself, one fetch at a time, and reads well
in the admin's light and dark themes. Also draws docs/dashboard.png (copied from test-artifacts).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.contrib.sessions.models import Session
from django.core.signals import request_started
from django.db import connection

from django_pgjobs import enqueue_many, start_workflow
from django_pgjobs.admin import dashboard as dashboard_admin
from django_pgjobs.worker import Worker
from tests.helpers import ROOT, drain, wait_for
from tests.testapp import workflows as wf

try:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the browser fixture skips, or fails under PGJOBS_REQUIRE_BROWSER
    pass

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ARTIFACTS = ROOT / "test-artifacts"
PATH = "/admin/pgjobs/dashboard/"


@pytest.fixture
def refreshes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The page's refresh requests as the live server receives them, every 0.2 s."""
    monkeypatch.setattr(dashboard_admin, "REFRESH_SECONDS", 0.2)
    seen: list[str] = []
    lock = threading.Lock()

    def record(sender: Any, environ: dict[str, Any], **kwargs: Any) -> None:
        path = environ["PATH_INFO"] + "?" + environ.get("QUERY_STRING", "")
        if path.startswith(PATH) and path != PATH + "?":  # not the page itself
            with lock:
                seen.append(path)

    request_started.connect(record)
    yield seen
    request_started.disconnect(record)


def test_the_dashboard_refreshes_itself_without_reloading(
    browser: Any, live_server: Any, log_in: Callable[[], None], refreshes: list[str]
) -> None:
    log_in()
    browser.get(live_server.url + PATH)
    assert browser.find_element(By.ID, "pgjobs-due").text == "0"
    browser.execute_script("window.pgjobsSamePage = true")

    enqueue_many("test.record", [{}] * 3, queue="mail")
    # (Read by script: each refresh replaces the element, so a found element goes stale.)
    WebDriverWait(browser, 15).until(
        lambda d: (
            d.execute_script("return document.getElementById('pgjobs-due').textContent") == "3"
        )
    )
    queues = browser.execute_script("return document.getElementById('pgjobs-queues').textContent")
    assert "mail" in queues
    assert browser.execute_script("return window.pgjobsSamePage") is True  # not reloaded
    # Its own element's URL, never ".../dashboard/undefined" (Django's sidebar owns the id
    # pgjobs-dashboard, which the script used to read).
    assert refreshes and set(refreshes) == {PATH + "?partial=1"}


def test_a_slow_refresh_is_never_overlapped_by_the_next(
    browser: Any,
    live_server: Any,
    log_in: Callable[[], None],
    refreshes: list[str],
    other_connection: psycopg.Connection[Any],
) -> None:
    log_in()
    browser.get(live_server.url + PATH)
    wait_for(lambda: len(refreshes) >= 2, what="the page to refresh itself")

    # Hold the dashboard's statements behind a lock: the refresh in flight cannot finish.
    other_connection.execute("BEGIN")
    other_connection.execute("LOCK TABLE pgjobs_workers IN ACCESS EXCLUSIVE MODE")

    def waiting() -> list[Any]:
        # Asked on Django's connection, in autocommit: a transaction (like the one holding the
        # lock) sees pg_stat_activity as it was at its first look.
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pid, left(query, 60) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            return list(cur.fetchall())

    try:
        wait_for(waiting, what="a refresh to wait on the lock")
        stuck = len(refreshes)
        # Fifteen refresh intervals: a timer that does not wait would have started more. Less
        # than the health read's statement timeout (observability.health.READ_TIMEOUT_MS, 5 s),
        # after which the refresh in flight gives up and the next one may start.
        with pytest.raises(TimeoutException):
            WebDriverWait(browser, 3).until(lambda d: len(refreshes) > stuck)
        assert len(waiting()) == 1, waiting()
        assert (
            browser.execute_script(
                "return document.querySelector('.pgjobs-dashboard').dataset.pgjobsRefresh"
            )
            == "fetching"
        )
    finally:
        other_connection.execute("ROLLBACK")
    # Once the slow one settles, the refreshes go on.
    wait_for(lambda: len(refreshes) >= stuck + 2, what="the refreshes to resume")


def test_a_hidden_tab_makes_no_requests_and_refreshes_as_soon_as_it_shows(
    browser: Any, live_server: Any, log_in: Callable[[], None], refreshes: list[str]
) -> None:
    log_in()
    browser.get(live_server.url + PATH)
    wait_for(lambda: refreshes, what="the page to refresh itself")

    def show(hidden: bool) -> None:  # what the browser does when the tab goes to the background
        browser.execute_script(
            "Object.defineProperty(document, 'hidden', {configurable: true, value: arguments[0]});"
            "document.dispatchEvent(new Event('visibilitychange'));",
            hidden,
        )

    def state() -> str:
        return str(
            browser.execute_script(
                "return document.querySelector('.pgjobs-dashboard').dataset.pgjobsRefresh"
            )
        )

    show(True)
    wait_for(lambda: state() == "hidden", what="the refresh to pause")
    quiet = len(refreshes)
    enqueue_many("test.record", [{}] * 2)
    with pytest.raises(TimeoutException):  # ten refresh intervals
        WebDriverWait(browser, 2).until(lambda d: len(refreshes) > quiet)
    assert browser.execute_script("return document.getElementById('pgjobs-due').textContent") == "0"

    show(False)  # at once, not a refresh interval later
    WebDriverWait(browser, 10).until(
        lambda d: (
            d.execute_script("return document.getElementById('pgjobs-due').textContent") == "2"
        )
    )


def test_when_the_session_ends_the_refresh_stops_and_says_so(
    browser: Any, live_server: Any, log_in: Callable[[], None], refreshes: list[str]
) -> None:
    log_in()
    browser.get(live_server.url + PATH)
    wait_for(lambda: refreshes, what="the page to refresh itself")
    Session.objects.all().delete()  # logged out elsewhere, or the session expired
    wait_for(
        lambda: (
            browser.execute_script(
                "return document.querySelector('.pgjobs-dashboard').dataset.pgjobsRefresh"
            )
            == "stopped"
        ),
        what="the refresh to stop",
    )
    note = browser.find_element(By.CSS_SELECTOR, ".pgjobs-dashboard .errornote").text
    assert "log in again" in note
    assert browser.find_element(By.ID, "pgjobs-due").text == "0"  # not the login page pasted in
    stopped = len(refreshes)
    with pytest.raises(TimeoutException):
        WebDriverWait(browser, 2).until(lambda d: len(refreshes) > stopped)


def test_figures_and_chart_labels_are_readable_in_light_and_dark_themes(
    browser: Any, live_server: Any, log_in: Callable[[], None], make_worker: type[Worker]
) -> None:
    _a_realistic_hour()
    start_workflow(wf.greet, "a")
    start_workflow(wf.fails, "b")
    drain(make_worker(queues=["default"]))
    start_workflow(wf.greet, "c")

    log_in()
    browser.set_window_size(1280, 1200)  # the page, without the empty sidebar below it
    browser.get(live_server.url + PATH)
    ARTIFACTS.mkdir(exist_ok=True)
    for theme in ("light", "dark"):
        browser.execute_script("localStorage.setItem('theme', arguments[0])", theme)
        browser.refresh()  # the admin's theme.js applies it as the page loads
        assert browser.execute_script("return document.documentElement.dataset.theme") == theme
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg.pgjobs-chart")) == 3
        assert "billing.send_invoce" in browser.find_element(By.ID, "pgjobs-unhandled").text
        # WCAG contrast against the page: text at least 4.5:1, chart marks at least 3:1.
        for selector, prop, least in (
            (".pgjobs-y span", "color", 4.5),
            (".pgjobs-x span", "color", 4.5),
            (".pgjobs-figure h3", "color", 4.5),
            (".tile b", "color", 4.5),
            (".pgjobs-chart-completed rect", "fill", 3.0),
            (".pgjobs-chart-dead rect", "fill", 3.0),
            (".pgjobs-chart-depth polyline", "stroke", 3.0),
        ):
            worst = browser.execute_script(_CONTRAST, selector, prop)
            assert worst is not None and worst >= least, (theme, selector, worst)
        assert browser.save_screenshot(str(ARTIFACTS / f"dashboard-{theme}.png"))


# The lowest contrast ratio between the elements' colour property and the page's background.
_CONTRAST = """
const [selector, prop] = arguments;
function luminance(css) {
  const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
const page = luminance(getComputedStyle(document.body).backgroundColor);
let worst = null;
for (const el of document.querySelectorAll(selector)) {
  const own = luminance(getComputedStyle(el)[prop]);
  const ratio = (Math.max(own, page) + 0.05) / (Math.min(own, page) + 0.05);
  worst = worst === null ? ratio : Math.min(worst, ratio);
}
return worst;
"""


def _a_realistic_hour() -> None:
    """An hour of traffic written as rows, as a busy deployment would have left them."""
    with connection.cursor() as cur:
        # Completions every minute (a daily rhythm's slope and a burst), a few dead letters.
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, created_at, scheduled_for, "
            "completed_at, attempt) "
            "SELECT 'test.record', (ARRAY['default', 'mail', 'reports'])[1 + n % 3], "
            "       'completed', t - interval '2 seconds', t - interval '2 seconds', t, 1 "
            "FROM generate_series(0, 59) AS m, "
            "     generate_series(1, 30 + (20 * sin(m / 6.0))::int "
            "                        + CASE WHEN m BETWEEN 38 AND 41 THEN 60 ELSE 0 END) AS n, "
            "     LATERAL (SELECT now() - make_interval(mins => m, secs => n % 50)) AS t(t)"
        )
        cur.execute(
            "INSERT INTO pgjobs_failed_jobs (job_name, queue, attempt, max_attempts, error, "
            "original_created_at, failed_at) "
            "SELECT 'test.fail', 'payments', 3, 3, 'TimeoutError: gateway timeout', "
            "       now() - make_interval(mins => m + 4), now() - make_interval(mins => m) "
            "FROM unnest(ARRAY[3, 17, 18, 40, 52]) AS m"
        )
        # A backlog: mail is behind, reports are scheduled for later, payments is running.
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, created_at, scheduled_for) "
            "SELECT 'test.record', 'mail', now() - make_interval(secs => n * 7), "
            "       now() - make_interval(secs => n * 7) FROM generate_series(1, 140) AS n"
        )
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, scheduled_for) "
            "SELECT 'test.record', 'reports', now() + interval '1 hour' "
            "FROM generate_series(1, 12)"
        )
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, attempt, locked_by, "
            "locked_at, lease_expires_at) SELECT 'test.record', 'payments', 'running', 1, "
            "'web-1', now(), now() + interval '1 minute' FROM generate_series(1, 4)"
        )
        # A typo no handler claims, waiting for twelve minutes.
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, created_at, scheduled_for) "
            "SELECT 'billing.send_invoce', now() - interval '12 minutes', "
            "       now() - interval '12 minutes' FROM generate_series(1, 3)"
        )
        cur.execute(
            "INSERT INTO pgjobs_workers (id, hostname, pid, queues, concurrency) "
            "VALUES ('web-1', 'web-1', 4242, '[]', 8), ('web-2', 'web-2', 4243, '[\"mail\"]', 4)"
        )
