"""Mail to account owners is its own channel: the notice of a task goes to the owner as a
user, in their language, with no List-Unsubscribe, no preference link and no tracking, with
``Auto-Submitted``, and with links into the dashboard that work; an unsubscribe token made
for it unsubscribes nobody. Real SMTP (aiosmtpd), parsed with the ``email`` package; the
links are followed in the Flask test client as the signed-in owner."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import MessageStatus
from campaigns.store.models import Account, Contact, Event, Message, User
from campaigns.store.users import add_user
from campaigns.tracking.tokens import Tokens

SECRET = "owner-mail-secret-0123456789"
BASE = "https://cs.example.com"
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
JAPANESE_OWNER = "suzuki@example.com"
ENGLISH_OWNER = "jane.doe@example.com"
JOURNEY = textwrap.dedent(
    """\
    journey: kickoff
    name: Kickoff
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: call
        task:
          kind: call
          title: "Call {{ account.name }}"
          due: 2 days
          notes: "NPS {{ contact.name }}"
    """
)


@pytest.fixture
def setup(db):
    """Two accounts: one owned by a Japanese CSM (a user with ``locale: ja``), one by an
    English one with no user row; a contact each; an English journey that makes a task."""
    with db.session() as s, s.begin():
        for external_id, name, owner in (
            ("ACME", "株式会社アクメ", JAPANESE_OWNER),
            ("GLOBEX", "Globex", ENGLISH_OWNER),
        ):
            account = Account(external_id=external_id, name=name, arr=Decimal(1), owner_email=owner)
            s.add(account)
            s.flush()
            s.add(
                Contact(
                    account_id=account.id,
                    email=f"buyer@{external_id.lower()}.example",
                    name=f"Buyer of {name}",
                    locale="en",
                )
            )
        deploy(s, parse_journey(JOURNEY, "kickoff.yaml"), JOURNEY, "kickoff.yaml")
        user = add_user(s, JAPANESE_OWNER, PASSWORD, START, name="鈴木 一郎", role="csm")
        user.locale = "ja"


@pytest.fixture
def engine(build_engine, smtp_sink, setup):
    return build_engine(transport=smtp_sink, secret=SECRET, base_url=BASE)


@pytest.fixture
def app(build_app, setup):
    return build_app(secret_key=SECRET, base_url=BASE)


def notices(smtp_sink) -> dict[str, EmailMessage]:
    """The notices the sink received, by owner address."""
    found = {}
    for (_, recipients, _), parsed in zip(smtp_sink.messages, smtp_sink.parsed(), strict=True):
        if recipients[0] in (JAPANESE_OWNER, ENGLISH_OWNER):
            found[recipients[0]] = parsed
    return found


def parts(message: EmailMessage) -> tuple[str, str]:
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


def signed_in(app, email: str):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    response = client.post(
        "/login", data={"csrf": csrf.group(1), "email": email, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


def test_the_notice_carries_no_unsubscribe_no_preferences_and_no_tracking(engine, smtp_sink):
    engine.tick()
    sent = notices(smtp_sink)
    assert set(sent) == {JAPANESE_OWNER, ENGLISH_OWNER}
    for owner, message in sent.items():
        assert message["List-Unsubscribe"] is None, owner
        assert message["List-Unsubscribe-Post"] is None, owner
        assert message["Auto-Submitted"] == "auto-generated", owner
        for part in parts(message):
            assert f"{BASE}/t/" not in part, owner  # no pixel, click, answer, unsubscribe URL
            assert "/u/" not in part and "/p/" not in part, owner
            assert "unsubscribe" not in part.lower(), owner


def test_the_notice_is_a_row_of_the_owner_channel_sent_once(db, engine, smtp_sink):
    engine.tick()
    engine.tick()
    with db.session() as s:
        rows = s.scalars(select(Message).where(Message.attempt_key == "owner")).all()
    assert sorted(r.to_address for r in rows) == [ENGLISH_OWNER, JAPANESE_OWNER]
    assert {(r.channel, r.status, r.category) for r in rows} == {
        ("owner", MessageStatus.SENT, "transactional")
    }
    assert all(r.links == [] and r.message_id for r in rows)
    assert len(notices(smtp_sink)) == 2 and len(smtp_sink.messages) == 2


def test_a_japanese_owner_gets_japanese_and_an_english_owner_english(engine, smtp_sink):
    engine.tick()
    sent = notices(smtp_sink)
    japanese, english = sent[JAPANESE_OWNER], sent[ENGLISH_OWNER]
    assert str(japanese["Subject"]) == "[タスク] Call 株式会社アクメ"
    assert str(japanese["To"]) == "鈴木 一郎 <suzuki@example.com>"
    html, text = parts(japanese)
    assert "タスクを開く" in html and "タスクを開く" in text and "鈴木 一郎さん" in text
    assert "2026年11月26日（木）" in text  # the due date in the owner's words, not the contact's
    assert str(english["Subject"]) == "[Task] Call Globex"
    html, text = parts(english)
    assert "Open the task" in html and "Hi Jane Doe," in text and "November 26, 2026" in text


def test_the_notices_links_are_under_base_url_and_open_for_the_signed_in_owner(
    app, engine, smtp_sink
):
    engine.tick()
    html, text = parts(notices(smtp_sink)[JAPANESE_OWNER])
    hrefs = [h for h in re.findall(r'href="([^"]*)"', html) if not h.startswith("mailto:")]
    assert len(hrefs) >= 3  # the account, "open the task", the inbox in the footer
    assert all(href.startswith(f"{BASE}/") for href in hrefs), hrefs
    assert set(hrefs) <= set(re.findall(r"https://\S+", text.replace("）", " ")))
    client = signed_in(app, JAPANESE_OWNER)
    for href in set(hrefs):
        url = urlsplit(href.replace("&amp;", "&"))
        response = client.get(f"{url.path}?{url.query}" if url.query else url.path)
        assert response.status_code in (200, 302), (href, response.status_code)
    assert "株式会社アクメ" in client.get(urlsplit(hrefs[0]).path).get_data(as_text=True)


def test_an_unsubscribe_token_for_a_notice_unsubscribes_nobody(app, db, engine, smtp_sink):
    engine.tick()
    with db.session() as s:
        notice = s.scalars(select(Message).where(Message.to_address == JAPANESE_OWNER)).one()
    tokens = Tokens(SECRET, BASE)
    client = app.test_client()
    one_click = urlsplit(tokens.unsubscribe_url(notice.id)).path
    client.post(one_click, data={"List-Unsubscribe": "One-Click"})
    client.post(one_click, data={})  # the page's form: no customer behind it
    assert client.get(one_click).status_code == 404
    preferences = urlsplit(tokens.preferences_url(notice.id)).path
    assert client.get(preferences).status_code == 404
    assert client.post(preferences, data={"unsubscribe": "all"}).status_code == 404
    with db.session() as s:
        assert all(s.scalars(select(Contact.subscribed)))
        assert s.scalars(select(Event)).all() == []
        assert s.scalars(select(User.locale)).one() == "ja"
