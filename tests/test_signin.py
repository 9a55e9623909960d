"""Ending sessions, through Flask's test client on SQLite and PostgreSQL: signing out or a
new password ends every session of the user, copies of the cookie included."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest

from campaigns import config as settings_module
from campaigns.clock import FakeClock
from campaigns.users import add_user, set_password
from campaigns.web import create_app

SECRET = "signin-secret-0123456789"
BASE = "https://cs.example.com"
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
EMAIL = "hanako@example.com"
PASSWORD = "correct horse battery"
STRANGER = "198.51.100.66"
OWNER = "203.0.113.9"


# ---------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def app(db, clock):
    cfg = dataclasses.replace(settings_module.load({}), secret_key=SECRET, base_url=BASE, redis_url=None)
    application = create_app({"DATABASE_URL": db.url, "CAMPAIGNS": cfg, "TESTING": True, "CLOCK": clock, "SECRET_KEY": SECRET})
    yield application
    application.extensions["campaigns.engine"].dispose()


@pytest.fixture
def user(db) -> str:
    with db.session() as s, s.begin():
        add_user(s, EMAIL, PASSWORD, NOW, role="admin")
    return EMAIL


def browser(app, address: str, **headers: str):
    """A test client whose requests come from ``address`` (what the server's socket sees)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    client.environ_base.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    return client


def csrf_of(client, path: str = "/login") -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


def sign_in(client, email: str = EMAIL, password: str = PASSWORD):
    return client.post("/login", data={"csrf": csrf_of(client), "email": email, "password": password})


# ---------------------------------------------------------------------------- ending sessions


def test_signing_out_ends_a_copied_cookie_at_once(app, user):
    laptop = browser(app, OWNER)
    assert sign_in(laptop).status_code == 302
    copy = browser(app, STRANGER)
    copy.set_cookie("campaigns_session", laptop.get_cookie("campaigns_session").value, domain="localhost")
    assert copy.get("/journeys").status_code == 200  # a copied cookie is the session until...
    assert laptop.post("/logout", data={"csrf": csrf_of(laptop, "/journeys")}).status_code == 302
    ended = copy.get("/journeys")
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")


def test_signing_out_ends_every_session_of_that_user_only(app, user, db):
    with db.session() as s, s.begin():
        add_user(s, "kenji@example.com", PASSWORD, NOW)
    laptop, phone, colleague = browser(app, OWNER), browser(app, OWNER), browser(app, OWNER)
    for client, email in ((laptop, EMAIL), (phone, EMAIL), (colleague, "kenji@example.com")):
        assert sign_in(client, email).status_code == 302
    laptop.post("/logout", data={"csrf": csrf_of(laptop, "/journeys")})
    assert phone.get("/journeys").status_code == 302
    assert colleague.get("/journeys").status_code == 200
    assert sign_in(phone).status_code == 302 and phone.get("/journeys").status_code == 200  # signing in again works


def test_a_new_password_ends_every_session_and_its_copies(app, user, db):
    laptop = browser(app, OWNER)
    assert sign_in(laptop).status_code == 302
    copy = browser(app, STRANGER)
    copy.set_cookie("campaigns_session", laptop.get_cookie("campaigns_session").value, domain="localhost")
    with db.session() as s, s.begin():
        set_password(s, EMAIL, "a brand new passphrase")
    assert laptop.get("/journeys").status_code == 302 and copy.get("/journeys").status_code == 302
    assert sign_in(laptop, password="a brand new passphrase").status_code == 302


def test_a_signed_cookie_without_a_session_version_is_refused(app, user):
    """Cookies signed before session versions existed (they carried a password fingerprint)."""
    client = browser(app, OWNER)
    assert sign_in(client).status_code == 302
    with client.session_transaction() as session:
        del session["version"]
        session["auth"] = "0" * 32
    assert client.get("/journeys").status_code == 302
