"""The dashboard in a real browser: headless Chromium (Debian's, through the system
chromedriver) against the app under a real WSGI server on loopback, on SQLite and
PostgreSQL. A person signs in through the form, opens a journey and sees its funnel chart
and its table by segment, marks a task done from the tasks inbox; every page leaves the
console without errors (a refused Content-Security-Policy would show there) and renders
with the browser cut off from every other host. The journey page's screenshot is kept as a
test artefact ($ARTIFACTS_DIR, else campaigns-test-artifacts/ in the temporary folder).

Needs ``chromium`` and ``chromium-driver`` (Debian); without them every test here fails and
says how to install them. Deselect locally with ``-m "not browser"``."""

from __future__ import annotations

import dataclasses
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser import (
    artifacts_dir,
    browser_fixture,
    console_errors,
    path_of,
    png_size,
    serving,
    sign_in,
)
from conftest import BACKENDS, Database, _postgres_database
from flask import Flask
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from campaigns import config as settings_module
from campaigns.engine.deploy import deploy
from campaigns.insight import stats
from campaigns.journeys.parse import parse_journey
from campaigns.store.db import make_engine, make_sessionmaker, migrate
from campaigns.store.enums import TaskStatus
from campaigns.store.models import Account, Contact, Journey, Task
from campaigns.store.users import add_user
from campaigns.web import create_app

pytestmark = pytest.mark.browser

SECRET = "browser-secret-0123456789abcdef"
EMAIL = "hanako@example.com"
PASSWORD = "correct horse battery"
KEY = "browser_onboarding"
NAME = "オンボーディング（ブラウザ）"
STEPS = ["welcome", "tips", "ask"]
JOURNEY = textwrap.dedent(
    f"""\
    journey: {KEY}
    name: {NAME}
    segments: [everyone]
    entry: {{trigger: segment}}
    steps:
      - {{id: welcome, email: {{template: onboarding_welcome, subject: Welcome}}}}
      - {{id: tips, email: {{template: onboarding_tips, subject: Tips}}}}
      - {{id: ask, survey: {{scale: nps, template: nps_survey, subject: NPS}}}}
    """
)

# (step, metric) -> count, per (segment, tier). 製造業: 114 sent over the three steps, 57
# opened, 13 clicked, 12 answered; retail: 69 sent, 25 opened, 4 clicked, 5 answered.
COUNTS: dict[tuple[str, str], dict[tuple[str, str], int]] = {
    ("製造業", "high_touch"): {
        ("welcome", "sent"): 40,
        ("welcome", "opened"): 22,
        ("welcome", "opened_machine"): 6,
        ("welcome", "clicked"): 9,
        ("tips", "sent"): 38,
        ("tips", "opened"): 15,
        ("tips", "clicked"): 4,
        ("ask", "sent"): 36,
        ("ask", "opened"): 20,
        ("ask", "answered"): 12,
        ("", "enrolled"): 40,
        ("", "goal"): 14,
    },
    ("retail", "tech_touch"): {
        ("welcome", "sent"): 25,
        ("welcome", "opened"): 10,
        ("welcome", "clicked"): 3,
        ("tips", "sent"): 24,
        ("tips", "opened"): 6,
        ("tips", "clicked"): 1,
        ("ask", "sent"): 20,
        ("ask", "opened"): 9,
        ("ask", "answered"): 5,
        ("", "enrolled"): 25,
        ("", "goal"): 6,
    },
}

# The "By segment" table, worked out from COUNTS (95% Wilson intervals by hand):
# segment, sent, open rate, click rate, answer rate, unsubscribed, bounced, machine opens, machine
# clicks.
BY_SEGMENT = [
    [
        "retail",
        "69",
        "36.2% [25.9–48.0] n=69",
        "5.8% [2.3–14.0] n=69",
        "7.2% [3.1–15.9] n=69",
        "0",
        "0",
        "0",
        "0",
    ],
    [
        "製造業",
        "114",
        "50.0% [41.0–59.0] n=114",
        "11.4% [6.8–18.5] n=114",
        "10.5% [6.1–17.5] n=114",
        "0",
        "0",
        "6",
        "0",
    ],
]


@dataclasses.dataclass
class Site:
    """The app serving one seeded database, and the tasks seeded in it."""

    backend: str
    base: str
    db: Database
    call_task: int
    other_task: int
    signed_in: bool = False


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    """One headless Chromium for the whole module; fails (never skips) without it."""
    yield from browser_fixture()


@pytest.fixture(scope="module", params=BACKENDS)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A database of the module's own, SQLite and PostgreSQL in turn: the module's pages
    are seeded once and must not share rows with other tests."""
    postgres = _postgres_database() if request.param == "postgresql" else None
    url = (
        next(postgres)
        if postgres
        else f"sqlite:///{tmp_path_factory.mktemp('browser') / 'campaigns.db'}"
    )
    engine = make_engine(url)
    migrate(engine)
    try:
        yield Database(url, engine, make_sessionmaker(engine))
    finally:
        engine.dispose()
        if postgres:
            postgres.close()


@pytest.fixture(scope="module")
def site(database: Database) -> Iterator[Site]:
    """The journey with its counts, a dashboard user, an account they own with two open
    tasks, and the app serving it all on loopback."""
    now = datetime.now(UTC)
    today = now.date()
    with database.session() as s, s.begin():
        add_user(s, EMAIL, PASSWORD, now, name="佐藤 花子", role="csm")
        deploy(s, parse_journey(JOURNEY, f"{KEY}.yaml"), JOURNEY, f"{KEY}.yaml")
        journey_id = s.scalar(select(Journey.id).where(Journey.key == KEY))
        assert journey_id is not None
        stats.add(s, _stat_rows(journey_id, today))
        account = Account(
            external_id="SAKURA",
            name="株式会社さくら製作所",
            arr=Decimal(3_600_000),
            owner_email=EMAIL,
            tier="high_touch",
            industry="manufacturing",
        )
        s.add(account)
        s.flush()
        contact = Contact(
            account_id=account.id,
            email="taro.yamada@sakura.example.jp",
            name="山田 太郎",
            locale="ja",
            time_zone="Asia/Tokyo",
        )
        s.add(contact)
        s.flush()
        call = Task(
            journey_id=journey_id,
            step_id="ask",
            account_id=account.id,
            contact_id=contact.id,
            owner_email=EMAIL,
            kind="call",
            title="Call 山田 太郎: NPS 3",
            notes="Detractor: ask what went wrong with the rollout.",
            status=TaskStatus.OPEN,
            due_at=now + timedelta(days=2),
            created_at=now,
        )
        other = Task(
            account_id=account.id,
            owner_email=EMAIL,
            kind="meeting",
            title="QBRの準備: 株式会社さくら製作所",
            status=TaskStatus.OPEN,
            due_at=now + timedelta(days=9),
            created_at=now,
        )
        s.add_all([call, other])
        s.flush()
        call_id, other_id = call.id, other.id

    def build(base: str) -> Flask:
        cfg = dataclasses.replace(
            settings_module.load({}), secret_key=SECRET, base_url=base, redis_url=None
        )
        return create_app({"DATABASE_URL": database.url, "CAMPAIGNS": cfg, "SECRET_KEY": SECRET})

    with serving(build) as (base, app):
        yield Site(database.backend, base, database, call_id, other_id)
    app.extensions["campaigns.engine"].dispose()


def _stat_rows(journey_id: int, day: date) -> Counter[stats.Key]:
    rows: Counter[stats.Key] = Counter()
    for (segment, tier), counts in COUNTS.items():
        for (step, metric), n in counts.items():
            rows[(journey_id, step, "email" if step else "", "", segment, tier, day, metric)] += n
    return rows


@pytest.fixture
def browser(site: Site, driver: WebDriver) -> WebDriver:
    """The browser, signed in to ``site`` (through the sign-in form, once per site)."""
    if not site.signed_in:
        driver.delete_all_cookies()  # a session from the other backend's site (same host)
        sign_in(driver, site.base, EMAIL, PASSWORD)
        site.signed_in = True
    console_errors(driver)  # start each test with an empty console
    return driver


def assert_clean_console(driver: WebDriver, site: Site) -> None:
    """No error in the page's console, not even the browser's own request for
    ``/favicon.ico`` (the pages give an empty icon inline)."""
    errors = console_errors(driver)
    if errors:
        page = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(
            f"console errors on {driver.current_url}: {errors}; the page says {page[:300]!r}",
            pytrace=False,
        )


def cells(row: WebElement) -> list[str]:
    return [cell.text.strip() for cell in row.find_elements(By.TAG_NAME, "td")]


def task_rows(driver: WebDriver) -> dict[int, WebElement]:
    """The task rows of the page, by task id."""
    return {
        int(row.get_attribute("data-task-id") or 0): row
        for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-task-id]")
    }


def open_tasks_page(driver: WebDriver, site: Site, query: str = "") -> dict[int, WebElement]:
    driver.get(f"{site.base}/tasks{query}")
    assert path_of(driver) == "/tasks", f"GET /tasks{query} ended on {driver.current_url}"
    rows = task_rows(driver)
    assert_clean_console(driver, site)
    return rows


# ---------------------------------------------------------------------------- the pages


def test_signing_in_through_the_form_lands_on_the_journeys(site, driver):
    driver.delete_all_cookies()
    sign_in(driver, site.base, EMAIL, PASSWORD)  # /journeys -> /login -> the form -> /journeys
    site.signed_in = True
    assert path_of(driver) == "/journeys"
    assert driver.find_element(By.TAG_NAME, "h1").text == "Journeys"
    assert (
        "佐藤 花子" in driver.find_element(By.CSS_SELECTOR, "header.top").text
    )  # who is signed in
    link = driver.find_element(By.LINK_TEXT, NAME)
    assert urlsplit(link.get_attribute("href") or "").path == f"/journeys/{KEY}"
    assert_clean_console(driver, site)


def test_the_journey_page_shows_the_funnel_and_the_segments(site, browser):
    browser.get(f"{site.base}/journeys")
    browser.find_element(By.LINK_TEXT, NAME).click()
    WebDriverWait(browser, 10).until(lambda d: path_of(d) == f"/journeys/{KEY}")
    assert browser.find_element(By.TAG_NAME, "h1").text == NAME

    # The funnel: an inline SVG image, labelled for screen readers, one bar group per step.
    chart = browser.find_element(By.CSS_SELECTOR, "svg#funnel")
    assert chart.get_attribute("role") == "img" and chart.is_displayed()
    assert chart.size["width"] > 600 and chart.size["height"] > 200  # laid out, not collapsed
    title_id, desc_id = (chart.get_attribute("aria-labelledby") or "").split()
    assert NAME in (chart.find_element(By.ID, title_id).get_attribute("textContent") or "")
    assert "per step" in (chart.find_element(By.ID, desc_id).get_attribute("textContent") or "")
    groups = chart.find_elements(By.CSS_SELECTOR, "g.step")
    assert [g.get_attribute("data-step") for g in groups] == STEPS
    for group in groups:
        bars = [
            bar.get_attribute("class")
            for bar in group.find_elements(By.CSS_SELECTOR, "rect.bar.human")
        ]
        assert bars == [
            "bar human sent",
            "bar human opened",
            "bar human clicked",
            "bar human answered",
        ]
    welcome = {
        bar.get_attribute("class"): bar
        for bar in groups[0].find_elements(By.CSS_SELECTOR, "rect.bar")
    }
    assert (
        welcome["bar human sent"].size["width"]
        > welcome["bar human opened"].size["width"]
        > welcome["bar human clicked"].size["width"]
        > 0
    )
    hover = (
        welcome["bar human opened"].find_element(By.TAG_NAME, "title").get_attribute("textContent")
    )
    assert hover == "welcome: opened 32 (49.2%)"  # 22 + 10 of 40 + 25 sent

    # The table by segment, both segments with their numbers.
    heading = browser.find_element(By.ID, "by-segment")
    assert heading.text == "By segment" and heading.is_displayed()
    table = browser.find_element(By.CSS_SELECTOR, "table.report[data-by='segment']")
    assert table.is_displayed()
    assert [cells(row) for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")] == BY_SEGMENT
    assert cells(table.find_element(By.CSS_SELECTOR, "tfoot tr"))[:2] == ["All", "183"]

    # Everything the page loaded came from the site itself.
    loaded = browser.execute_script(
        "return performance.getEntries().map(e => e.name).filter(n => n.startsWith('http'))"
    )
    assert loaded and all(url.startswith(site.base + "/") for url in loaded), loaded
    assert_clean_console(browser, site)

    browser.execute_script("window.scrollTo(0, 0)")
    shot = artifacts_dir() / f"journey-{site.backend}.png"
    shot.unlink(missing_ok=True)
    assert browser.save_screenshot(str(shot)), f"no screenshot written to {shot}"
    width, height = png_size(shot)
    assert width == 1280 and height > 1000 and shot.stat().st_size > 10_000, (shot, width, height)


def test_a_task_is_marked_done_from_the_tasks_inbox(site, browser):
    rows = open_tasks_page(browser, site)
    assert site.call_task in rows, (
        f"GET /tasks lists no row data-task-id={site.call_task} for the open task; the page "
        f"says: {browser.find_element(By.TAG_NAME, 'body').text[:300]!r}"
    )
    assert site.other_task in rows
    row = rows[site.call_task]
    assert "Call 山田 太郎: NPS 3" in row.text
    form = row.find_element(
        By.CSS_SELECTOR, f"form[method='post'][action='/tasks/{site.call_task}/complete']"
    )
    assert form.find_element(By.CSS_SELECTOR, "input[type='hidden'][name='csrf']").get_attribute(
        "value"
    )
    form.find_element(By.CSS_SELECTOR, "input[name='outcome'], textarea[name='outcome']").send_keys(
        "電話済み: 導入の遅れは解消、更新の意向あり"
    )
    [button] = [
        b
        for b in form.find_elements(By.CSS_SELECTOR, "button, input[type='submit']")
        if (b.text or b.get_attribute("value") or "").strip() == "Mark done"
    ]
    button.click()
    # The inbox after the redirect says what was done. (Waiting for the old row to go stale
    # races chromedriver: during the navigation it may answer "node does not belong to the
    # document" instead of "stale element", which staleness_of does not catch.)
    WebDriverWait(browser, 10).until(
        lambda d: any(
            "Done: Call 山田 太郎: NPS 3" in p.text
            for p in d.find_elements(By.CSS_SELECTOR, "p.flash.ok")
        ),
        message="no 'Done: …' message after Mark done",
    )

    assert urlsplit(browser.current_url).path == "/tasks", (
        f"after Mark done the browser is on {browser.current_url}, not /tasks"
    )
    assert_clean_console(browser, site)
    still_open = task_rows(browser)
    assert site.call_task not in still_open and site.other_task in still_open
    assert site.call_task in open_tasks_page(browser, site, "?status=done")
    with site.db.session() as s:
        assert s.get(Task, site.call_task).status == TaskStatus.DONE
        assert s.get(Task, site.other_task).status == TaskStatus.OPEN


# ---------------------------------------------------------------------------- the checks themselves


def test_a_content_security_policy_violation_shows_as_a_console_error(site, browser):
    """What the console checks above rely on: under the dashboard's CSP, a script or an
    image from another site is refused and the refusal is logged as an error."""
    browser.get(f"{site.base}/journeys")
    assert_clean_console(browser, site)
    browser.execute_script(
        "const img = document.createElement('img'); img.src = "
        "'https://cdn.example.com/logo.png'; document.body.append(img);"
        "const script = document.createElement('script'); script.textContent = 'document.title = "
        "1'; document.body.append(script);"
    )
    WebDriverWait(browser, 5).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "img[src^='https://cdn.example.com']")) == 1
    )
    errors: list[str] = []
    WebDriverWait(browser, 5).until(
        lambda d: errors.extend(console_errors(d)) or len(errors) >= 2,
        message="no console error for a refused image and script",
    )
    assert any("Content Security Policy" in e and "cdn.example.com" in e for e in errors), errors
    assert any("Content Security Policy" in e and "inline script" in e for e in errors), errors
    assert browser.title != "1"  # the script did not run


def test_the_browser_reaches_nothing_but_loopback(site, browser):
    """The pages above rendered offline: the browser cannot load anything from elsewhere."""
    for url in ("https://example.com/", "http://93.184.215.14/"):
        with pytest.raises(WebDriverException, match=r"net::ERR_"):
            browser.get(url)
    console_errors(browser)
    browser.get(f"{site.base}/journeys")
    assert browser.find_element(By.LINK_TEXT, NAME).is_displayed()
    assert_clean_console(browser, site)


def test_screenshots_go_to_the_artifacts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ARTIFACTS_DIR", str(tmp_path / "shots"))
    assert artifacts_dir() == tmp_path / "shots" and artifacts_dir().is_dir()
    monkeypatch.delenv("ARTIFACTS_DIR")
    assert artifacts_dir() == Path(tempfile.gettempdir()) / "campaigns-test-artifacts"
