"""The account pages in a real browser: headless Chromium against the app under a real WSGI
server on loopback, on SQLite and PostgreSQL, after ``campaigns demo`` (with health rows for
its accounts). The account page shows the health chart, the contacts with their personas and
the timeline; "My accounts" sorts by health when its header is clicked, both ways; the Health
page draws its charts; no page loads anything from another host or logs a console error.

Needs ``chromium`` and ``chromium-driver`` (Debian), like tests/test_browser.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from browser import (
    artifacts_dir,
    browser_fixture,
    console_errors,
    path_of,
    serving,
    sign_in,
)
from conftest import BACKENDS, Database, _postgres_database
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import func, select

from campaigns import config as settings_module
from campaigns.journeys.scorecards import load_scorecards
from campaigns.store.db import make_engine, make_sessionmaker
from campaigns.store.models import HealthScore
from campaigns.store.users import add_user
from campaigns.web import create_app
from tests.accounts_kit import DEMO_OWNER, falling_account, run_demo

ROOT = Path(__file__).resolve().parent.parent
SCORECARD_LABELS = {
    m.label_for("en")
    for card in load_scorecards(ROOT / "journeys" / "scorecards.yaml").scorecards
    for m in card.measures
}

pytestmark = pytest.mark.browser

SECRET = "browser-accounts-secret-0123456789"
PASSWORD = "correct horse battery"


@dataclasses.dataclass
class Site:
    backend: str
    base: str
    account_id: int
    scored_days: int  # the account's health_scores rows, as the demo wrote them
    signed_in: bool = False


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    yield from browser_fixture()


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The demo's database (its own, per backend) with health scored, a sign-in for one of
    its owners, and the app serving it."""
    folder = tmp_path_factory.mktemp("demo")
    postgres = _postgres_database() if request.param == "postgresql" else None
    url = next(postgres) if postgres else f"sqlite:///{folder / 'campaigns.db'}"
    now = datetime.now(UTC)
    run_demo(url, now.date(), folder)
    engine = make_engine(url)
    database = Database(url, engine, make_sessionmaker(engine))
    with database.session() as s, s.begin():
        account_id = falling_account(s)
        scored_days = s.scalar(
            select(func.count())
            .select_from(HealthScore)
            .where(HealthScore.account_id == account_id)
        )
        add_user(s, DEMO_OWNER, PASSWORD, now, name="佐藤 美咲", role="csm")

    def build(base: str) -> Flask:
        cfg = dataclasses.replace(
            settings_module.load({}), secret_key=SECRET, base_url=base, redis_url=None
        )
        return create_app({"DATABASE_URL": url, "CAMPAIGNS": cfg, "SECRET_KEY": SECRET})

    try:
        with serving(build) as (base, app):
            yield Site(database.backend, base, account_id, scored_days)
        app.extensions["campaigns.engine"].dispose()
    finally:
        engine.dispose()
        if postgres:
            postgres.close()


@pytest.fixture
def browser(site: Site, driver: WebDriver) -> WebDriver:
    if not site.signed_in:
        driver.delete_all_cookies()
        sign_in(driver, site.base, DEMO_OWNER, PASSWORD, page="/accounts")
        site.signed_in = True
    console_errors(driver)
    return driver


def assert_clean(driver: WebDriver, site: Site) -> None:
    errors = console_errors(driver)
    assert not errors, f"console errors on {driver.current_url}: {errors}"
    loaded = driver.execute_script(
        "return performance.getEntries().map(e => e.name).filter(n => n.startsWith('http'))"
    )
    assert all(url.startswith(site.base + "/") for url in loaded), loaded


def healths(driver: WebDriver) -> list[int | None]:
    rows = driver.find_elements(By.CSS_SELECTOR, "table.accounts tbody tr")
    return [int(v) if (v := r.get_attribute("data-health")) else None for r in rows]


def test_the_account_page_after_the_demo_shows_health_personas_and_the_timeline(site, browser):
    browser.get(f"{site.base}/accounts")
    link = browser.find_element(By.CSS_SELECTOR, f"a[href='/accounts/{site.account_id}']")
    name = link.text
    link.click()
    WebDriverWait(browser, 10).until(lambda d: path_of(d) == f"/accounts/{site.account_id}")
    assert browser.find_element(By.TAG_NAME, "h1").text == name

    chart = browser.find_element(By.CSS_SELECTOR, "svg#health-trend")
    assert chart.get_attribute("role") == "img" and chart.is_displayed()
    assert chart.size["width"] > 600 and chart.size["height"] > 200
    title_id, desc_id = (chart.get_attribute("aria-labelledby") or "").split()
    assert name in (chart.find_element(By.ID, title_id).get_attribute("textContent") or "")
    assert "contribution" in (chart.find_element(By.ID, desc_id).get_attribute("textContent") or "")
    layers = chart.find_elements(By.CSS_SELECTOR, "path.layer")
    # The measures of the account's scorecard (journeys/scorecards.yaml), by their labels.
    shown = {layer.get_attribute("data-measure") for layer in layers}
    assert shown and shown <= SCORECARD_LABELS, shown
    assert len(chart.find_elements(By.CSS_SELECTOR, "line.threshold")) == 2
    points = chart.find_elements(By.CSS_SELECTOR, "g.score circle.point")
    assert len(points) == site.scored_days > 30  # one per scored day, as in the database
    assert chart.find_element(By.CSS_SELECTOR, "text.latest").text.isdigit()

    rows = browser.find_elements(By.CSS_SELECTOR, "table.contacts tbody tr")
    assert rows
    personas = [r.find_element(By.CSS_SELECTOR, "td.persona").text for r in rows]
    assert "admin" in personas, personas  # every demo account has an admin, who got mail

    entries = browser.find_elements(By.CSS_SELECTOR, "ol.account-timeline li")
    assert len(entries) >= 3
    kinds = {e.get_attribute("data-kind") for e in entries}
    assert "message" in kinds and "entered" in kinds, kinds
    assert_clean(browser, site)

    browser.execute_script("window.scrollTo(0, 0)")
    shot = artifacts_dir() / f"account-{site.backend}.png"
    shot.unlink(missing_ok=True)
    assert browser.save_screenshot(str(shot))


def test_my_accounts_sorts_by_health_when_the_header_is_clicked(site, browser):
    browser.get(f"{site.base}/accounts?sort=name")
    by_name = healths(browser)
    assert len(by_name) > 3 and by_name != sorted(by_name, key=lambda h: (h is None, h))

    browser.find_element(By.CSS_SELECTOR, "th[data-sort='health'] a").click()
    WebDriverWait(browser, 10).until(lambda d: "sort=health" in d.current_url)
    up = healths(browser)
    scored = [h for h in up if h is not None]
    assert scored == sorted(scored) and len(scored) > 3, up
    header = browser.find_element(By.CSS_SELECTOR, "th[data-sort='health']")
    assert header.get_attribute("aria-sort") == "ascending"

    browser.find_element(By.CSS_SELECTOR, "th[data-sort='health'] a").click()
    WebDriverWait(browser, 10).until(lambda d: "order=desc" in d.current_url)
    down = [h for h in healths(browser) if h is not None]
    assert down == sorted(scored, reverse=True)
    header = browser.find_element(By.CSS_SELECTOR, "th[data-sort='health']")
    assert header.get_attribute("aria-sort") == "descending"
    assert_clean(browser, site)


def test_the_health_page_draws_bands_per_tier_and_the_moves(site, browser):
    browser.find_element(By.LINK_TEXT, "Health").click()
    WebDriverWait(browser, 10).until(lambda d: path_of(d) == "/health")
    bars = browser.find_element(By.CSS_SELECTOR, "svg#bands-by-tier")
    groups = bars.find_elements(By.CSS_SELECTOR, "g.group")
    assert {g.get_attribute("data-group") for g in groups} >= {
        "high_touch",
        "low_touch",
        "tech_touch",
    }
    moves = browser.find_element(By.CSS_SELECTOR, "svg#band-moves")
    assert len(moves.find_elements(By.CSS_SELECTOR, "rect.cell")) == 9
    assert_clean(browser, site)
