"""Signing in under attack, through Flask's test client on SQLite and PostgreSQL, with the
throttle's counts in the database and in Redis: guesses wait 2^k seconds after the free ones
(429, ``Retry-After``, a readable page), a stranger's guesses never hold the owner back from
another address, one address guessing many accounts is slowed too, ``TRUSTED_PROXIES`` is
respected and ``X-Forwarded-For`` otherwise ignored; signing out or a new password ends every
session of the user, copies of the cookie included. Time is a fake clock: nothing sleeps."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from campaigns.clock import FakeClock
from campaigns.store.users import add_user, set_password
from campaigns.web.dashboard import BAD_LOGIN
from campaigns.web.throttle import (
    ADDRESS_FREE,
    CAP,
    MEMORY,
    PAIR_FREE,
    Count,
    DatabaseAttempts,
    RedisAttempts,
    Rule,
    SignInThrottle,
    client_key,
)

SECRET = "signin-secret-0123456789"
BASE = "https://cs.example.com"
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
EMAIL = "hanako@example.com"
PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"
STRANGER = "198.51.100.66"
OWNER = "203.0.113.9"
BALANCER = "10.0.0.2"


# ---------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture(params=["database", "redis"])
def store(request, db):
    """The throttle's counts in the database (SQLite, PostgreSQL) or in Redis under a prefix
    of this test's own."""
    if request.param == "database":
        yield DatabaseAttempts(db.sessions)
        return
    conn = request.getfixturevalue("redis_conn")
    prefix = f"campaigns:test-signin:{uuid.uuid4().hex[:8]}:"
    yield RedisAttempts(conn, prefix=prefix)
    for key in conn.scan_iter(match=prefix + "*"):
        conn.delete(key)


@pytest.fixture
def app(build_app, store):
    return build_app(secret_key=SECRET, base_url=BASE, flask={"SIGNIN_ATTEMPTS": store})


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
    return client.post(
        "/login", data={"csrf": csrf_of(client), "email": email, "password": password}
    )


def guess(client, email: str = EMAIL) -> int:
    """One wrong password; the status (200: checked and refused, 429: told to wait)."""
    response = sign_in(client, email, WRONG)
    if response.status_code == 200:
        assert BAD_LOGIN in response.get_data(as_text=True)
    return response.status_code


# ---------------------------------------------------------------------------- the rule


def test_after_its_free_attempts_a_key_waits_two_to_the_k_seconds_up_to_the_cap():
    rule = Rule(free=5)
    assert [rule.wait(Count(n, NOW), NOW) for n in range(5)] == [0] * 5
    assert [rule.wait(Count(n, NOW), NOW) for n in range(5, 11)] == [1, 2, 4, 8, 16, 32]
    assert rule.wait(Count(14, NOW), NOW) == 512
    assert (
        rule.wait(Count(15, NOW), NOW)
        == rule.wait(Count(10_000, NOW), NOW)
        == CAP.total_seconds()
        == 900
    )
    assert (
        rule.wait(Count(7, NOW), NOW + timedelta(seconds=1.5)) == 2.5
    )  # counted from the last attempt
    assert rule.wait(Count(7, NOW), NOW + timedelta(seconds=4)) == 0


def test_a_key_is_forgotten_a_day_after_its_last_attempt():
    rule = Rule(free=5)
    assert rule.remembered(Count(40, NOW), NOW + MEMORY - timedelta(seconds=1)) == 40
    assert rule.remembered(Count(40, NOW), NOW + MEMORY) == 0
    assert rule.wait(Count(40, NOW), NOW + MEMORY) == 0


def test_a_last_attempt_in_the_future_never_holds_a_key_longer_than_its_delay():
    """Web processes on hosts whose clocks differ a little share one count."""
    rule = Rule(free=5)
    assert rule.wait(Count(6, NOW + timedelta(minutes=5)), NOW) == 2
    assert rule.wait(Count(3, NOW + timedelta(minutes=5)), NOW) == 0


def test_the_client_key_counts_ipv6_by_its_64_network_and_unwraps_mapped_ipv4():
    assert (
        client_key("2001:db8:1:2:aaaa::1")
        == client_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:198.51.100.7") == client_key("198.51.100.7") == "198.51.100.7"
    odd = {
        client_key(value)
        for value in (None, "", "proxy.internal", "198.51.100.7:5555", "x" * 5000, "a\x00b")
    }
    assert len(odd) == 5 and all(
        re.fullmatch(r"x[0-9a-f]{24}", key) for key in odd
    )  # None and "" are one client


# ---------------------------------------------------------------------------- the stores


def test_the_store_counts_refuses_and_does_not_count_refused_attempts(store):
    keys = (("pair:a", Rule(free=2)), ("addr:a", Rule(free=10)))
    assert store.take(keys, NOW) == 0
    assert store.take(keys, NOW) == 0
    assert store.take(keys, NOW) == 1  # 2 counted: the next must come 1 s after the last
    assert store.take(keys, NOW + timedelta(seconds=0.5)) == 0.5
    assert store.take(keys, NOW + timedelta(seconds=1)) == 0  # the 3rd; refusals were not counted
    assert store.take(keys, NOW + timedelta(seconds=1)) == 2
    store.forget("pair:a")
    assert store.take(keys, NOW + timedelta(seconds=1)) == 0  # the address has 4 of its 10
    assert store.take((("addr:a", Rule(free=4)),), NOW + timedelta(seconds=1)) == 1
    store.uncount("addr:a")
    assert store.take((("addr:a", Rule(free=4)),), NOW + timedelta(seconds=1)) == 0
    store.uncount("nothing:here")  # taking back what was never counted changes nothing
    assert store.take((("nothing:here", Rule(free=1)),), NOW) == 0


def test_a_store_forgets_a_key_a_day_after_its_last_attempt(store):
    keys = (("pair:b", Rule(free=1)),)
    assert store.take(keys, NOW) == 0
    assert store.take(keys, NOW + timedelta(hours=23)) == 0  # 1 s passed long ago: the 2nd
    assert store.take(keys, NOW + timedelta(hours=23)) == 2
    later = NOW + timedelta(hours=23) + MEMORY
    assert store.take(keys, later) == 0 and store.take(keys, later) == 1  # counting from 1 again


def test_parallel_attempts_cannot_slip_through_one_open_moment(store):
    """Many requests at the same instant, in many threads (as in many gunicorn workers):
    exactly the free ones are let through, not every one that looked before any counted."""
    keys = (("pair:race", Rule(free=3)), ("addr:race", Rule(free=50)))
    start = threading.Barrier(12)
    results: list[float] = []

    def attempt() -> None:
        start.wait()
        results.append(store.take(keys, NOW))

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 12
    assert sorted(results) == [0, 0, 0] + [1] * 9


def test_a_right_password_clears_its_pair_and_is_not_counted_against_its_address(store):
    throttle = SignInThrottle(store, pair=Rule(free=2), address=Rule(free=3))
    for _ in range(10):  # ten sign-ins in a row from one office address
        assert throttle.attempt(OWNER, EMAIL, NOW) == 0
        throttle.succeeded(OWNER, EMAIL)
    assert throttle.attempt(OWNER, EMAIL, NOW) == 0 and throttle.attempt(OWNER, EMAIL, NOW) == 0
    assert throttle.attempt(OWNER, EMAIL, NOW) == 1  # two failures on the pair
    assert throttle.attempt(OWNER, "kenji@example.com", NOW) == 0  # the address's 3rd
    assert throttle.attempt(OWNER, "ami@example.com", NOW) == 1
    throttle.succeeded(
        OWNER, "kenji@example.com"
    )  # a colleague's right password gives back one, wipes nothing
    assert throttle.attempt(OWNER, "ami@example.com", NOW) == 0
    assert throttle.attempt(OWNER, "ami@example.com", NOW) == 1


# ---------------------------------------------------------------------------- the sign-in page


def test_guesses_wait_longer_and_longer_with_retry_after_and_a_readable_page(app, user, clock):
    stranger = browser(app, STRANGER)
    for _ in range(PAIR_FREE):
        assert guess(stranger) == 200
    waits, pages = [], []
    for _ in range(4):
        refused = sign_in(stranger)  # even the right password must wait, from this address
        assert refused.status_code == 429
        waits.append(int(refused.headers["Retry-After"]))
        pages.append(refused.get_data(as_text=True))
        clock.advance(timedelta(seconds=waits[-1]))
        assert guess(stranger) == 200  # waited: this one is checked, and counted
    assert waits == [1, 2, 4, 8]
    assert (
        "Too many failed sign-ins. Wait 1 second, then try again." in pages[0]
        and "Wait 8 seconds, then" in pages[3]
    )
    assert 'name="password"' in pages[0]  # the form is there, to try again once waited
    clock.advance(timedelta(seconds=16))
    assert sign_in(stranger).status_code == 302  # the right password, once waited for


def test_the_wait_is_said_in_minutes_once_it_is_long(app, user, clock):
    stranger = browser(app, STRANGER)
    for _ in range(PAIR_FREE + 12):
        assert guess(stranger) == 200
        clock.advance(CAP)
    clock.advance(-CAP + timedelta(seconds=1))
    refused = sign_in(stranger)
    assert (
        refused.status_code == 429
        and int(refused.headers["Retry-After"]) == CAP.total_seconds() - 1
    )
    assert "Wait 15 minutes, then try again." in refused.get_data(as_text=True)


def test_a_strangers_guesses_never_hold_the_owner_back_from_another_address(app, user, clock):
    stranger = browser(app, STRANGER)
    for _ in range(PAIR_FREE + 10):  # until every further guess waits the cap
        while (status := guess(stranger)) == 429:
            clock.advance(timedelta(seconds=30))
        assert status == 200
    assert guess(stranger) == 429
    owner = browser(app, OWNER)
    assert sign_in(owner).status_code == 302
    assert owner.get("/journeys").status_code == 200
    assert guess(stranger) == 429  # and the owner's success did not let the stranger go on


def test_one_address_guessing_many_accounts_is_slowed_too(app, user):
    stranger = browser(app, STRANGER)
    for n in range(ADDRESS_FREE):
        assert guess(stranger, f"person{n}@example.com") == 200
    refused = sign_in(stranger, "someone.else@example.com", WRONG)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert sign_in(browser(app, OWNER)).status_code == 302  # another address is not slowed


def test_unknown_emails_are_throttled_exactly_like_known_ones(app, user):
    """Otherwise the throttle would tell which addresses have accounts."""
    known, unknown = browser(app, STRANGER), browser(app, "198.51.100.67")
    assert (
        [guess(known) for _ in range(PAIR_FREE + 1)]
        == [guess(unknown, "nobody@example.com") for _ in range(PAIR_FREE + 1)]
        == [200] * PAIR_FREE + [429]
    )


def test_behind_trusted_proxies_each_client_has_its_own_count(build_app, store, user):
    app = build_app(
        secret_key=SECRET, base_url=BASE, trusted_proxies=1, flask={"SIGNIN_ATTEMPTS": store}
    )
    stranger = browser(app, BALANCER, x_forwarded_for=STRANGER)
    for _ in range(PAIR_FREE):
        assert guess(stranger) == 200
    assert guess(stranger) == 429
    # The balancer appends the address it saw, so a client cannot pass for another
    # by sending X-Forwarded-For itself: only the last hop is believed.
    assert guess(browser(app, BALANCER, x_forwarded_for=f"{OWNER}, {STRANGER}")) == 429
    assert sign_in(browser(app, BALANCER, x_forwarded_for=OWNER)).status_code == 302


def test_without_trusted_proxies_x_forwarded_for_is_ignored(app, user):
    for n in range(PAIR_FREE):
        assert guess(browser(app, STRANGER, x_forwarded_for=f"192.0.2.{n}")) == 200
    assert guess(browser(app, STRANGER, x_forwarded_for=OWNER)) == 429


def test_a_store_that_cannot_be_reached_refuses_sign_in_with_503_not_500(build_app, user):
    unreachable = RedisAttempts(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1))
    app = build_app(secret_key=SECRET, base_url=BASE, flask={"SIGNIN_ATTEMPTS": unreachable})
    response = sign_in(browser(app, OWNER))
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert "Signing in is not possible for a moment" in response.get_data(as_text=True)


# ---------------------------------------------------------------------------- ending sessions


def test_signing_out_ends_a_copied_cookie_at_once(app, user):
    laptop = browser(app, OWNER)
    assert sign_in(laptop).status_code == 302
    copy = browser(app, STRANGER)
    copy.set_cookie(
        "campaigns_session", laptop.get_cookie("campaigns_session").value, domain="localhost"
    )
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
    assert (
        sign_in(phone).status_code == 302 and phone.get("/journeys").status_code == 200
    )  # signing in again works


def test_a_new_password_ends_every_session_and_its_copies(app, user, db):
    laptop = browser(app, OWNER)
    assert sign_in(laptop).status_code == 302
    copy = browser(app, STRANGER)
    copy.set_cookie(
        "campaigns_session", laptop.get_cookie("campaigns_session").value, domain="localhost"
    )
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
