"""Pages and buckets a newcomer meets on day one, on SQLite and PostgreSQL: "due this week"
takes in the seventh day, in the team's time zone; the first user's tasks page is not an
empty "Mine"; a journey without a goal says so instead of "reached by 0"; the preview's
step list is the chosen journey's, without script."""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from sqlalchemy import select

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.engine.tasks import Due, day_end, list_tasks, open_counts
from campaigns.insight import stats
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import TaskStatus
from campaigns.store.models import Account, Contact, Journey, Task
from campaigns.store.users import add_user

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 10:00 in Tokyo
TOKYO = "Asia/Tokyo"
PASSWORD = "correct horse battery"
OWNER = "suzuki@example.com"
NEWCOMER = "you@example.com"  # the README's `campaigns user add you@example.com`


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def add_task(db, title: str, due_at: datetime | None, owner: str = OWNER) -> None:
    with db.session() as s, s.begin():
        account = s.scalar(select(Account).where(Account.external_id == "ACME"))
        if account is None:
            account = Account(external_id="ACME", name="株式会社アクメ", owner_email=OWNER)
            s.add(account)
            s.flush()
        s.add(
            Task(
                account_id=account.id,
                owner_email=owner,
                kind="call",
                title=title,
                status=TaskStatus.OPEN,
                due_at=due_at,
                created_at=NOW,
            )
        )


def titles(db, due: Due, now: datetime = NOW, time_zone: str = TOKYO) -> list[str]:
    with db.session() as s:
        items, _ = list_tasks(s, now, due=due, zone=time_zone)
        return [i.task.title for i in items]


def sign_in(app, email: str):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"csrf": csrf, "email": email, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return client


def html_of(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.get_data(as_text=True)[:500])
    return response.get_data(as_text=True)


# ---------------------------------------------------------------------------- due days


def test_the_end_of_a_day_is_midnight_in_the_teams_zone():
    assert day_end(NOW, TOKYO, 0) == datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 00:00 JST
    assert day_end(NOW, TOKYO, 7) == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert day_end(NOW, "UTC", 7) == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    # New York leaves daylight saving on 1 Nov 2026: a day is still midnight to midnight.
    october = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
    assert day_end(october, "America/New_York", 3) == datetime(2026, 11, 3, 5, 0, tzinfo=UTC)


def test_due_this_week_takes_in_a_task_due_in_exactly_seven_days(db):
    add_task(db, "in 7 days, to the minute", NOW + timedelta(days=7))
    add_task(db, "day 7, late evening in Tokyo", datetime(2026, 12, 1, 14, 59, tzinfo=UTC))
    add_task(db, "day 8, just after midnight in Tokyo", datetime(2026, 12, 1, 15, 0, tzinfo=UTC))
    add_task(db, "overdue", NOW - timedelta(hours=1))
    assert titles(db, Due.WEEK) == [
        "overdue",
        "in 7 days, to the minute",
        "day 7, late evening in Tokyo",
    ]
    # In UTC the seventh day runs to midnight UTC: all four are this week there.
    assert len(titles(db, Due.WEEK, time_zone="UTC")) == 4


def test_due_today_ends_at_midnight_in_the_teams_zone(db):
    evening = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # Wednesday 01:00 in Tokyo
    add_task(db, "Wednesday 19:00 in Tokyo", datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    add_task(db, "Thursday 09:00 in Tokyo", datetime(2026, 11, 26, 0, 0, tzinfo=UTC))
    assert titles(db, Due.TODAY, now=evening) == ["Wednesday 19:00 in Tokyo"]
    assert titles(db, Due.TODAY, now=evening, time_zone="UTC") == []  # tomorrow in UTC
    with db.session() as s:
        assert open_counts(s, evening, zone=TOKYO)["due_today"] == 1
        assert open_counts(s, evening)["due_today"] == 0


@pytest.fixture
def team(db):
    with db.session() as s, s.begin():
        add_user(s, OWNER, PASSWORD, NOW, name="鈴木 一郎", role="csm")
        add_user(s, NEWCOMER, PASSWORD, NOW, role="csm")
    add_task(db, "QBRの準備", NOW + timedelta(days=7))
    add_task(db, "Renewal call", NOW + timedelta(days=8))


def test_the_inbox_within_7_days_lists_the_task_due_on_day_seven(build_app, team):
    client = sign_in(build_app(task_time_zone=TOKYO), OWNER)
    html = html_of(client, "/tasks?due=week")
    assert "QBRの準備" in html and "Renewal call" not in html
    assert "due by the end of today (Asia/Tokyo)" not in html  # none due today
    add = html_of(client, "/tasks")
    assert "QBRの準備" in add and "Renewal call" in add


# ---------------------------------------------------------------------------- the first user


def test_a_new_user_who_owns_no_task_sees_everyones_with_a_note(app, team):
    client = sign_in(app, NEWCOMER)
    html = html_of(client, "/tasks")
    assert "No open tasks are assigned to you (you@example.com), so this shows everyone" in html
    assert "QBRの準備" in html and "Renewal call" in html
    assert re.search(r'<option value="all" selected>Everyone</option>', html)
    mine = html_of(client, "/tasks?owner=me")  # asked for: their own, empty
    assert "QBRの準備" not in mine and "are assigned to you" not in mine


def test_an_owner_with_tasks_still_starts_on_mine(app, team, db):
    add_task(db, "Someone else's", NOW + timedelta(days=1), owner="tanaka@example.com")
    html = html_of(sign_in(app, OWNER), "/tasks")
    assert "QBRの準備" in html and "Someone else&#39;s" not in html
    assert "are assigned to you" not in html
    assert re.search(r'<option value="me" selected>Mine', html)


# ---------------------------------------------------------------------------- the journey page

JOURNEY = textwrap.dedent(
    """\
    journey: {key}
    name: {name}
    segments: [everyone]
    entry: {{trigger: segment}}
    {goal}steps:
      - {{id: {first}, email: {{template: onboarding_tips, subject: Tips}}}}
      - {{id: rest, wait: 1 day}}
      - id: {second}
        email:
          template: onboarding_tips
          subject: More
          variants: [{{id: {variant}, subject: Mine}}, {{id: other, subject: Other}}]
    """
)


def deploy_journey(db, key: str, name: str, *, goal: str = "", steps=("hello", "ask")) -> int:
    text = JOURNEY.format(
        key=key, name=name, goal=goal, first=steps[0], second=steps[1], variant=f"{key}_v"
    )
    with db.session() as s, s.begin():
        deploy(s, parse_journey(text, f"{key}.yaml"), text, f"{key}.yaml")
        found = s.scalar(select(Journey.id).where(Journey.key == key))
    assert found is not None
    return found


def enrolled(db, journey_id: int, n: int, goal: int = 0) -> None:
    rows: Counter[stats.Key] = Counter()
    rows[(journey_id, "", "", "", "everyone", "", NOW.date(), "enrolled")] = n
    if goal:
        rows[(journey_id, "", "", "", "everyone", "", NOW.date(), "goal")] = goal
    with db.session() as s, s.begin():
        stats.add(s, rows)


@pytest.fixture
def admin(app, db):
    with db.session() as s, s.begin():
        add_user(s, "admin@example.com", PASSWORD, NOW, role="admin")
    return sign_in(app, "admin@example.com")


def test_a_journey_without_a_goal_says_it_has_none(admin, db):
    enrolled(db, deploy_journey(db, "plain", "目標なし"), 34)
    html = html_of(admin, "/journeys/plain")
    assert "This journey has no goal" in html
    assert "Reached by" not in html and "goal-rate" not in html


def test_a_journey_with_a_goal_shows_who_reached_it(admin, db):
    goal = "goal: {event: converted, within: 30 days}\n"
    enrolled(db, deploy_journey(db, "aimed", "Aimed", goal=goal), 34)
    html = html_of(admin, "/journeys/aimed")
    assert "Reached by 0 of 34 contacts enrolled" in html and "has no goal" not in html


# ---------------------------------------------------------------------------- the preview


def options(html: str, name: str) -> list[str]:
    select_ = re.search(rf'<select name="{name}">(.*?)</select>', html, re.S)
    assert select_, f"no {name} select"
    return [unescape(v) for v in re.findall(r'<option value="([^"]*)"', select_.group(1))]


def forms(html: str) -> list[str]:
    return re.findall(r"<form\b.*?</form>", html, re.S)


def test_the_previews_step_list_follows_the_chosen_journey(admin, db):
    deploy_journey(db, "alpha", "アルファ", steps=("hello", "ask"))
    deploy_journey(db, "beta", "Beta", steps=("welcome", "nudge"))
    with db.session() as s, s.begin():
        account = Account(external_id="B", name="B")
        s.add(account)
        s.flush()
        s.add(Contact(account_id=account.id, email="taro@example.com", name="山田 太郎"))
    first = html_of(admin, "/preview")
    assert options(first, "journey") == ["alpha", "beta"]
    assert options(first, "step") == ["hello", "ask"]  # the first journey's, nobody else's
    assert 'list="variants"' in first and "beta_v" not in first and "alpha_v" in first
    # No script: the journey is its own GET form, whose button reloads the step list.
    journey_form, step_form = forms(first)[-2:]
    assert 'name="journey"' in journey_form and 'type="submit"' in journey_form
    assert 'name="step"' not in journey_form
    assert '<input type="hidden" name="journey" value="alpha">' in step_form
    assert "<script" not in first
    chosen = html_of(admin, "/preview?journey=beta&contact=taro@example.com")
    assert options(chosen, "step") == ["welcome", "nudge"]
    assert re.search(r'<option value="beta" selected>', chosen)
    assert 'name="contact" value="taro@example.com"' in chosen  # the address carries over
    assert "alpha_v" not in chosen and "beta_v" in chosen
    shown = html_of(
        admin, "/preview?journey=beta&step=nudge&variant=beta_v&contact=taro@example.com"
    )
    assert re.search(r'<option value="nudge" selected>', shown) and "variant beta_v" in shown


def test_the_reports_api_refuses_since_after_until(build_app, db):
    deploy_journey(db, "plain", "Plain")
    key = "pages-api-key-0123456789abcdef"
    client = build_app(api_keys=(key,)).test_client()
    auth = {"Authorization": f"Bearer {key}"}
    ok = client.get("/api/v1/reports/plain?since=2026-11-01&until=2026-11-01", headers=auth)
    assert ok.status_code == 200
    late = client.get("/api/v1/reports/plain?since=2026-11-09&until=2026-11-01", headers=auth)
    assert late.status_code == 400
    assert "since: the first day comes after the last" in late.get_json()["error"]["message"]
