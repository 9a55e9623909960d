"""The journey page's lifecycle block and the audit log page, through Flask's test client on
the test database (SQLite and PostgreSQL): the buttons that fit the status, each a POST form
with the session's CSRF token; a change the status does not allow is a message, not an
error; bad input is a 4xx; archived journeys leave the list until asked for; ``/audit``
filters by journey and pages back."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.engine import lifecycle
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import EnrollmentState
from campaigns.store.models import Account, Contact, Enrollment
from campaigns.store.models import Journey as JourneyRow
from campaigns.store.users import add_user
from tests.kit import START

EMAIL = "marketer@example.com"
PASSWORD = "correct horse battery"

JOURNEY = textwrap.dedent(
    """\
    journey: {key}
    name: 更新のご案内 {key}
    segments: [everyone]
    entry: {{trigger: segment}}
    steps:
      - {{id: rest, wait: 2 days}}
      - {{id: hi, email: {{template: onboarding_tips, subject: Hi}}}}
    """
)


def put(db, key: str) -> None:
    text = JOURNEY.format(key=key)
    with db.session() as s, s.begin():
        deploy(s, parse_journey(text, f"{key}.yaml"), text, f"{key}.yaml")


def csrf_of(client, path: str = "/login") -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


def signed_in_as(app, db, role: str, email: str = EMAIL):
    with db.session() as s, s.begin():
        add_user(s, email, PASSWORD, START, name="佐藤 花子", role=role)
    client = app.test_client()
    response = client.post(
        "/login", data={"csrf": csrf_of(client), "email": email, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


@pytest.fixture
def marketer(app, db):
    put(db, "renewal")
    with db.session() as s, s.begin():
        account = Account(external_id="ACME-1", name="株式会社アクメ")
        s.add(account)
        s.flush()
        contact = Contact(account_id=account.id, email="taro@example.co.jp", name="太郎")
        s.add(contact)
        s.flush()
        journey = s.scalars(select(JourneyRow)).one()
        s.add(
            Enrollment(
                journey_id=journey.id,
                journey_version_id=journey.current_version_id,
                contact_id=contact.id,
                current_step="rest",
                state=EnrollmentState.WAITING,
                next_run_at=START + timedelta(days=2),
            )
        )
    return signed_in_as(app, db, "marketer")


def post(client, path: str, **form: str):
    return client.post(path, data={"csrf": csrf_of(client, "/journeys/renewal"), **form})


def status(db) -> str:
    with db.session() as s:
        return s.scalars(select(JourneyRow.status).where(JourneyRow.key == "renewal")).one()


def buttons(client) -> list[str]:
    page = client.get("/journeys/renewal").get_data(as_text=True)
    return re.findall(r'<button[^>]*name="do" value="([a-z]+)"', page)


def test_pause_resume_and_archive_from_the_journey_page(marketer, db):
    assert buttons(marketer) == ["pause", "archive", "remove"]
    response = post(marketer, "/journeys/renewal/pause")
    assert response.status_code == 302 and response.headers["Location"] == "/journeys/renewal"
    assert status(db) == "paused"
    page = marketer.get("/journeys/renewal").get_data(as_text=True)
    assert "renewal: paused" in page and "paused since 2026-11-24 01:00 UTC" in page
    assert buttons(marketer) == ["resume", "archive", "remove"]
    post(marketer, "/journeys/renewal/resume")
    assert status(db) == "live"
    post(marketer, "/journeys/renewal/archive")
    assert status(db) == "archived" and buttons(marketer) == []
    with db.session() as s:
        assert s.scalars(select(Enrollment.exit_reason)).one() == "archived"


def test_a_change_the_status_does_not_allow_is_a_message_and_changes_nothing(marketer, db):
    response = post(marketer, "/journeys/renewal/resume")
    assert response.status_code == 302 and status(db) == "live"
    page = marketer.get("/journeys/renewal").get_data(as_text=True)
    assert "cannot resume (it is live already)" in page and 'class="flash error"' in page


def test_a_draft_goes_live_from_its_page(marketer, db):
    with db.session() as s, s.begin():
        lifecycle.stored_as_draft(s, "renewal", EMAIL, START, 1)
    assert buttons(marketer) == ["live", "archive", "remove"]
    post(marketer, "/journeys/renewal/live")
    assert status(db) == "live"


def test_take_a_contact_out_from_the_journey_page(marketer, db):
    post(marketer, "/journeys/renewal/remove", kind="contact", who=" taro@example.co.jp ")
    page = marketer.get("/journeys/renewal").get_data(as_text=True)
    assert "contact taro@example.co.jp taken out of renewal: 1 enrollment ended" in page
    with db.session() as s:
        assert s.scalars(select(Enrollment.exit_reason)).one() == f"removed by {EMAIL}"
    post(marketer, "/journeys/renewal/remove", kind="account", who="NOPE")
    page = marketer.get("/journeys/renewal").get_data(as_text=True)
    assert "no account with the external id &#39;NOPE&#39;" in page


@pytest.mark.parametrize(
    ("path", "form", "code"),
    [
        ("/journeys/renewal/remove", {"kind": "person", "who": "x"}, 400),
        ("/journeys/renewal/remove", {"kind": "contact", "who": "a\x00b"}, 400),
        ("/journeys/renewal/remove", {"kind": "contact", "who": "x" * 321}, 400),
        ("/journeys/nope/pause", {}, 404),
        ("/journeys/nope/remove", {"kind": "contact", "who": "taro@example.co.jp"}, 404),
        ("/journeys/a%20b/pause", {}, 404),
    ],
)
def test_bad_input_is_a_4xx_and_changes_nothing(marketer, db, path, form, code):
    assert post(marketer, path, **form).status_code == code
    assert status(db) == "live"


def test_every_lifecycle_form_needs_the_csrf_token(marketer, db):
    for action in ("pause", "archive", "remove"):
        assert marketer.post(f"/journeys/renewal/{action}", data={}).status_code == 400
    assert status(db) == "live"


def test_a_viewer_sees_the_status_but_no_buttons(app, db, marketer):
    viewer = signed_in_as(app, db, "viewer", "viewer@example.com")
    page = viewer.get("/journeys/renewal").get_data(as_text=True)
    assert 'id="journey-status">live<' in page and buttons(viewer) == []


def test_archived_journeys_leave_the_list_until_asked_for(marketer, db):
    put(db, "onboarding")
    with db.session() as s, s.begin():
        lifecycle.archive(s, "onboarding", EMAIL, START)
    listed = marketer.get("/journeys").get_data(as_text=True)
    assert "/journeys/renewal" in listed and "/journeys/onboarding" not in listed
    assert "Show archived journeys (1)" in listed
    shown = marketer.get("/journeys?archived=1").get_data(as_text=True)
    assert "/journeys/onboarding" in shown and "Hide archived journeys" in shown


def test_the_audit_page_lists_who_did_what_filters_and_pages(marketer, db, monkeypatch):
    from campaigns.web import lifecycle as pages

    put(db, "onboarding")
    for _ in range(2):
        post(marketer, "/journeys/renewal/pause")
        post(marketer, "/journeys/renewal/resume")
    with db.session() as s, s.begin():
        lifecycle.pause(s, "onboarding", "cli:ops", START)
    page = marketer.get("/audit").get_data(as_text=True)
    assert re.findall(r'data-action="([a-z]+)"', page) == ["pause", *["resume", "pause"] * 2]
    assert EMAIL in page and "cli:ops" in page and 'href="/audit"' in page
    only = marketer.get("/audit?journey=onboarding").get_data(as_text=True)
    assert re.findall(r'data-action="([a-z]+)"', only) == ["pause"]
    monkeypatch.setattr(pages, "PAGE", 2)
    first = marketer.get("/audit?journey=renewal").get_data(as_text=True)
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older and re.findall(r'data-action="([a-z]+)"', first) == ["resume", "pause"]
    second = marketer.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r'data-action="([a-z]+)"', second) == ["resume", "pause"]
    assert 'rel="next"' not in second
    for bad in ("/audit?before=x", "/audit?journey=a%20b", "/audit?before=" + "9" * 30):
        assert marketer.get(bad).status_code == 400
