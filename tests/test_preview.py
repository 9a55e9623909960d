"""Template preview and test send from the dashboard, on SQLite and PostgreSQL: the preview is
the email the engine would send the chosen contact (their language, their account's data, the
variant asked for), it writes nothing, its frame cannot run scripts, and the test send arrives
at a real SMTP server (aiosmtpd) with ``[Test]`` before the subject and untracked links."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns import config as settings_module
from campaigns.clock import FakeClock
from campaigns.content.mime import Sender
from campaigns.content.render import Renderer
from campaigns.content.templates import TemplateStore
from campaigns.engine.deploy import deploy
from campaigns.engine.preview import PreviewError, email_steps, render_preview
from campaigns.journeys.parse import parse_journey
from campaigns.store.models import Account, Contact, Event, Message
from campaigns.store.users import add_user
from campaigns.tracking.tokens import Tokens
from campaigns.web import create_app

ROOT = Path(__file__).resolve().parent.parent
SECRET = "preview-secret-0123456789"
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
USER = "reviewer@example.com"
PASSWORD = "correct horse battery"
JOURNEY = textwrap.dedent(
    """\
    journey: welcome
    name: ようこそ
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: hello
        email:
          template: onboarding_tips
          subject: {en: "Welcome, {{ account.name }}", ja: "{{ account.name }}様、ようこそ"}
          variants:
            - {id: plain, preheader: {en: "Three tips", ja: "3つのヒント"}}
            - {id: tips, subject: {en: "B: tips for {{ account.name }}",
                ja: "B案: {{ account.name }}様へのヒント"}}
      - {id: wait, wait: 1 day}
      - id: ask
        survey: {scale: nps, template: nps_survey, subject: {en: "How did we do?",
            ja: おすすめ度を教えてください}}
    """
)


@pytest.fixture
def setup(db):
    with db.session() as s, s.begin():
        account = Account(external_id="ACME", name="株式会社アクメ", owner_email="csm@example.com")
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
        s.add(
            Contact(account_id=account.id, email="jane@example.com", name="Jane Doe", locale="en")
        )
        deploy(s, parse_journey(JOURNEY, "welcome.yaml"), JOURNEY, "welcome.yaml")
        add_user(s, USER, PASSWORD, NOW, role="marketer")  # a test send steers


@pytest.fixture
def app(db, setup, smtp_sink):
    cfg = dataclasses.replace(
        settings_module.load({}),
        secret_key=SECRET,
        base_url="https://cs.example.com",
        redis_url=None,
        mail_url=smtp_sink.url,
        templates_dir=ROOT / "templates",
    )
    application = create_app(
        {
            "DATABASE_URL": db.url,
            "CAMPAIGNS": cfg,
            "TESTING": True,
            "CLOCK": FakeClock(NOW),
            "SECRET_KEY": SECRET,
        }
    )
    yield application
    application.extensions["campaigns.services"].close()  # the SMTP connection, the pool


def signed_in(app):
    client = app.test_client()
    token = re.search(
        r'name="csrf" value="([^"]+)"', client.get("/login").get_data(as_text=True)
    ).group(1)
    assert (
        client.post("/login", data={"csrf": token, "email": USER, "password": PASSWORD}).status_code
        == 302
    )
    return client


def renderer() -> Renderer:
    return Renderer(
        TemplateStore(ROOT / "templates"),
        Tokens(SECRET, "https://cs.example.com"),
        Sender("cs@example.com"),
    )


def nothing_written(db) -> None:
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 0
        assert s.scalar(select(func.count()).select_from(Event)) == 0


def test_the_preview_is_the_contacts_email_in_their_language_with_the_variant(db, setup):
    journey = parse_journey(JOURNEY, "welcome.yaml")
    assert [(s.id, s.kind, s.variants) for s in email_steps(journey)] == [
        ("hello", "email", ("plain", "tips")),
        ("ask", "survey", ()),
    ]
    with db.session() as s:
        taro = s.scalars(select(Contact).where(Contact.email == "taro@example.com")).one()
        jane = s.scalars(select(Contact).where(Contact.email == "jane@example.com")).one()
        first = render_preview(s, renderer(), journey, "hello", taro, NOW)
        b = render_preview(s, renderer(), journey, "hello", jane, NOW, variant="tips")
        survey = render_preview(s, renderer(), journey, "ask", taro, NOW)
        with pytest.raises(PreviewError, match="no variant 'other'"):
            render_preview(s, renderer(), journey, "hello", taro, NOW, variant="other")
        with pytest.raises(PreviewError, match="no email, survey or invite step 'wait'"):
            render_preview(s, renderer(), journey, "wait", taro, NOW)
    assert (first.variant, first.subject, first.locale) == (
        "plain",
        "株式会社アクメ様、ようこそ",
        "ja",
    )
    assert (b.variant, b.subject, b.locale) == ("tips", "B: tips for 株式会社アクメ", "en")
    assert survey.subject == "おすすめ度を教えてください"
    assert len(re.findall(r'href="https://cs\.example\.com/t/a/', survey.html)) == 11  # 0..10
    assert "/t/o/" not in first.html and "/t/c/" not in first.html  # no pixel, links not rewritten
    nothing_written(db)


def test_the_preview_page_and_its_sandboxed_frame(app, db):
    client = signed_in(app)
    empty = client.get("/preview")
    assert empty.status_code == 200 and "ようこそ (welcome)" in empty.get_data(as_text=True)
    response = client.get(
        "/preview",
        query_string={
            "journey": "welcome",
            "step": "hello",
            "variant": "tips",
            "contact": "TARO@example.com",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:500]
    assert (
        "B案: 株式会社アクメ様へのヒント" in html and "山田 太郎" in html and "variant tips" in html
    )
    assert "frame-src 'self'" in response.headers["Content-Security-Policy"]
    frame = re.search(r'<iframe[^>]*src="([^"]+)"', html).group(1).replace("&amp;", "&")
    email = client.get(frame)
    assert email.status_code == 200 and "株式会社アクメ" in email.get_data(as_text=True)
    policy = email.headers["Content-Security-Policy"]
    assert "sandbox" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert email.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert (
        client.get(
            "/preview",
            query_string={"journey": "welcome", "step": "hello", "contact": "nobody@example.com"},
        ).status_code
        == 400
    )
    assert (
        client.get(
            "/preview",
            query_string={"journey": "nope", "step": "hello", "contact": "taro@example.com"},
        ).status_code
        == 400
    )
    assert client.get("/preview/email").status_code == 404
    nothing_written(db)


def test_a_test_send_arrives_over_smtp_marked_and_untracked(app, db, smtp_sink):
    client = signed_in(app)
    page = client.get(
        "/preview",
        query_string={"journey": "welcome", "step": "hello", "contact": "taro@example.com"},
    ).get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = {
        "journey": "welcome",
        "step": "hello",
        "variant": "",
        "contact": "taro@example.com",
        "to": "qa@example.com",
    }
    assert client.post("/preview/send", data=form).status_code == 400  # no CSRF token
    response = client.post("/preview/send", data={**form, "csrf": token})
    assert response.status_code == 302 and response.headers["Location"].startswith(
        "/preview?journey=welcome"
    )
    [mail] = smtp_sink.parsed()
    assert (
        str(mail["Subject"]) == "[Test] 株式会社アクメ様、ようこそ"
        and mail["To"] == "qa@example.com"
    )
    html = mail.get_body(("html",)).get_content()
    assert "株式会社アクメ" in html and "/t/c/" not in html and "/t/o/" not in html
    assert "Test sent to qa@example.com" in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    bad = client.post(
        "/preview/send", data={**form, "csrf": token, "to": "not an address\r\nBcc: x@example.com"}
    )
    bad = client.get(bad.headers["Location"])
    assert "Not sent" in bad.get_data(as_text=True), bad.get_data(as_text=True)[-1500:]
    assert len(smtp_sink.messages) == 1
    nothing_written(db)


SECOND = textwrap.dedent(
    """\
    journey: renewal
    name: 更新のご案内
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: remind
        email: {template: renewal_reminder, subject: {en: Renewal, ja: 更新のご案内}}
    """
)


def test_the_step_list_is_the_chosen_journeys_and_follows_a_new_choice(app, db):
    with db.session() as s, s.begin():
        deploy(s, parse_journey(SECOND, "renewal.yaml"), SECOND, "renewal.yaml")
    client = signed_in(app)

    def steps(html: str) -> list[str]:
        form = html[html.index('<select name="step">') :]
        return re.findall(r'<option value="([^"]+)"', form[: form.index("</select>")])

    first = client.get("/preview").get_data(as_text=True)  # none chosen: the first, by key
    assert steps(first) == ["remind"] and "Step of 更新のご案内" in first
    chosen = client.get("/preview", query_string={"journey": "welcome"}).get_data(as_text=True)
    assert steps(chosen) == ["hello", "ask"] and "Step of ようこそ" in chosen
    assert '<input type="hidden" name="journey" value="welcome">' in chosen
    back = client.get("/preview", query_string={"journey": "renewal", "step": "hello"})
    assert steps(back.get_data(as_text=True)) == ["remind"]  # another journey's step: not kept
