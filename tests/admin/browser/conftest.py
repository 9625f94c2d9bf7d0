"""Headless Chromium for the admin's browser tests.

Skipped only where Chromium, chromedriver or selenium is missing; CI installs them and sets
PGJOBS_REQUIRE_BROWSER=1, which turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from django.contrib.auth.models import User

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    if not (CHROMIUM and CHROMEDRIVER):
        _unavailable("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
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


def _unavailable(why: str) -> NoReturn:
    if os.environ.get("PGJOBS_REQUIRE_BROWSER"):
        pytest.fail(f"PGJOBS_REQUIRE_BROWSER is set but {why}")
    pytest.skip(why)


@pytest.fixture
def log_in(browser: Any, live_server: Any) -> Callable[[], None]:
    """Log a new superuser in through the admin's login form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def log_in() -> None:
        User.objects.create_superuser("admin", "admin@example.com", "admin")
        browser.get(f"{live_server.url}/admin/login/")
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys("admin")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        # The login POST must have landed before the test navigates, or it meets the login.
        WebDriverWait(browser, 20).until(lambda d: "/admin/login/" not in d.current_url)

    return log_in
