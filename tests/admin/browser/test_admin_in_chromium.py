"""The admin in a real browser: headless Chromium driven by Selenium (the ``browser`` fixture is
conftest's: skipped where Chromium is missing, a failure under PGJOBS_REQUIRE_BROWSER=1)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from django_pgjobs import enqueue, enqueue_many, get_job
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.worker import Worker
from tests.helpers import ROOT

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the browser fixture (conftest) skips, or fails under PGJOBS_REQUIRE_BROWSER
    pass

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ARTIFACTS = ROOT / "test-artifacts"


def test_retry_a_failed_job_and_see_the_dashboard(
    browser: Any, live_server: Any, log_in: Callable[[], None], make_worker: type[Worker]
) -> None:
    job_id = enqueue("test.flaky", {"label": "browser", "succeed_on": 2})
    make_worker().run_once()  # the first attempt fails: the job awaits its retry
    log_in()

    browser.get(f"{live_server.url}/admin/pgjobs/job/")
    row = WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.XPATH, f"//tr[contains(., '{short_id(job_id)}')]")
    )
    assert "awaiting retry" in row.text
    row.find_element(By.NAME, "_selected_action").click()
    browser.find_element(By.CSS_SELECTOR, "select[name=action] option[value=retry_now]").click()
    browser.find_element(By.NAME, "index").click()
    assert "will run again now" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text

    make_worker().run_once()  # the retried attempt succeeds
    browser.refresh()
    row = browser.find_element(By.XPATH, f"//tr[contains(., '{short_id(job_id)}')]")
    assert "completed" in row.text
    assert get_job(job_id).status == "completed"

    # The job-name filter is django-admin-list-filter-dropdown's select box: picking an option
    # navigates to the filtered list.
    other = enqueue("test.record", {})
    Select(browser.find_element(By.CSS_SELECTOR, ".admin-filter-jobname select")).select_by_value(
        "?job_name=test.flaky"
    )
    WebDriverWait(browser, 10).until(lambda d: "job_name=test.flaky" in d.current_url)
    rows = browser.find_element(By.ID, "result_list").text
    assert short_id(job_id) in rows and short_id(other) not in rows

    # Something to look at: a backlog in two queues, jobs scheduled for later, dead letters.
    enqueue_many("test.record", [{}] * 40, queue="mail")
    enqueue_many("test.record", [{}] * 12, queue="reports", scheduled_for=timedelta(hours=1))
    for n in range(3):
        enqueue("test.fail", {"message": f"gateway timeout #{n}"}, max_attempts=1)
    make_worker(concurrency=8, queues=["default"]).run_once()

    browser.get(f"{live_server.url}/admin/pgjobs/dashboard/")
    WebDriverWait(browser, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "svg.pgjobs-chart")) == 3
    )
    assert "Completed per minute" in browser.page_source
    assert browser.find_element(By.ID, "pgjobs-due").text == "40"
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))


def _rgb(css: str) -> tuple[float, float, float, float]:
    parts = [float(p) for p in css[css.index("(") + 1 : css.index(")")].split(",")]
    return (parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else 1.0)


def _luminance(rgb: tuple[float, ...]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _over(top: tuple[float, float, float, float], under: tuple[float, ...]) -> tuple[float, ...]:
    alpha = top[3]
    return tuple(alpha * t + (1 - alpha) * u for t, u in zip(top[:3], under[:3], strict=True))


def test_lists_fit_1400_px_and_progress_labels_read_in_light_and_dark_mode(
    browser: Any, live_server: Any, log_in: Callable[[], None], make_worker: type[Worker]
) -> None:
    from django_pgjobs import start_workflow
    from django_pgjobs.models import Job, Schedule
    from django_pgjobs.models import Worker as WorkerRow
    from tests.testapp import workflows as wf

    slow = enqueue("test.record", queue="nightly-reconciliation-eu-west")
    almost = enqueue("test.record")
    Job.objects.filter(id=slow).update(progress=3, progress_message="warming caches " * 10)
    Job.objects.filter(id=almost).update(progress=97, progress_message="nearly there")
    # Unbreakable text, as real errors have: a URL, a long dotted name.
    url = "https://payments.example.com/v1/merchants/acct_1NfZ8kLkdIwHu7ixA0e/settlements/batch"
    for n in range(3):
        enqueue("test.fail", {"message": f"{url}?page={n} returned 503"}, max_attempts=1)
    make_worker(queues=["default"]).run_once()
    enqueue("test.fail", {"message": f"{url}: connection refused"}, max_attempts=3)
    make_worker(queues=["default"]).run_once()
    enqueue("billing.reconcile_settlements_for_every_merchant_account_in_the_eu_region", {})
    Schedule.objects.create(
        name="weekday-business-hours-report",
        cron="*/15 9-17 * * 1-5",
        timezone="America/Argentina/Buenos_Aires",
        job_name="test.record",
    )
    WorkerRow.objects.create(
        id="worker-eu-west-1a-0f3c9d2e", hostname="ip-10-0-12-34.eu-west-1.compute.internal",
        pid=4242, queues=["default", "mail", "reports", "nightly-reconciliation-eu-west"],
    )  # fmt: skip
    start_workflow(wf.greet, "ada", workflow_id="order-2026-12-03-000123")
    from django_pgjobs.queues import pause_queue, set_queue_limits

    set_queue_limits(
        "nightly-reconciliation-eu-west", concurrency=4, worker_concurrency=2, rate_limit=100,
        rate_period=60, partition_concurrency=1, partition_rate_limit=10, fair=True, timeout=900,
    )  # fmt: skip
    pause_queue("nightly-reconciliation-eu-west")
    log_in()
    browser.set_window_size(1400, 1000)

    for model in ("job", "failedjob", "queue", "schedule", "worker", "workflowexecution"):
        browser.get(f"{live_server.url}/admin/pgjobs/{model}/")
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "result_list"))
        # The admin wraps the table in a box that scrolls sideways on its own (.results): the
        # page may not scroll while the table does.
        overflow = browser.execute_script(
            "const page = document.documentElement;"
            "const box = document.querySelector('#changelist .results');"
            "return Math.max(page.scrollWidth - page.clientWidth,"
            "                box.scrollWidth - box.clientWidth);"
        )
        widths = browser.execute_script(
            "return [...document.querySelectorAll('#result_list thead th')]"
            ".map(th => th.className + '=' + th.getBoundingClientRect().width)"
            ".concat(['box=' + document.querySelector('#changelist .results').clientWidth,"
            "'filter=' + (document.querySelector('#changelist-filter') || {}).clientWidth]);"
        )
        assert overflow <= 0, f"the {model} list scrolls sideways by {overflow} px: {widths}"
    browser.get(f"{live_server.url}/admin/pgjobs/schedule/")
    cron_lines = browser.execute_script(
        "const r = document.createRange();"
        "r.selectNodeContents(document.querySelector('td.field-cron'));"
        "return r.getClientRects().length;"
    )
    assert cron_lines == 1  # the cron expression does not wrap

    for scheme in ("light", "dark"):
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        browser.get(f"{live_server.url}/admin/pgjobs/job/")
        page_bg = _rgb(
            browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        )
        assert (_luminance(page_bg) < 0.2) == (scheme == "dark")  # the theme really switched
        for job_id in (slow, almost):
            bar = browser.find_element(
                By.XPATH, f"//tr[contains(., '{short_id(job_id)}')]//div[@class='pgjobs-progress']"
            )
            label = bar.find_element(By.CLASS_NAME, "pgjobs-progress-label")
            fill = bar.find_element(By.CLASS_NAME, "pgjobs-progress-fill")
            assert label.size["width"] >= bar.size["width"] - 2  # the label spans the bar
            text = _rgb(label.value_of_css_property("color"))
            under = _rgb(bar.value_of_css_property("background-color"))
            filled = _over(_rgb(fill.value_of_css_property("background-color")), under)
            worst = min(_contrast(text, under), _contrast(text, filled))
            assert worst >= 4.5, f"{scheme}: label contrast {worst:.2f} on job {job_id}"
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "job-list-dark.png"))
