"""The admin in a real browser: headless Chromium driven by Selenium.

Skipped only where Chromium is missing; CI installs it and sets PGJOBS_REQUIRE_BROWSER=1, which
turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from django_pgjobs import enqueue, enqueue_many, get_job
from django_pgjobs.worker import Worker
from tests.helpers import ROOT

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    SELENIUM = False
else:
    SELENIUM = True

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("PGJOBS_REQUIRE_BROWSER"):
        raise RuntimeError("PGJOBS_REQUIRE_BROWSER is set but chromium/chromedriver are missing")
    pytest.skip(
        "needs chromium and chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
if not SELENIUM:
    if os.environ.get("PGJOBS_REQUIRE_BROWSER"):  # in CI a missing selenium is a failure
        raise RuntimeError("PGJOBS_REQUIRE_BROWSER is set but selenium is not installed")
    pytest.skip("needs selenium (pip install -e '.[test]')", allow_module_level=True)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    assert CHROMIUM and CHROMEDRIVER  # (the module skipped or failed above otherwise)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1400",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


def test_retry_a_failed_job_and_see_the_dashboard(
    browser: Any, live_server: Any, make_worker: type[Worker]
) -> None:
    User.objects.create_superuser("admin", "admin@example.com", "admin")
    job_id = enqueue("test.flaky", {"label": "browser", "succeed_on": 2})
    make_worker().run_once()  # the first attempt fails: the job awaits its retry

    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The login POST must have landed before we navigate, or the list redirects to the login.
    WebDriverWait(browser, 20).until(lambda d: "/admin/login/" not in d.current_url)

    browser.get(f"{live_server.url}/admin/pgjobs/job/")
    row = WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.XPATH, f"//tr[contains(., '{str(job_id)[:8]}')]")
    )
    assert "awaiting retry" in row.text
    row.find_element(By.NAME, "_selected_action").click()
    browser.find_element(By.CSS_SELECTOR, "select[name=action] option[value=retry_now]").click()
    browser.find_element(By.NAME, "index").click()
    assert "will run again now" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text

    make_worker().run_once()  # the retried attempt succeeds
    browser.refresh()
    row = browser.find_element(By.XPATH, f"//tr[contains(., '{str(job_id)[:8]}')]")
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
    assert str(job_id)[:8] in rows and str(other)[:8] not in rows

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
