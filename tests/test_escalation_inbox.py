"""The inbox shows an escalated task's badge (to whom, when) and filters on it; the signed-in
user's Task mail page sets their digest, escalation address and team behind CSRF."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.store.models import Task, User
from campaigns.store.users import add_user

OWNER = "dana@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def client(db, clock, build_app):
    now = clock.now()
    with db.session() as s, s.begin():
        add_user(s, OWNER, PASSWORD, now, name="Dana")
        s.add(
            Task(
                owner_email=OWNER,
                title="Escalated call",
                priority="urgent",
                due_at=now - timedelta(days=1),
                created_at=now - timedelta(days=2),
                escalated_at=now - timedelta(hours=3),
                escalated_to="boss@example.com",
            )
        )
        s.add(
            Task(
                owner_email=OWNER,
                title="Quiet review",
                due_at=now + timedelta(days=2),
                created_at=now,
            )
        )
    client = build_app().test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    client.post("/login", data={"csrf": csrf.group(1), "email": OWNER, "password": PASSWORD})
    return client


def test_the_inbox_marks_and_filters_escalated_tasks(client):
    page = client.get("/tasks").get_data(as_text=True)
    assert "escalated to boss@example.com on 2026-11-23" in page
    assert 'class="badge urgent"' in page and "1 escalated" in page
    only = client.get("/tasks?escalated=1").get_data(as_text=True)
    assert "Escalated call" in only and "Quiet review" not in only
    assert client.get("/tasks?escalated=yes").status_code == 400


def test_the_settings_form_sets_the_digest_behind_csrf(db, client):
    page = client.get("/settings").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf and 'value="digest"' in page
    form = {"task_mail": "digest", "escalate_to": "Boss@Example.com", "team": "enterprise"}
    assert client.post("/settings", data=form).status_code == 400  # no CSRF token
    saved = client.post("/settings", data={**form, "csrf": csrf.group(1)})
    assert saved.status_code == 302
    with db.session() as s:
        user = s.scalar(select(User).where(User.email == OWNER))
        assert user is not None
        assert (user.task_mail, user.escalate_to, user.team) == (
            "digest",
            "boss@example.com",
            "enterprise",
        )
    bad = client.post(
        "/settings",
        data={**form, "escalate_to": "nobody", "csrf": csrf.group(1)},
        follow_redirects=True,
    )
    assert "not an email address" in bad.get_data(as_text=True)
    assert (
        client.post("/settings", data={"task_mail": "weekly", "csrf": csrf.group(1)}).status_code
        == 400
    )
