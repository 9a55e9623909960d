"""Editing a journey and the roles, in a real browser: headless Chromium against the app
under a real WSGI server on loopback, on SQLite and PostgreSQL. A marketer types a mistake
into the editor, presses Validate and sees the problem under the line it names, the text as
typed still in the form; fixed, Deploy runs it as a new version. Each role, signed in
through the form, sees only its share of the navigation and gets the 403 page for a page
beyond it. The editor's screenshot is kept as a test artefact.

Needs ``chromium`` and ``chromium-driver`` (Debian); without them every test here fails and
says how to install them."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime

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
from sqlalchemy import select

from campaigns import config as settings_module
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.db import make_engine, make_sessionmaker, migrate
from campaigns.store.models import Journey
from campaigns.store.users import add_user
from campaigns.web import create_app
from tests.kit import EVERYONE, ROOT

pytestmark = pytest.mark.browser

SECRET = "browser-edit-secret-0123456789ab"
PASSWORD = "correct horse battery"
ROLES = ("admin", "marketer", "csm", "viewer")
EMAIL = {role: f"{role}@example.com" for role in ROLES}
KEY = "browser_edit"
JOURNEY = textwrap.dedent(
    f"""\
    journey: {KEY}
    name: 編集テスト
    segments: [everyone]
    entry: {{trigger: segment}}
    steps:
      - {{id: hello, email: {{template: onboarding_welcome, subject: ようこそ}}}}
      - {{id: rest, wait: 2 days}}
      - {{id: tips, email: {{template: onboarding_tips, subject: Tips}}}}
    """
)
WAIT = 10

NAV = {
    "admin": ["Journeys", "Tasks", "Accounts", "Health", "Contacts", "NPS", "Preview"],
    "marketer": ["Journeys", "Tasks", "Accounts", "Health", "Contacts", "NPS", "Preview"],
    "csm": ["Journeys", "Tasks", "Accounts", "Health", "Contacts", "NPS", "Preview"],
    "viewer": ["Journeys", "Health", "NPS"],
}
"""The main navigation's links each role sees (the table of campaigns/web/roles.py)."""

FORBIDDEN = {
    "admin": None,
    "marketer": None,
    "csm": f"/journeys/{KEY}/edit",
    "viewer": "/contacts",
}
"""A page beyond each role's share."""


@dataclasses.dataclass
class Site:
    backend: str
    base: str
    db: Database


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    yield from browser_fixture()


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A database of the module's own with the journey and a user of each role, and the app
    serving it on loopback with a journeys folder of its own."""
    folder = tmp_path_factory.mktemp("browser-edit")
    journeys = folder / "journeys"
    journeys.mkdir()
    (journeys / "segments.yaml").write_text(EVERYONE, encoding="utf-8")
    postgres = _postgres_database() if request.param == "postgresql" else None
    url = next(postgres) if postgres else f"sqlite:///{folder / 'campaigns.db'}"
    engine = make_engine(url)
    migrate(engine)
    database = Database(url, engine, make_sessionmaker(engine))
    now = datetime.now(UTC)
    with database.session() as s, s.begin():
        for role in ROLES:
            add_user(s, EMAIL[role], PASSWORD, now, role=role)
        deploy(s, parse_journey(JOURNEY, f"{KEY}.yaml"), JOURNEY, f"journeys/{KEY}.yaml")

    def build(base: str) -> Flask:
        cfg = dataclasses.replace(
            settings_module.load({}),
            secret_key=SECRET,
            base_url=base,
            redis_url=None,
            journeys_dir=journeys,
            templates_dir=ROOT / "templates",
        )
        return create_app({"DATABASE_URL": url, "CAMPAIGNS": cfg, "SECRET_KEY": SECRET})

    try:
        with serving(build) as (base, app):
            yield Site(request.param, base, database)
        app.extensions["campaigns.engine"].dispose()
    finally:
        engine.dispose()
        if postgres:
            postgres.close()


def as_role(driver: WebDriver, site: Site, role: str, page: str = "/journeys") -> WebDriver:
    driver.delete_all_cookies()
    sign_in(driver, site.base, EMAIL[role], PASSWORD, page)
    console_errors(driver)
    return driver


def assert_clean_console(driver: WebDriver) -> None:
    errors = console_errors(driver)
    assert not errors, f"console errors on {driver.current_url}: {errors}"


def type_into_editor(driver: WebDriver, text: str) -> None:
    """Replace the editor's text, typed as a person types it."""
    area = driver.find_element(By.ID, "source")
    area.clear()
    area.send_keys(text)


def press(driver: WebDriver, action: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"button[name=action][value={action}]").click()


# ---------------------------------------------------------------------------- the editor


def test_an_edit_with_an_error_shows_the_problem_at_its_line(site, driver):
    as_role(driver, site, "marketer", f"/journeys/{KEY}/edit")
    area = driver.find_element(By.ID, "source")
    assert area.get_attribute("value") == JOURNEY
    broken = JOURNEY.replace("wait: 2 days", "wait: 2 dayz")
    type_into_editor(driver, broken)
    press(driver, "validate")
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "tr.problem"), "no problem shown"
    )

    [problem] = driver.find_elements(By.CSS_SELECTOR, "tr.problem")
    assert problem.get_attribute("data-line") == "7"
    assert "7:22: bad wait: unknown unit 'dayz'" in problem.text
    line = problem.find_element(By.XPATH, "preceding-sibling::tr[1]")
    assert line.get_attribute("id") == "L7" and "bad" in (line.get_attribute("class") or "")
    assert "wait: 2 dayz" in line.text
    above = line.find_element(By.XPATH, "preceding-sibling::tr[1]")
    assert "bad" not in (above.get_attribute("class") or "")
    # the problem is drawn highlighted, next to its line
    cell = problem.find_elements(By.TAG_NAME, "td")[1]
    assert cell.value_of_css_property("background-color") == "rgba(255, 247, 237, 1)"
    bad = line.find_elements(By.TAG_NAME, "td")[1]
    assert bad.value_of_css_property("background-color") == "rgba(254, 226, 226, 1)"
    assert abs(problem.rect["y"] - (line.rect["y"] + line.rect["height"])) < 2
    assert driver.find_element(By.ID, "source").get_attribute("value") == broken  # nothing lost
    assert_clean_console(driver)
    shot = artifacts_dir() / f"editor-problem-{site.backend}.png"
    shot.unlink(missing_ok=True)
    assert driver.save_screenshot(str(shot))

    fixed = broken.replace("2 dayz", "3 days")
    type_into_editor(driver, fixed)
    press(driver, "deploy")
    WebDriverWait(driver, WAIT).until(lambda d: path_of(d) == f"/journeys/{KEY}")
    assert "Deployed version 2" in driver.find_element(By.CSS_SELECTOR, ".flash").text
    with site.db.session() as s:
        row = s.scalars(select(Journey).where(Journey.key == KEY)).one()
        assert row.current_version is not None
        assert row.current_version.number == 2 and row.current_version.source_text == fixed
    driver.find_element(By.LINK_TEXT, "YAML and versions").click()
    WebDriverWait(driver, WAIT).until(lambda d: path_of(d) == f"/journeys/{KEY}/source")
    by = driver.find_element(By.CSS_SELECTOR, "tr[data-version='2'] td.by").text
    assert by == EMAIL["marketer"]
    assert_clean_console(driver)


# ---------------------------------------------------------------------------- the roles


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_and_may_do_only_its_share(site, driver, role):
    as_role(driver, site, role)
    nav = driver.find_element(By.CSS_SELECTOR, "nav[aria-label=Main]")
    links = [a.text for a in nav.find_elements(By.TAG_NAME, "a")]
    assert [name for name in links if name in NAV["admin"]] == NAV[role]
    assert f"({role})" in driver.find_element(By.CSS_SELECTOR, "header .who").text

    driver.get(f"{site.base}/journeys/{KEY}")
    edit_links = driver.find_elements(By.CSS_SELECTOR, ".journey-source a.edit-link")
    assert bool(edit_links) == (role in ("admin", "marketer"))
    if edit_links:
        edit_links[0].click()
        WebDriverWait(driver, WAIT).until(lambda d: path_of(d) == f"/journeys/{KEY}/edit")
        assert driver.find_elements(By.CSS_SELECTOR, "button[value=deploy]")

    assert_clean_console(driver)
    forbidden = FORBIDDEN[role]
    if forbidden:
        driver.get(site.base + forbidden)
        assert driver.find_element(By.TAG_NAME, "h1").text == "Forbidden"
        assert f"The {role} role may not" in driver.find_element(By.TAG_NAME, "main").text
        # the only console line is the browser's note of the 403 itself
        assert all("403" in error for error in console_errors(driver))
