"""The tracking endpoints through Flask's test client, on SQLite and PostgreSQL: the pixel,
clicks (no open redirect), answers that a scanner's GET cannot cast, unsubscribing (page and
RFC 8058 one-click), preferences; forged tokens record nothing; garbage never gets a 500."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.store.enums import Classification, EventKind, MessageStatus
from campaigns.store.models import Account, Contact, Event, Message
from campaigns.tracking.tokens import TRAP_LINK, Tokens

SECRET = "track-secret-0123456789"
BASE = "https://cs.example.com"
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
LINKS = ["https://docs.example.com/start?utm=1", "https://example.com/ウェビナー"]


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(SECRET, BASE)


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock: five minutes after the messages were sent."""
    return FakeClock(NOW + timedelta(minutes=5))


@pytest.fixture
def app(build_app):
    return build_app(secret_key=SECRET, base_url=BASE)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def message(db) -> int:
    """A message sent five minutes ago to a Japanese contact, with two links."""
    with db.session() as s, s.begin():
        account = Account(external_id="ACME", name="株式会社アクメ")
        s.add(account)
        s.flush()
        contact = Contact(
            account_id=account.id,
            email="taro@example.jp",
            name="山田 太郎",
            locale="ja",
            time_zone="Asia/Tokyo",
        )
        s.add(contact)
        s.flush()
        row = Message(
            contact_id=contact.id,
            step_id="ask",
            status=MessageStatus.SENT,
            sent_at=NOW,
            links=LINKS,
            to_address=contact.email,
            message_id="<m1@example.com>",
        )
        s.add(row)
        s.flush()
        return row.id


def events(db, kind: str | None = None) -> list[Event]:
    with db.session() as s:
        query = select(Event).order_by(Event.id)
        if kind:
            query = query.where(Event.kind == kind)
        return list(s.scalars(query))


def path(url: str) -> str:
    return urlsplit(url).path


def test_the_pixel_is_a_real_uncached_gif_and_records_an_open(client, db, tokens, message):
    response = client.get(path(tokens.open_url(message)), headers={"User-Agent": BROWSER})
    assert response.status_code == 200 and response.mimetype == "image/gif"
    gif = response.data
    assert (
        gif[:6] == b"GIF89a"
        and int.from_bytes(gif[6:8], "little") == int.from_bytes(gif[8:10], "little") == 1
    )  # 1x1
    assert gif[19:22] == b"!\xf9\x04" and gif[22] & 1 and gif[-1:] == b";"  # transparent, complete
    assert (
        "no-store" in response.headers["Cache-Control"] and response.headers["Pragma"] == "no-cache"
    )
    [event] = events(db)
    assert (event.kind, event.message_id, event.classification, event.user_agent) == (
        EventKind.OPEN,
        message,
        Classification.HUMAN,
        BROWSER,
    )
    assert event.dedupe_key.startswith("hit:")


def test_a_click_redirects_only_to_a_link_of_its_own_message(client, db, tokens, message):
    response = client.get(path(tokens.click_url(message, 1)), headers={"User-Agent": BROWSER})
    assert response.status_code == 302 and response.headers["Location"] == LINKS[1].replace(
        "ウェビナー", "%E3%82%A6%E3%82%A7%E3%83%93%E3%83%8A%E3%83%BC"
    )
    assert response.headers["Referrer-Policy"] == "no-referrer"
    # An index beyond the message's links, a link of a message that does not exist: 404.
    assert client.get(path(tokens.click_url(message, 2))).status_code == 404
    assert client.get(path(tokens.click_url(message + 1000, 0))).status_code == 404
    [event] = events(db)
    assert (event.kind, event.data["link"]) == (EventKind.CLICK, 1)


@pytest.mark.parametrize(
    "attempt",
    [
        "/t/c/https://evil.example.com",
        "/t/c/?url=https://evil.example.com",
        "/t/c//evil.example.com",
        "/t/c/%2F%2Fevil.example.com",
        "/t/c/x?next=https://evil.example.com",
    ],
)
def test_open_redirect_attempts_fail(client, db, message, attempt):
    response = client.get(attempt)
    assert 400 <= response.status_code < 500
    assert "evil" not in response.headers.get("Location", "")
    assert events(db) == []


def test_the_trap_link_records_a_machine_and_goes_nowhere(client, db, tokens, message):
    response = client.get(
        path(tokens.click_url(message, TRAP_LINK)), headers={"User-Agent": BROWSER}
    )
    assert response.status_code == 204 and "Location" not in response.headers
    [event] = events(db)
    assert event.classification == Classification.MACHINE and "trap" in event.reason


def test_forged_and_mutated_tokens_record_nothing(client, db, tokens, message):
    good = [
        tokens.open_url(message),
        tokens.click_url(message, 0),
        tokens.answer_url(message, 9),
        tokens.unsubscribe_url(message),
        tokens.preferences_url(message),
    ]
    other = Tokens("another-secret-0123456789", BASE)
    forged = [
        other.open_url(message),
        other.click_url(message, 0),
        other.answer_url(message, 9),
        other.unsubscribe_url(message),
        other.preferences_url(message),
    ]
    statuses = []
    import random

    rng = random.Random(7)
    for i in range(1000):
        url = path(good[i % len(good)])
        prefix, token = url.rsplit("/", 1)
        suffix = ".gif" if token.endswith(".gif") else ""
        token = token.removesuffix(".gif")
        match i % 5:
            case 0:  # one character changed
                at = rng.randrange(len(token))
                token = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
            case 1:  # truncated
                token = token[: rng.randrange(1, len(token) - 1)]
            case 2:  # signed with another key
                prefix, token = path(forged[i % len(forged)]).rsplit("/", 1)
                token = token.removesuffix(".gif")
            case 3:  # purpose swapped: an open token on the click endpoint
                prefix, token, suffix = (
                    "/t/c",
                    path(good[0]).rsplit("/", 1)[1].removesuffix(".gif"),
                    "",
                )
            case 4:  # payload swapped under the same signature
                _, signature = token.split(".", 1)
                other_body = (
                    path(tokens.open_url(message + 1))
                    .rsplit("/", 1)[1]
                    .removesuffix(".gif")
                    .split(".")[0]
                )
                token = f"{other_body}.{signature}"
        for method in ("GET", "POST"):
            statuses.append(
                client.open(
                    f"{prefix}/{token}{suffix}",
                    method=method,
                    data={"List-Unsubscribe": "One-Click"},
                ).status_code
            )
    assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
    assert events(db) == []


def other_spellings(token: str) -> list[str]:
    """Spellings of ``token`` that a lenient base64 decoder reads as the same bytes, and so
    that itsdangerous alone would verify: padded, with a stray byte or whitespace after it,
    the signature's last character swapped for one differing only in the bits it does not
    carry; and a letter's case changed."""
    body, signature = token.split(".")
    decoded = base64.urlsafe_b64decode(signature + "=")
    same = [
        c
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        if c != signature[-1] and base64.urlsafe_b64decode(signature[:-1] + c + "=") == decoded
    ]
    assert len(same) == 3
    letter = next(i for i, c in enumerate(signature) if c.isalpha())
    swapped = signature[:letter] + signature[letter].swapcase() + signature[letter + 1 :]
    return [
        token + "=",
        token + "==",
        token + "=x",
        token + "\n",
        token + " ",
        f"{body}=.{signature}",
        *(f"{body}.{signature[:-1]}{c}" for c in same),
        f"{body}.{swapped}",
    ]


def test_only_the_one_spelling_of_a_pixel_or_click_token_records_a_hit(client, db, tokens, message):
    pixel, click, unsubscribe = (
        token_of_url(u)
        for u in (
            tokens.open_url(message),
            tokens.click_url(message, 0),
            tokens.unsubscribe_url(message),
        )
    )
    for spelling in other_spellings(pixel):
        for method in ("GET", "HEAD"):
            assert (
                client.open(
                    f"/t/o/{quote(spelling, safe='')}.gif",
                    method=method,
                    headers={"User-Agent": BROWSER},
                ).status_code
                == 404
            ), spelling
    for spelling in other_spellings(click):
        response = client.get(f"/t/c/{quote(spelling, safe='')}", headers={"User-Agent": BROWSER})
        assert response.status_code == 404 and "Location" not in response.headers, spelling
    for spelling in other_spellings(unsubscribe):  # through Flask, not the fast path
        assert (
            client.post(
                f"/t/u/{quote(spelling, safe='')}", data={"List-Unsubscribe": "One-Click"}
            ).status_code
            == 404
        ), spelling
    assert events(db) == []
    assert client.get(f"/t/o/{pixel}.gif", headers={"User-Agent": BROWSER}).status_code == 200
    assert client.get(f"/t/c/{click}", headers={"User-Agent": BROWSER}).status_code == 302
    assert [e.kind for e in events(db)] == [EventKind.OPEN, EventKind.CLICK]


def test_a_form_token_in_another_spelling_is_refused(client, db, tokens, message):
    url = path(tokens.answer_url(message, 9))
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(url).get_data(as_text=True)).group(
        1
    )
    for spelling in (csrf + "=", csrf + "==", csrf + " ", csrf.swapcase()):
        assert (
            client.post(url, data={"csrf": spelling}, headers={"User-Agent": BROWSER}).status_code
            == 400
        ), spelling
    assert events(db) == []
    assert client.post(url, data={"csrf": csrf}, headers={"User-Agent": BROWSER}).status_code == 200
    assert [e.kind for e in events(db)] == [EventKind.ANSWER]


def token_of_url(url: str) -> str:
    return path(url).rsplit("/", 1)[1].removesuffix(".gif")


def test_a_scanners_get_on_an_answer_link_is_not_an_answer(client, db, tokens, message):
    url = path(tokens.answer_url(message, 9))
    page = client.get(
        url, headers={"User-Agent": "Mozilla/5.0 (compatible; Proofpoint URL Defense)"}
    )
    assert page.status_code == 200 and client.head(url).status_code == 200
    assert events(db) == []  # a GET casts nothing
    html = page.get_data(as_text=True)
    assert 'lang="ja"' in html and "回答" in html
    nonce = re.search(r'<script nonce="([^"]+)">', html).group(1)
    assert (
        f"'nonce-{nonce}'" in page.headers["Content-Security-Policy"]
    )  # the auto-submit may run; nothing else


def test_a_person_answers_with_one_click_then_comments(client, db, tokens, message):
    url = path(tokens.answer_url(message, 9))
    html = client.get(url, headers={"User-Agent": BROWSER}).get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    thanks = client.post(url, data={"csrf": csrf}, headers={"User-Agent": BROWSER})
    assert thanks.status_code == 200 and "ご回答ありがとうございました" in thanks.get_data(
        as_text=True
    )
    [answer] = events(db, EventKind.ANSWER)
    assert (answer.value, answer.classification, answer.step_id) == (
        "9",
        Classification.HUMAN,
        "ask",
    )
    comment_csrf = re.search(r'name="csrf" value="([^"]+)"', thanks.get_data(as_text=True)).group(1)
    comment_url = re.search(r'action="([^"]+)"', thanks.get_data(as_text=True)).group(1)
    done = client.post(
        comment_url,
        data={"csrf": comment_csrf, "comment": "サポートの対応が早くて助かりました <script>"},
        headers={"User-Agent": BROWSER},
    )
    assert done.status_code == 200
    [comment] = events(db, EventKind.COMMENT)
    assert (
        comment.value == "サポートの対応が早くて助かりました <script>"
    )  # stored as written, escaped when shown


def test_a_post_without_its_form_token_is_refused(client, db, tokens, message):
    for url in (
        tokens.answer_url(message, 9),
        tokens.unsubscribe_url(message),
        tokens.preferences_url(message),
    ):
        response = client.post(path(url), data={"csrf": "forged"})
        assert response.status_code == 400
    assert events(db) == []


def test_rsvp_answers_are_rsvp_events(client, db, tokens, message):
    url = path(tokens.answer_url(message, "yes"))
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(url).get_data(as_text=True)).group(
        1
    )
    assert "参加登録" in client.post(
        url, data={"csrf": csrf}, headers={"User-Agent": BROWSER}
    ).get_data(as_text=True)
    [rsvp] = events(db, EventKind.RSVP)
    assert rsvp.value == "yes"


def test_one_click_unsubscribe_rfc8058(client, db, tokens, message):
    response = client.post(
        path(tokens.unsubscribe_url(message)),
        data={"List-Unsubscribe": "One-Click"},
        headers={"User-Agent": "Google-Unsubscribe"},
    )
    assert response.status_code == 200
    with db.session() as s:
        assert s.scalar(select(Contact.subscribed)) is False
    assert [e.kind for e in events(db)] == [EventKind.UNSUBSCRIBE]


def test_the_unsubscribe_page_asks_first_and_masks_the_address(client, db, tokens, message):
    url = path(tokens.unsubscribe_url(message))
    page = client.get(url).get_data(as_text=True)
    assert "taro@example.jp" not in page and "t***@example.jp" in page and "配信を停止する" in page
    with db.session() as s:
        assert s.scalar(select(Contact.subscribed)) is True  # the GET did nothing
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    done = client.post(url, data={"csrf": csrf}, headers={"User-Agent": BROWSER})
    assert "配信を停止しました" in done.get_data(as_text=True)
    with db.session() as s:
        assert s.scalar(select(Contact.subscribed)) is False


def test_preferences_opt_out_of_a_category_and_pause(client, db, tokens, message):
    url = path(tokens.preferences_url(message))
    page = client.get(url).get_data(as_text=True)
    assert "メール配信設定" in page and page.count('type="checkbox" name="category"') == 3
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    saved = client.post(url, data={"csrf": csrf, "category": ["marketing", "event"], "pause": "30"})
    assert saved.status_code == 200 and "設定を保存しました" in saved.get_data(as_text=True)
    with db.session() as s:
        contact = s.scalars(select(Contact)).one()
        assert contact.opt_out == ["survey"] and contact.subscribed
        assert contact.paused_until == NOW + timedelta(minutes=5, days=30)
    bad = client.post(url, data={"csrf": csrf, "category": ["lottery"], "pause": "30"})
    assert bad.status_code == 400


def test_english_pages_for_an_english_contact(client, db, tokens, message):
    with db.session() as s, s.begin():
        s.scalars(select(Contact)).one().locale = "en-US"
    page = client.get(path(tokens.unsubscribe_url(message))).get_data(as_text=True)
    assert 'lang="en"' in page and "Unsubscribe" in page


paths = st.one_of(
    st.text(max_size=80).map(lambda t: "/t/" + t),
    st.sampled_from(["/t/o/", "/t/c/", "/t/a/", "/t/u/", "/t/p/"]).flatmap(
        lambda p: st.text(alphabet=st.characters(codec="ascii"), max_size=300).map(lambda t: p + t)
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    url=paths,
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]),
    body=st.binary(max_size=300),
)
def test_garbage_never_gets_a_500_and_records_nothing(client, db, message, url, method, body):
    try:
        response = client.open(
            url, method=method, data=body, content_type="application/x-www-form-urlencoded"
        )
    except ValueError:  # the test client refuses some raw paths before any request is made
        return
    assert response.status_code < 500
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 0


@pytest.mark.parametrize(("hops", "network"), [(0, "127.0.0.0/24"), (1, "203.0.113.0/24")])
def test_behind_a_load_balancer_the_client_address_comes_from_x_forwarded_for(
    db, build_app, tokens, message, hops, network
):
    application = build_app(secret_key=SECRET, base_url=BASE, trusted_proxies=hops)
    response = application.test_client().get(
        path(tokens.open_url(message)),
        headers={"User-Agent": BROWSER, "X-Forwarded-For": "203.0.113.50"},
    )
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    [event] = events(db)
    assert event.data["ip"] == network
