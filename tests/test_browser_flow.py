"""The flowchart in a real browser: headless Chromium against the app under a real WSGI
server on loopback, on SQLite and PostgreSQL, after a real engine run (tests/test_flow.py's
scenario: sent, held by the sending window, the frequency cap and the rate limit, one goal).
The counts the page shows in each step's box are the database's, read row by row; clicking a
box opens the list of who is at the step; nothing logs a console error.

Needs ``chromium`` and ``chromium-driver`` (Debian), like tests/test_browser.py."""

from __future__ import annotations

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
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from campaigns.insight import flow
from campaigns.store.enums import EnrollmentState, EventKind
from campaigns.store.models import Contact, Enrollment, Message
from campaigns.store.users import add_user
from tests.kit import START
from tests.test_flow import engine_for, seed

pytestmark = pytest.mark.browser

EMAIL = "marketer@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    yield from browser_fixture()


def _from_rows(db) -> dict[str, tuple[int, int, int, int]]:
    """(waiting, sent, held, converted) per step, one row at a time (converted: the goal
    reached after a message of the step, the steps that send in this journey)."""
    result: dict[str, list[int]] = {}
    with db.session() as s:
        goal = {e.id for e in s.scalars(select(Enrollment)) if e.state == EnrollmentState.GOAL}
        for e in s.scalars(select(Enrollment)):
            if e.state in flow.NOW and e.current_step:
                result.setdefault(e.current_step, [0, 0, 0, 0])[0] += 1
        converted: dict[str, set[int]] = {}
        for m in s.scalars(select(Message).where(Message.journey_id.is_not(None))):
            row = result.setdefault(m.step_id, [0, 0, 0, 0])
            if m.status == "sent":
                row[1] += 1
            elif m.status == "deferred":
                row[2] += 1
            if m.status in flow.FINISHED and m.enrollment_id in goal:
                converted.setdefault(m.step_id, set()).add(m.enrollment_id)
        for step, who in converted.items():
            result[step][3] = len(who)
    return {step: (w, s_, h, c) for step, (w, s_, h, c) in result.items()}


def test_the_flowcharts_counts_are_the_databases(db, build_engine, build_app, driver):
    seed(db)
    engine = engine_for(build_engine)
    engine.tick()
    with db.session() as s, s.begin():
        add_user(s, EMAIL, PASSWORD, START, name="山田 花子", role="marketer")
        taro = s.scalars(select(Contact).where(Contact.email == "tokyo0@example.com")).one()
        engine.record_event(s, kind=EventKind.CUSTOM, name="renewed", contact_id=taro.id)
    engine.tick()
    expected = _from_rows(db)
    assert expected["hello"][1] > 0 and expected["hello"][2] > 0 and expected["hello"][3] == 1
    with serving(lambda base: build_app(base_url=base)) as (base, _app):
        sign_in(driver, base, EMAIL, PASSWORD, page="/journeys/flowtest")
        boxes = driver.find_elements(By.CSS_SELECTOR, "svg.flowchart g.step")
        shown = {}
        for box in boxes:
            step = box.get_attribute("data-step")

            def number(css: str, box=box) -> int:
                return int(box.find_element(By.CSS_SELECTOR, css).text.replace(",", ""))

            held = box.find_element(By.CSS_SELECTOR, "text.held").text
            shown[step] = (
                number("tspan.waiting"),
                number("tspan.sent"),
                int(held.split(" ")[0].replace(",", "")) if held != "nothing held" else 0,
                number("tspan.converted"),
            )
        assert set(shown) == {"hello", "look", "route", "nudge", "rest", "done", "thanks"}
        for step, counts in shown.items():
            want = expected.get(step, (0, 0, 0, 0))
            if step not in ("hello", "nudge", "thanks"):  # steps that send nothing
                want = (*want[:3], counts[3])
            assert counts == want, step
        assert (
            "sending window 2"
            in driver.find_element(By.CSS_SELECTOR, "g.step[data-step='hello'] text.held").text
        )
        held_table = driver.find_element(By.CSS_SELECTOR, "table#held tfoot").text
        assert "frequency cap: 1" in held_table and "rate limit: 1" in held_table
        driver.find_element(
            By.CSS_SELECTOR, "svg.flowchart a.step-link g[data-step='look']"
        ).click()
        WebDriverWait(driver, WAIT).until(lambda d: path_of(d) == "/journeys/flowtest/steps/look")
        rows = driver.find_elements(By.CSS_SELECTOR, "table.at-step tbody tr")
        assert len(rows) == expected["look"][0]
        assert "山田" not in driver.find_element(By.CSS_SELECTOR, "table.at-step").text  # at goal
        assert "佐藤 花子" in driver.find_element(By.CSS_SELECTOR, "table.at-step").text
        assert console_errors(driver) == []
