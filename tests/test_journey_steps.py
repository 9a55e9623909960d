"""Who is at a journey's step: the dashboard's page and CSV export, ``campaigns
enrollments`` and the held counts of ``campaigns report``, on SQLite and PostgreSQL, after
a real engine run (tests/test_flow.py's scenario). Japanese names come through the page and
the CSV (UTF-8 with a byte-order mark); garbage parameters get a 4xx, never a 500."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from campaigns.exceptions import CampaignsError
from campaigns.store.enums import AuditAction
from campaigns.store.models import AuditEntry
from campaigns.store.users import add_user
from tests.kit import START
from tests.test_flow import engine_for, seed

EMAIL = "marketer@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def client(db, build_engine, build_app):
    seed(db)
    engine_for(build_engine).tick()
    with db.session() as s, s.begin():
        add_user(s, EMAIL, PASSWORD, START, name="山田 花子", role="admin")
    client = build_app().test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    response = client.post(
        "/login", data={"csrf": token.group(1), "email": EMAIL, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


def test_the_step_page_lists_who_is_there_with_japanese_names(client):
    response = client.get("/journeys/flowtest/steps/look")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count('<tr data-enrollment="') == 4
    assert "佐藤 花子" in page and "株式会社テスト" in page
    assert "London" not in page and "Alex" not in page  # still at hello, held by the window
    held = client.get("/journeys/flowtest/steps/hello").get_data(as_text=True)
    assert "Alex" in held and "sending window: 2" in held and "frequency cap: 1" in held


def test_the_step_page_filters_by_state_and_pages(client):
    page = client.get("/journeys/flowtest/steps/look?state=completed").get_data(as_text=True)
    assert "Nobody is at this step" in page
    waiting = client.get("/journeys/flowtest/steps/look?state=waiting").get_data(as_text=True)
    assert waiting.count('<tr data-enrollment="') == 4
    assert "Page 1 of 1" in waiting
    assert "Nobody" in client.get("/journeys/flowtest/steps/look?page=2").get_data(as_text=True)


@pytest.mark.parametrize(
    "path, status",
    [
        ("/journeys/flowtest/steps/nowhere", 404),
        ("/journeys/nojourney/steps/look", 404),
        ("/journeys/flowtest/steps/look?page=%C2%B2", 400),  # a superscript two: not ASCII
        ("/journeys/flowtest/steps/look?page=0", 400),
        ("/journeys/flowtest/steps/look?page=-1", 400),
        ("/journeys/flowtest/steps/look?state=sleeping", 400),
        ("/journeys/flowtest/enrollments.csv?state=%00", 400),
        ("/journeys/flowtest/enrollments.csv?step=%3Cscript%3E", 404),
        ("/journeys/flow%00test/enrollments.csv", 404),
    ],
)
def test_garbage_parameters_get_a_4xx(client, path, status):
    assert client.get(path).status_code == status


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    page=st.text(max_size=12),
    state=st.text(max_size=12),
    step=st.text(max_size=12),
)
def test_any_parameters_get_a_page_or_a_4xx(client, page, state, step):
    query = {"page": page, "state": state}
    response = client.get("/journeys/flowtest/steps/look", query_string=query)
    assert response.status_code in (200, 400), (query, response.status_code)
    csv_response = client.get(
        "/journeys/flowtest/enrollments.csv", query_string={"step": step, "state": state}
    )
    assert csv_response.status_code in (200, 400, 404)


def test_the_csv_export_is_utf8_with_a_bom_and_is_audited(client, db):
    response = client.get("/journeys/flowtest/enrollments.csv?state=all")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data()
    assert body.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert len(rows) == 8
    names = {r["name"] for r in rows}
    assert {"山田 太郎", "佐藤 花子", "Alex"} <= names
    assert {r["step"] for r in rows} == {"hello", "look"}
    assert {r["account"] for r in rows} == {"株式会社テスト"}
    one_step = client.get("/journeys/flowtest/enrollments.csv?step=hello").get_data()
    assert len(one_step.decode("utf-8-sig").strip().splitlines()) == 1 + 4
    with db.session() as s:
        entries = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.actor, e.target) for e in entries] == [
        (AuditAction.EXPORT, EMAIL, "flowtest"),
        (AuditAction.EXPORT, EMAIL, "flowtest"),
    ]
    assert entries[1].detail == {"step": "hello", "state": "now"}


def test_the_journey_page_draws_the_flowchart_and_the_held_table(client):
    page = client.get("/journeys/flowtest").get_data(as_text=True)
    assert 'class="chart flowchart"' in page
    assert 'data-step="hello" data-waiting="4" data-sent="4"' in page
    assert 'href="/journeys/flowtest/steps/look"' in page
    assert 'id="held"' in page and "rate limit: 1" in page


def test_the_journeys_list_explains_enrolled_against_sent(client):
    page = client.get("/journeys").get_data(as_text=True)
    assert 'class="enrolled">8<' in page and 'class="held-now">4<' in page


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def shell(cli, client, db):
    """The CLI on the scenario's database (``client`` ran the engine)."""
    cli.env["DATABASE_URL"] = db.url
    return cli


def test_campaigns_enrollments_lists_a_step_and_exports_csv(shell, db):
    table = shell("enrollments", "flowtest", "--step", "look")
    assert table.exit_code == 0, table.output
    assert "佐藤 花子" in table.output and "Alex" not in table.output
    exported = shell("enrollments", "flowtest", "--state", "all", "--csv")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert len(rows) == 8 and "山田 太郎" in {r["name"] for r in rows}
    with db.session() as s:
        entry = s.scalars(select(AuditEntry)).one()
    assert entry.action == AuditAction.EXPORT and entry.actor.startswith("cli:")


def test_campaigns_enrollments_says_what_is_wrong_in_one_line(shell):
    for args in (["nojourney"], ["flowtest", "--step", "nowhere"]):
        result = shell("enrollments", *args)
        # main() turns a CampaignsError into one line on stderr and exit status 2
        assert isinstance(result.exception, CampaignsError), result.output
        assert "\n" not in str(result.exception) and args[-1] in str(result.exception)


def test_campaigns_report_shows_what_is_held_and_why(shell):
    result = shell("report", "flowtest", "--format", "json")
    assert result.exit_code == 0, result.output
    held = json.loads(result.output)["held"]
    assert held["total"] == 4
    assert held["by_reason"] == {"sending window": 2, "frequency cap": 1, "rate limit": 1}
    assert held["steps"] == [
        {
            "step": "hello",
            "held": 4,
            "by_reason": {"sending window": 2, "frequency cap": 1, "rate limit": 1},
        }
    ]
    table = shell("report", "flowtest")
    assert "held now: 4 (sending window 2, frequency cap 1, rate limit 1)" in table.output
    overview = json.loads(shell("report", "--format", "json").output)
    [item] = [j for j in overview["journeys"] if j["journey"] == "flowtest"]
    assert item["counts"]["held"] == 4 and item["counts"]["in_progress"] == 8
