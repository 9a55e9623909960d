"""The tasks inbox and the contact timeline, on SQLite and PostgreSQL: a journey makes a task,
the owner marks it done in the dashboard (a real form with its CSRF token), the journey that
waits on it goes on at the next tick and the report counts it; the timeline shows what the
contact did and what machines did apart; filters and garbage parameters get 4xx, never 500."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.engine.tasks import (
    Due,
    TaskError,
    cancel_task,
    complete_task,
    list_tasks,
    open_counts,
)
from campaigns.insight import stats
from campaigns.insight.report import journey_report
from campaigns.insight.timeline import contact_timeline
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments
from campaigns.store.enums import (
    Classification,
    EnrollmentState,
    EventKind,
    MessageStatus,
    TaskStatus,
)
from campaigns.store.models import Account, Contact, Enrollment, Event, Message, Task
from campaigns.store.users import add_user

ROOT = Path(__file__).resolve().parent.parent
SECRET = "crm-secret-0123456789"
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
OWNER = "suzuki@example.com"
PASSWORD = "correct horse battery"
KEY = "crm-api-key-0123456789abcdef"
SEGMENTS = parse_segments("tiers:\n  everyone: {when: true}\n")
JOURNEY = textwrap.dedent(
    """\
    journey: kickoff
    name: キックオフ
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: call
        task: {kind: call, title: "Call {{ account.name }}", due: 2 days}
      - id: wait_call
        wait_until: {task_done: call, timeout: 14 days}
      - id: after
        email: {template: onboarding_tips, subject: {en: Thanks for the call,
            ja: お電話ありがとうございました}}
    """
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def setup(db):
    with db.session() as s, s.begin():
        account = Account(
            external_id="ACME",
            name="株式会社アクメ",
            arr=Decimal(1_200_000),
            owner_email=OWNER,
            tier="high_touch",
            health_score=62,
        )
        s.add(account)
        s.flush()
        s.add(
            Contact(
                account_id=account.id,
                email="taro@example.com",
                name="山田 太郎",
                locale="ja",
                time_zone="Asia/Tokyo",
            )
        )
        deploy(s, parse_journey(JOURNEY, "kickoff.yaml"), JOURNEY, "kickoff.yaml")
        add_user(s, OWNER, PASSWORD, START, name="鈴木 一郎", role="csm")
        add_user(s, "admin@example.com", PASSWORD, START, role="admin")


@pytest.fixture
def engine(build_engine, smtp_sink, setup):
    return build_engine(
        transport=smtp_sink,
        segments=SEGMENTS,
        secret=SECRET,
        settings={"webhook_secret": SECRET},
    )


@pytest.fixture
def app(build_app, setup):
    return build_app(secret_key=SECRET)


def csrf_of(client, path: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


def signed_in(app, email: str = OWNER):
    client = app.test_client()
    response = client.post(
        "/login", data={"csrf": csrf_of(client, "/login"), "email": email, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


def the_task(db) -> Task:
    with db.session() as s:
        return s.scalars(select(Task)).one()


# ---------------------------------------------------------------------------- the domain


def test_completing_a_task_records_the_event_and_wakes_the_waiting_journey(
    db, engine, clock, smtp_sink
):
    engine.tick()
    task = the_task(db)
    assert (task.title, task.owner_email, task.status, task.due_at) == (
        "Call 株式会社アクメ",
        OWNER,
        TaskStatus.OPEN,
        START + timedelta(days=2),
    )
    with db.session() as s:
        assert s.scalars(select(Enrollment.state)).one() == EnrollmentState.WAITING
    clock.advance(timedelta(hours=3))
    with db.session() as s, s.begin():
        complete_task(s, task.id, clock.now(), by=OWNER, outcome="話しました。来月に再訪。")
    with db.session() as s:
        event = s.scalars(select(Event).where(Event.kind == EventKind.TASK_DONE)).one()
        assert (event.value, event.step_id, event.data) == (
            "話しました。来月に再訪。",
            "call",
            {"task": task.id, "by": OWNER},
        )
        assert (
            s.scalars(select(Enrollment.next_run_at)).one() == clock.now()
        )  # woken: due now, not in 14 days
    engine.tick()
    with db.session() as s:
        sent = s.scalars(select(Message).where(Message.step_id == "after")).one()
        assert sent.status == MessageStatus.SENT
        assert s.scalars(select(Enrollment.state)).one() == EnrollmentState.COMPLETED
        report = journey_report(s, "kickoff")
    assert report.totals.count("task_created") == 1 and report.totals.count("task_done") == 1
    assert [
        str(m["Subject"]) for m in smtp_sink.parsed() if m["To"] == "山田 太郎 <taro@example.com>"
    ] == ["お電話ありがとうございました"]


def test_a_task_is_done_once_and_a_cancelled_one_wakes_nobody(db, engine, clock):
    engine.tick()
    task = the_task(db)
    with db.session() as s, s.begin():
        complete_task(s, task.id, clock.now(), outcome="ok")
    with db.session() as s, s.begin(), pytest.raises(TaskError, match="already done"):
        complete_task(s, task.id, clock.now(), outcome="again")
    with db.session() as s, s.begin(), pytest.raises(TaskError, match="no task"):
        complete_task(s, 999_999, clock.now())
    with db.session() as s:
        assert len(s.scalars(select(Event).where(Event.kind == EventKind.TASK_DONE)).all()) == 1
    # A second contact's task, cancelled: its journey keeps waiting.
    with db.session() as s, s.begin():
        account_id = s.scalars(select(Account.id)).one()
        s.add(Contact(account_id=account_id, email="hanako@example.com", name="佐藤 花子"))
    engine.tick()
    with db.session() as s, s.begin():
        other = s.scalars(select(Task).where(Task.status == TaskStatus.OPEN)).one()
        cancel_task(s, other.id, clock.now(), reason="担当者退職")
        waiting = s.scalars(
            select(Enrollment.next_run_at).where(Enrollment.contact_id == other.contact_id)
        ).one()
    assert waiting > clock.now()
    with db.session() as s:
        assert {t.status for t in s.scalars(select(Task))} == {
            TaskStatus.DONE,
            TaskStatus.CANCELLED,
        }


def test_the_inbox_filters_by_owner_status_and_due_date(db, clock):
    now = START
    with db.session() as s, s.begin():
        rows = [
            Task(
                title="overdue",
                owner_email=OWNER,
                due_at=now - timedelta(days=1),
                status=TaskStatus.OPEN,
                created_at=now,
            ),
            Task(
                title="today",
                owner_email="Suzuki@Example.com",
                due_at=now + timedelta(hours=5),
                status=TaskStatus.OPEN,
                created_at=now,
            ),
            Task(
                title="in five days",
                owner_email=OWNER,
                due_at=now + timedelta(days=5),
                status=TaskStatus.OPEN,
                created_at=now,
            ),
            Task(
                title="next month",
                owner_email=OWNER,
                due_at=now + timedelta(days=30),
                status=TaskStatus.OPEN,
                created_at=now,
            ),
            Task(title="undated", owner_email=OWNER, status=TaskStatus.OPEN, created_at=now),
            Task(
                title="someone else's",
                owner_email="other@example.com",
                due_at=now,
                status=TaskStatus.OPEN,
                created_at=now,
            ),
            Task(
                title="done",
                owner_email=OWNER,
                status=TaskStatus.DONE,
                created_at=now,
                completed_at=now,
            ),
        ]
        s.add_all(rows)
    with db.session() as s:
        titles = lambda **kw: [i.task.title for i in list_tasks(s, now, **kw)[0]]  # noqa: E731
        assert titles(owner=OWNER) == [
            "overdue",
            "today",
            "in five days",
            "next month",
            "undated",
        ]  # oldest due first, undated last
        assert titles(owner=OWNER, due=Due.OVERDUE) == ["overdue"]
        assert titles(owner=OWNER, due="today") == ["overdue", "today"]
        assert titles(owner=OWNER, due="week") == ["overdue", "today", "in five days"]
        assert titles(owner=OWNER, status="done") == ["done"]
        assert len(titles(status="all")) == 7
        assert list_tasks(s, now, owner=OWNER, limit=2)[1] == 5
        assert open_counts(s, now, OWNER) == {
            "open": 5,
            "overdue": 1,
            "due_today": 2,
            "escalated": 0,
        }
        with pytest.raises(ValueError, match="status"):
            list_tasks(s, now, status="finished")


@pytest.mark.parametrize(
    ("zone", "due_at", "this_week"),
    [
        # START is Tuesday 2026-11-24 01:00 UTC (10:00 in Tokyo).
        ("UTC", START + timedelta(days=7), True),  # exactly 7 days on: the week includes it
        ("UTC", datetime(2026, 12, 1, 23, 59, tzinfo=UTC), True),  # the 7th day's last minute
        ("UTC", datetime(2026, 12, 2, 0, 0, tzinfo=UTC), False),  # the 8th day
        ("Asia/Tokyo", datetime(2026, 12, 1, 14, 59, tzinfo=UTC), True),  # 23:59 on Dec 1 JST
        ("Asia/Tokyo", datetime(2026, 12, 1, 15, 0, tzinfo=UTC), False),  # Dec 2 in Tokyo
    ],
)
def test_due_this_week_is_today_and_the_next_seven_days_in_the_team_zone(
    db, zone, due_at, this_week
):
    with db.session() as s, s.begin():
        s.add(Task(title="t", owner_email=OWNER, due_at=due_at, created_at=START))
    with db.session() as s:
        found = list_tasks(s, START, owner=OWNER, due=Due.WEEK, zone=zone)[0]
        assert bool(found) is this_week


def test_due_today_ends_at_midnight_in_the_team_zone(db):
    with db.session() as s, s.begin():  # 23:30 in Tokyo on the 24th, 14:30 UTC
        s.add(Task(title="t", owner_email=OWNER, due_at=START + timedelta(hours=13, minutes=30)))
    with db.session() as s:
        assert open_counts(s, START, OWNER, "Asia/Tokyo")["due_today"] == 1
        assert open_counts(s, START, OWNER, "Pacific/Honolulu")["due_today"] == 0  # 24th 04:30


# ---------------------------------------------------------------------------- the pages


def test_the_owner_marks_a_task_done_in_the_inbox(app, db, engine, clock):
    engine.tick()
    task = the_task(db)
    client = signed_in(app)
    inbox = client.get("/tasks")
    assert inbox.status_code == 200 and client.get("/tasks?status=done").status_code == 200
    html = inbox.get_data(as_text=True)
    row = re.search(rf'<tr data-task-id="{task.id}".*?</tr>', html, re.S)
    assert row, html
    assert (
        "Call 株式会社アクメ" in row.group(0)
        and "山田 太郎" in row.group(0)
        and f'action="/tasks/{task.id}/complete"' in row.group(0)
    )
    assert "1 open" in html
    token = re.search(r'name="csrf" value="([^"]+)"', row.group(0)).group(1)
    assert (
        client.post(f"/tasks/{task.id}/complete", data={"outcome": "done"}).status_code == 400
    )  # no CSRF token: refused
    assert the_task(db).status == TaskStatus.OPEN
    response = client.post(
        f"/tasks/{task.id}/complete", data={"csrf": token, "outcome": "更新の意向あり"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/tasks"
    after = client.get("/tasks").get_data(as_text=True)
    assert "Done: Call 株式会社アクメ" in after and f'data-task-id="{task.id}"' not in after
    done = client.get("/tasks?status=done").get_data(as_text=True)
    assert f'data-task-id="{task.id}"' in done and "更新の意向あり" in done
    assert (the_task(db).status, the_task(db).outcome) == (TaskStatus.DONE, "更新の意向あり")
    # Pressing the button again says so, and records nothing more.
    again = client.post(
        f"/tasks/{task.id}/complete", data={"csrf": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "already done" in again
    with db.session() as s:
        assert len(s.scalars(select(Event).where(Event.kind == EventKind.TASK_DONE)).all()) == 1


def test_a_csm_sees_their_own_tasks_and_an_admin_everyones(app, db):
    with db.session() as s, s.begin():
        s.add_all(
            [
                Task(title="mine", owner_email=OWNER, created_at=START),
                Task(title="theirs", owner_email="other@example.com", created_at=START),
            ]
        )
    mine = signed_in(app).get("/tasks").get_data(as_text=True)
    assert "mine" in mine and "theirs" not in mine
    everyone = signed_in(app, "admin@example.com").get("/tasks").get_data(as_text=True)
    assert "mine" in everyone and "theirs" in everyone
    assert "theirs" in signed_in(app).get("/tasks?owner=all").get_data(as_text=True)
    assert "none-mine" not in mine
    only = signed_in(app).get("/tasks?owner=other@example.com").get_data(as_text=True)
    assert "theirs" in only and ">mine<" not in only


def test_a_csm_without_tasks_starts_on_everyones_and_is_told_so(app, db):
    with db.session() as s, s.begin():
        s.add(Task(title="theirs", owner_email="other@example.com", created_at=START))
    page = signed_in(app).get("/tasks").get_data(as_text=True)
    assert "theirs" in page and 'class="card none-mine"' in page
    assert "No open tasks are assigned to you (suzuki@example.com)" in page
    mine = signed_in(app).get("/tasks?owner=me").get_data(as_text=True)
    assert "theirs" not in mine and "none-mine" not in mine  # "Mine" chosen: only theirs


def test_the_timeline_shows_what_the_person_did_and_machines_apart(app, db, engine, clock):
    engine.tick()
    with db.session() as s, s.begin():
        contact = s.scalars(select(Contact)).one()
        message = Message(
            contact_id=contact.id,
            journey_id=None,
            step_id="hello",
            channel="email",
            status=MessageStatus.SENT,
            subject="ようこそ",
            created_at=START,
            sent_at=START,
            links=["https://example.com/"],
        )
        s.add(message)
        s.flush()
        s.add_all(
            [
                Event(
                    kind=EventKind.OPEN,
                    message_id=message.id,
                    contact_id=contact.id,
                    classification=Classification.MACHINE,
                    reason="Apple Mail Privacy Protection",
                    occurred_at=START + timedelta(seconds=3),
                ),
                Event(
                    kind=EventKind.CLICK,
                    message_id=message.id,
                    contact_id=contact.id,
                    classification=Classification.HUMAN,
                    reason="browser",
                    data={"link": 0},
                    occurred_at=START + timedelta(hours=2),
                ),
                Event(
                    kind=EventKind.ANSWER,
                    message_id=message.id,
                    contact_id=contact.id,
                    value="9",
                    occurred_at=START + timedelta(hours=3),
                ),
                Event(
                    kind=EventKind.CUSTOM,
                    name="usage_dropped",
                    contact_id=contact.id,
                    value="-40%",
                    occurred_at=START + timedelta(hours=4),
                ),
            ]
        )
        contact_id = contact.id
    with db.session() as s:
        entries = contact_timeline(s, contact_id)
    kinds = [e.kind for e in entries]
    assert kinds[:4] == ["event", "answer", "click", "open"]  # newest first
    assert (
        entries[3].machine
        and entries[3].reason == "Apple Mail Privacy Protection"
        and not entries[2].machine
    )
    assert {"message", "task", "entered"} <= set(kinds)
    html = signed_in(app).get(f"/contacts/{contact_id}").get_data(as_text=True)
    assert "山田 太郎" in html and "株式会社アクメ" in html and "1,200,000 JPY" in html
    assert (
        "Product event: usage_dropped" in html
        and "Answered 9" in html
        and 'class="open machine"' in html
    )
    assert "Call 株式会社アクメ" in html and "Mark done" in html  # the open task, with its form
    found = signed_in(app).get("/contacts?q=アクメ").get_data(as_text=True)
    assert f'href="/contacts/{contact_id}"' in found
    assert "Nobody matches" in signed_in(app).get("/contacts?q=%25").get_data(
        as_text=True
    )  # % is a character, not a wildcard


def test_marking_done_from_the_contact_page_goes_back_there(app, db, engine):
    engine.tick()
    task = the_task(db)
    client = signed_in(app)
    token = csrf_of(client, "/tasks")
    response = client.post(
        f"/tasks/{task.id}/complete", data={"csrf": token, "back": f"/contacts/{task.contact_id}"}
    )
    assert response.headers["Location"] == f"/contacts/{task.contact_id}"
    other = client.post(
        f"/tasks/{task.id}/cancel", data={"csrf": token, "back": "https://evil.example.com/"}
    )
    assert other.headers["Location"] == "/tasks"  # never anywhere else


@pytest.mark.parametrize(
    "url",
    [
        "/tasks?status=finished",
        "/tasks?due=tomorrow",
        "/tasks?page=0",
        "/tasks?page=x",
        "/tasks?page=²",  # a digit to str.isdigit, not to int()
        "/contacts/2147483648",
        "/contacts/1?before=yesterday",
        "/contacts/1?before=2026-11-24T00:00",
    ],
)
def test_bad_parameters_get_a_4xx(app, url):
    response = signed_in(app).get(url)
    assert 400 <= response.status_code < 500, (url, response.status_code)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["status", "due", "owner", "page", "q", "before"]),
    value=st.text(max_size=60),
)
def test_garbage_in_any_parameter_never_gets_a_500(app, name, value):
    client = signed_in(app)
    for path in ("/tasks", "/contacts", "/contacts/1"):
        response = client.get(path, query_string={name: value})
        assert response.status_code < 500, (path, name, value, response.status_code)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["journey", "step", "variant", "contact", "bucket", "since", "until"]),
    value=st.text(max_size=60),
)
def test_garbage_on_the_nps_and_preview_pages_never_gets_a_500(app, name, value):
    client = signed_in(app)
    for path in ("/nps", "/preview", "/preview/email"):
        response = client.get(
            path,
            query_string={
                name: value,
                **(
                    {}
                    if name == "contact"
                    else {"contact": "taro@example.com", "journey": "kickoff", "step": "after"}
                ),
            },
        )
        assert response.status_code < 500, (path, name, value, response.status_code)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(
        ["owner", "status", "due", "limit", "offset", "before", "journey", "bucket", "since"]
    ),
    value=st.text(max_size=60),
)
def test_garbage_on_the_task_timeline_and_nps_api_never_gets_a_500(api, name, value):
    auth = {"Authorization": f"Bearer {KEY}"}
    for path in ("/api/v1/tasks", "/api/v1/contacts/taro@example.com/timeline", "/api/v1/nps"):
        response = api.get(path, query_string={name: value}, headers=auth)
        assert response.status_code < 500, (path, name, value, response.status_code)
    response = api.post(
        "/api/v1/tasks/1/complete",
        data=value.encode("utf-8", "surrogatepass"),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code < 500, (value, response.status_code)


def test_the_rollup_counts_tasks_done_from_the_inbox(db, engine, clock):
    engine.tick()
    task = the_task(db)
    with db.session() as s, s.begin():
        complete_task(s, task.id, clock.now())
    with db.session() as s, s.begin():
        stats.rollup(s, clock.now())
    with db.session() as s:
        assert journey_report(s, "kickoff").totals.count("task_done") == 1


# ---------------------------------------------------------------------------- the API


@pytest.fixture
def api(build_app, setup):
    return build_app(secret_key=SECRET, api_keys=(KEY,)).test_client()


def test_tasks_through_the_api(api, db, engine, clock):
    auth = {"Authorization": f"Bearer {KEY}"}
    engine.tick()
    listed = api.get("/api/v1/tasks?owner=suzuki@example.com", headers=auth).get_json()
    [task] = listed["tasks"]
    assert (
        listed["total"] == 1
        and task["title"] == "Call 株式会社アクメ"
        and task["contact"]["name"] == "山田 太郎"
        and task["journey"] == "kickoff"
    )
    assert (
        api.post(f"/api/v1/tasks/{task['id']}/complete", json={"outcome": "x"}).status_code == 401
    )  # no key
    done = api.post(
        f"/api/v1/tasks/{task['id']}/complete",
        json={"outcome": "更新します", "by": "suzuki@example.com"},
        headers=auth,
    )
    assert done.status_code == 200 and done.get_json()["status"] == "done"
    assert (
        api.post(f"/api/v1/tasks/{task['id']}/complete", json={}, headers=auth).status_code == 409
    )
    assert api.post("/api/v1/tasks/999999/complete", headers=auth).status_code == 404
    assert (
        api.post(
            f"/api/v1/tasks/{task['id']}/complete", json={"outcome": 5}, headers=auth
        ).status_code
        == 400
    )
    assert (
        api.post(
            f"/api/v1/tasks/{task['id']}/complete", json={"when": "now"}, headers=auth
        ).status_code
        == 400
    )
    assert api.get("/api/v1/tasks?status=done", headers=auth).get_json()["total"] == 1
    for bad in (
        "status=finished",
        "due=tomorrow",
        "limit=0",
        "limit=x",
        "owner=not-an-address",
        "colour=red",
    ):
        assert api.get(f"/api/v1/tasks?{bad}", headers=auth).status_code == 400, bad
    clock.advance(timedelta(minutes=1))
    engine.tick()
    timeline = api.get("/api/v1/contacts/taro@example.com/timeline", headers=auth).get_json()
    kinds = [e["kind"] for e in timeline["entries"]]
    assert kinds[0] == "message" and "task_done" in kinds and "entered" in kinds
    assert (
        api.get(
            "/api/v1/contacts/taro@example.com/timeline?before=yesterday", headers=auth
        ).status_code
        == 400
    )
    assert api.get("/api/v1/contacts/nobody@example.com/timeline", headers=auth).status_code == 404
    assert api.get("/api/v1/nps", headers=auth).get_json()["total"]["n"] == 0
    assert api.get("/api/v1/nps?bucket=year", headers=auth).status_code == 400


# ---------------------------------------------------------------------------- the command line


def run(db, tmp_path, *args: str):
    import os
    import subprocess
    import sys

    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "MAIL_URL", "SECRET_KEY")
    }
    environ["DATABASE_URL"] = db.url
    result = subprocess.run(
        [sys.executable, "-m", "campaigns", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_tasks_on_the_command_line(db, engine, tmp_path):
    engine.tick()
    task = the_task(db)
    listed = run(db, tmp_path, "tasks", "--owner", OWNER)
    assert (
        listed.returncode == 0
        and "Call 株式会社アクメ" in listed.stdout
        and str(task.id) in listed.stdout
    )
    done = run(db, tmp_path, "tasks", "done", str(task.id), "--outcome", "電話済み")
    assert done.returncode == 0 and done.stdout.strip() == "done: Call 株式会社アクメ"
    again = run(db, tmp_path, "tasks", "done", str(task.id))
    assert again.returncode == 1 and "already done" in again.stderr
    assert "no open tasks" in run(db, tmp_path, "tasks").stdout
    assert (
        "電話済み" not in run(db, tmp_path, "tasks", "--status", "done").stdout
        and "Call 株式会社アクメ" in run(db, tmp_path, "tasks", "--status", "done").stdout
    )
    assert run(db, tmp_path, "tasks", "--due", "someday").returncode == 2


def test_a_journey_without_a_goal_says_so_instead_of_a_goal_rate_of_nothing(app, db, engine):
    engine.tick()  # one contact enrolled in kickoff, which has no goal
    page = signed_in(app, "admin@example.com").get("/journeys/kickoff").get_data(as_text=True)
    assert 'class="muted no-goal"' in page and "Reached by" not in page
    with db.session() as s:
        report = journey_report(s, "kickoff")
    assert report.has_goal is False and report.as_dict()["goal"]["defined"] is False
