"""Pausing and resuming a journey from its page in a real browser: headless Chromium against
the app under a real WSGI server on loopback, on SQLite and PostgreSQL. A marketer signs in,
clicks Pause (the badge says paused, the database agrees), clicks Resume (live again), and
the audit page lists both under their email. No page logs a console error.

Needs ``chromium`` and ``chromium-driver`` (Debian), like tests/test_browser.py."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest
from browser import (
    WAIT,
    browser_fixture,
    console_errors,
    path_of,
    serving,
    sign_in,
)
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.models import Journey
from campaigns.store.users import add_user
from tests.kit import START

pytestmark = pytest.mark.browser

EMAIL = "marketer@example.com"
PASSWORD = "correct horse battery"
JOURNEY = textwrap.dedent(
    """\
    journey: renewal_ja
    name: 契約更新のご案内
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: rest, wait: 2 days}
      - {id: hi, email: {template: onboarding_tips, subject: "ご契約更新のお知らせ"}}
    """
)


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    yield from browser_fixture()


def status_of(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "journey-status").text


def click(driver: WebDriver, action: str, expected: str) -> None:
    """Press the ``action`` button and wait for the next page to show ``expected``."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, f"button[name=do][value={action}]").click()
    WebDriverWait(driver, WAIT).until(staleness_of(old))  # the form's answer has loaded
    WebDriverWait(driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
        lambda d: status_of(d) == expected,
        message=f"after {action} the badge did not say {expected}",
    )


def test_pause_and_resume_from_the_journey_page(db, build_app, driver):
    with db.session() as s, s.begin():
        add_user(s, EMAIL, PASSWORD, START, name="佐藤 花子", role="marketer")
        deploy(s, parse_journey(JOURNEY, "renewal_ja.yaml"), JOURNEY, "renewal_ja.yaml")

    def stored() -> str:
        with db.session() as s:
            return s.scalars(select(Journey.status)).one()

    with serving(lambda base: build_app(base_url=base)) as (base, _):
        driver.delete_all_cookies()
        sign_in(driver, base, EMAIL, PASSWORD, page="/journeys/renewal_ja")
        WebDriverWait(driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
            lambda d: status_of(d) == "live"
        )
        assert driver.find_element(By.TAG_NAME, "h1").text == "契約更新のご案内"

        click(driver, "pause", "paused")
        assert stored() == "paused" and path_of(driver) == "/journeys/renewal_ja"
        assert "paused since" in driver.find_element(By.CSS_SELECTOR, ".lifecycle").text
        assert driver.find_elements(By.CSS_SELECTOR, "button[value=pause]") == []

        click(driver, "resume", "live")
        assert stored() == "live"

        old = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.LINK_TEXT, "Audit").click()  # from the nav
        WebDriverWait(driver, WAIT).until(staleness_of(old))
        assert path_of(driver) == "/audit"
        rows = WebDriverWait(driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "table.audit tbody tr[data-action]")
        )
        seen = [
            (r.get_attribute("data-action"), r.find_elements(By.TAG_NAME, "td")[1].text)
            for r in rows
        ]
        assert seen == [("resume", EMAIL), ("pause", EMAIL)]
        assert console_errors(driver) == []
