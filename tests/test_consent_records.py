"""Recording consent, on SQLite and PostgreSQL: the preference page takes an opt-in (with the
wording's version) and a withdrawal through the real app and its CSRF tokens, unsubscribing
(page, RFC 8058 one-click, a complaint) records a withdrawal, the timeline shows both (page
and JSON), ``campaigns consent`` shows and sets them (audited), and the retention purge keeps
young records and drops old ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns import defaults
from campaigns.clock import FakeClock
from campaigns.store import consent
from campaigns.store.enums import AuditAction, ConsentAction, ConsentBasis, EventKind, MessageStatus
from campaigns.store.models import (
    Account,
    AuditEntry,
    ConsentRecord,
    Contact,
    ErasedAddress,
    Message,
)
from campaigns.tracking.bounces import Notice, store_notices
from campaigns.tracking.tokens import Tokens
from tests.kit import without_consent

SECRET = "consent-secret-0123456789"
BASE = "https://cs.example.com"
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
KEY = "consent-api-key-0123456789abc"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW + timedelta(minutes=5))


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(SECRET, BASE)


@pytest.fixture
def app(build_app):
    return build_app(secret_key=SECRET, base_url=BASE, api_keys=(KEY,))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def message(db) -> int:
    """A message sent five minutes ago to a Japanese contact who has no consent recorded."""
    with db.session() as s, s.begin():
        account = Account(external_id="ACME", name="株式会社アクメ", country="JP")
        s.add(account)
        s.flush()
        contact = Contact(
            account_id=account.id, email="taro@example.jp", name="山田 太郎", locale="ja"
        )
        s.add(contact)
        without_consent(s, contact)
        row = Message(
            contact_id=contact.id,
            step_id="ask",
            status=MessageStatus.SENT,
            sent_at=NOW,
            links=[],
            to_address=contact.email,
            message_id="<m1@example.com>",
        )
        s.add(row)
        s.flush()
        return row.id


def path(url: str) -> str:
    return urlsplit(url).path


def history(db) -> list[tuple[str, str | None, str | None, str | None]]:
    with db.session() as s:
        return [
            (r.action, r.basis, r.source, r.wording)
            for r in s.scalars(select(ConsentRecord).order_by(ConsentRecord.id))
        ]


def the_contact(db) -> Contact:
    with db.session() as s:
        return s.scalars(select(Contact)).one()


def form(client, url: str) -> tuple[str, str]:
    page = client.get(url).get_data(as_text=True)
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return page, found.group(1)


# -- the preference page ---------------------------------------------------------------------------


def test_the_preference_page_shows_the_wording_and_records_an_opt_in(client, db, tokens, message):
    url = path(tokens.preferences_url(message))
    page, csrf = form(client, url)
    assert defaults.CONSENT_WORDING["ja"] in page and defaults.CONSENT_WORDING_VERSION in page
    assert 'name="consent" value="yes">' in page  # not ticked: nothing recorded yet
    saved = client.post(
        url,
        data={
            "csrf": csrf,
            "category": ["marketing", "survey", "event"],
            "pause": "0",
            "consent": "yes",
            "wording": defaults.CONSENT_WORDING_VERSION,
        },
    )
    assert saved.status_code == 200 and "設定を保存しました" in saved.get_data(as_text=True)
    assert history(db) == [("granted", "opt_in", "preferences", defaults.CONSENT_WORDING_VERSION)]
    contact = the_contact(db)
    assert (contact.consent_basis, contact.consent_source, contact.consent_wording) == (
        "opt_in",
        "preferences",
        defaults.CONSENT_WORDING_VERSION,
    )
    assert contact.consent_at == NOW + timedelta(minutes=5)
    with db.session() as s:
        [record] = s.scalars(select(ConsentRecord))
        assert record.email_hash == consent.email_hash("Taro@Example.jp")
        assert record.detail == {"message_id": message, "locale": "ja"}
    again, _ = form(client, url)
    assert 'name="consent" value="yes" checked>' in again


def test_saving_again_records_nothing_and_clearing_the_box_withdraws(client, db, tokens, message):
    url = path(tokens.preferences_url(message))
    ticked = {"pause": "0", "consent": "yes", "wording": defaults.CONSENT_WORDING_VERSION}
    _, csrf = form(client, url)
    client.post(url, data={"csrf": csrf, "category": ["marketing"], **ticked})
    client.post(url, data={"csrf": csrf, "category": ["marketing"], **ticked})
    assert len(history(db)) == 1
    client.post(url, data={"csrf": csrf, "category": ["marketing"], "pause": "0"})
    assert [h[0] for h in history(db)] == ["granted", "withdrawn"]
    assert history(db)[1] == ("withdrawn", None, "preferences", None)
    assert the_contact(db).consent_basis is None


def test_unsubscribing_from_everything_on_the_page_withdraws(client, db, tokens, message):
    url = path(tokens.preferences_url(message))
    _, csrf = form(client, url)
    both = {"consent": "yes", "wording": defaults.CONSENT_WORDING_VERSION, "unsubscribe": "all"}
    client.post(url, data={"csrf": csrf, "pause": "0", **both})  # unsubscribing wins
    contact = the_contact(db)
    assert not contact.subscribed and contact.consent_basis is None
    assert history(db) == [("withdrawn", None, "preferences", None)]


def test_an_opt_in_from_a_page_with_other_words_is_refused(client, db, tokens, message):
    url = path(tokens.preferences_url(message))
    _, csrf = form(client, url)
    for wording in ("optin-2020-01", ""):
        old = client.post(
            url, data={"csrf": csrf, "pause": "0", "consent": "yes", "wording": wording}
        )
        assert old.status_code == 400
    forged = client.post(
        url,
        data={"csrf": "forged", "consent": "yes", "wording": defaults.CONSENT_WORDING_VERSION},
    )
    assert forged.status_code == 400
    assert history(db) == [] and the_contact(db).consent_basis is None


def test_english_contacts_read_the_english_wording(client, db, tokens, message):
    with db.session() as s, s.begin():
        s.scalars(select(Contact)).one().locale = "en"
    page, _ = form(client, path(tokens.preferences_url(message)))
    assert defaults.CONSENT_WORDING["en"] in page and "Your consent" in page


fields = st.dictionaries(
    st.sampled_from(["csrf", "consent", "wording", "unsubscribe", "pause", "category", "x"]),
    st.one_of(st.text(max_size=40), st.lists(st.text(max_size=10), max_size=3)),
    max_size=6,
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=fields, real_csrf=st.booleans())
def test_garbage_on_the_preference_form_is_a_4xx_and_records_no_consent(
    client, db, tokens, message, data, real_csrf
):
    url = path(tokens.preferences_url(message))
    if real_csrf:
        data = {**data, "csrf": form(client, url)[1]}
    wording_ok = data.get("wording") == defaults.CONSENT_WORDING_VERSION
    response = client.post(url, data=data)
    assert response.status_code < 500
    if response.status_code >= 400 or not (data.get("consent") == "yes" and wording_ok):
        with db.session() as s:
            granted = s.scalar(
                select(func.count())
                .select_from(ConsentRecord)
                .where(ConsentRecord.action == ConsentAction.GRANTED)
            )
        assert granted == 0


# -- unsubscribing ---------------------------------------------------------------------------------


def test_a_one_click_unsubscribe_records_a_withdrawal(client, db, tokens, message):
    with db.session() as s, s.begin():
        contact = s.scalars(select(Contact)).one()
        consent.record(s, contact, ConsentBasis.OPT_IN, at=NOW, source="import:crm.csv")
    response = client.post(
        path(tokens.unsubscribe_url(message)),
        data={"List-Unsubscribe": "One-Click"},
        headers={"User-Agent": "Google-Unsubscribe"},
    )
    assert response.status_code == 200
    assert history(db) == [
        ("granted", "opt_in", "import:crm.csv", None),
        ("withdrawn", None, "unsubscribe", None),
    ]
    with db.session() as s:
        withdrawal = s.scalars(select(ConsentRecord).order_by(ConsentRecord.id.desc())).first()
        assert withdrawal.detail == {"message_id": message, "one_click": True}
        assert withdrawal.at == NOW + timedelta(minutes=5)
    contact = the_contact(db)
    assert not contact.subscribed and contact.consent_basis is None
    # The same POST again (a mail client retrying) records nothing more.
    client.post(path(tokens.unsubscribe_url(message)), data={"List-Unsubscribe": "One-Click"})
    assert len(history(db)) == 2


def test_the_unsubscribe_page_records_a_withdrawal(client, db, tokens, message):
    url = path(tokens.unsubscribe_url(message))
    _, csrf = form(client, url)
    client.post(url, data={"csrf": csrf}, headers={"User-Agent": BROWSER})
    assert history(db) == [("withdrawn", None, "unsubscribe", None)]
    with db.session() as s:
        assert s.scalars(select(ConsentRecord)).one().detail["one_click"] is False


def test_a_complaint_withdraws_consent(db, message):
    with db.session() as s, s.begin():
        contact = s.scalars(select(Contact)).one()
        consent.record(s, contact, ConsentBasis.BUSINESS_RELATIONSHIP, at=NOW, source="crm")
    with db.session() as s, s.begin():
        notice = Notice(
            index=0,
            kind=EventKind.COMPLAINT,
            email="taro@example.jp",
            hard=False,
            message_ids=("<m1@example.com>",),
            diagnostic=None,
            source="webhook",
            key="complaint-1",
        )
        store_notices(s, [notice], NOW + timedelta(hours=1))
    assert history(db)[-1] == ("withdrawn", None, "complaint:webhook", None)
    assert the_contact(db).consent_basis is None


# -- the timeline ----------------------------------------------------------------------------------


def test_the_timeline_shows_grants_and_withdrawals_on_the_page_and_in_json(
    app, client, db, tokens, message
):
    url = path(tokens.preferences_url(message))
    _, csrf = form(client, url)
    client.post(
        url,
        data={
            "csrf": csrf,
            "pause": "0",
            "consent": "yes",
            "wording": defaults.CONSENT_WORDING_VERSION,
        },
    )
    _, unsub = form(client, path(tokens.unsubscribe_url(message)))
    client.post(path(tokens.unsubscribe_url(message)), data={"csrf": unsub})
    auth = {"Authorization": f"Bearer {KEY}"}
    timeline = client.get("/api/v1/contacts/taro@example.jp/timeline", headers=auth).get_json()
    entries = [e for e in timeline["entries"] if e["kind"] == "consent"]
    assert [e["title"] for e in entries] == [
        "Consent to marketing mail withdrawn",
        "Consent to marketing mail: opt_in",
    ]
    assert entries[1]["detail"] == f"source preferences, wording {defaults.CONSENT_WORDING_VERSION}"
    assert entries[0]["detail"] == "source unsubscribe"

    from campaigns.insight.timeline import account_timeline

    with db.session() as s:
        contact = s.scalars(select(Contact)).one()
        on_account = account_timeline(s, contact.account_id, {contact.id: "山田 太郎"})
    assert [(e.who, e.title) for e in on_account if e.kind == "consent"] == [
        ("山田 太郎", "Consent to marketing mail withdrawn"),
        ("山田 太郎", "Consent to marketing mail: opt_in"),
    ]


# -- the command line ------------------------------------------------------------------------------


def test_consent_set_and_show_through_the_cli_audited(cli, db, message):
    cli.env["DATABASE_URL"] = db.url
    result = cli("consent", "set", "taro@example.jp", "--basis", "opt_in")
    assert result.exit_code != 0 and "an opt-in needs --source" in str(result.exception)
    result = cli(
        "consent",
        "set",
        "Taro@example.jp",
        "--basis",
        "opt_in",
        "--source",
        "展示会 2026",
        "--wording",
        "form-v2",
        "--at",
        "2026-11-01",
    )
    assert result.exit_code == 0, result.output
    assert "consent of taro@example.jp: opt_in at 2026-11-01 00:00" in result.output
    shown = cli("consent", "show", "taro@example.jp")
    assert shown.exit_code == 0, shown.output
    assert "basis: opt_in" in shown.output and "rule: JP rule (opt_in)" in shown.output
    assert "marketing mail: may go" in shown.output and "展示会 2026" in shown.output
    cli.env["CONSENT_RULES"] = "JP=business_relationship"
    assert "not enough for marketing mail" in cli("consent", "show", "taro@example.jp").output
    withdrawn = cli("consent", "set", "taro@example.jp", "--basis", "none")
    assert withdrawn.exit_code == 0 and "withdrawn" in withdrawn.output
    with db.session() as s:
        actions = s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        targets = set(s.scalars(select(AuditEntry.target)))
        contact_id = s.scalar(select(Contact.id))
    assert actions == [AuditAction.CONSENT, AuditAction.CONSENT]
    assert targets == {str(contact_id)}  # the id, never the address
    assert [h[0] for h in history(db)] == ["granted", "withdrawn"]
    missing = cli("consent", "show", "nobody@example.jp")
    assert missing.exit_code != 0 and "no contact with the address" in str(missing.exception)


# -- retention -------------------------------------------------------------------------------------


def erase(db, email: str, *, sent: datetime | None, erased: datetime) -> None:
    """What erasure leaves (the people lane does the rest): the records detached under the
    hash with the last send, the hashed suppression, the contact and its messages gone."""
    with db.session() as s, s.begin():
        contact = Contact(email=email)
        s.add(contact)
        s.flush()
        consent.record(s, contact, ConsentBasis.OPT_IN, at=erased - timedelta(days=400))
        if sent is not None:
            s.add(
                Message(
                    contact_id=contact.id,
                    step_id="x",
                    status=MessageStatus.SENT,
                    sent_at=sent,
                    links=[],
                    to_address=email,
                )
            )
            s.flush()
        assert consent.last_sent_at(s, contact) == sent
        assert consent.detach(s, contact) == 1
        s.query(Message).filter(Message.contact_id == contact.id).delete()
        s.delete(contact)
        s.add(ErasedAddress(email_hash=consent.email_hash(email), erased_at=erased))


def test_the_purge_keeps_records_a_month_after_the_last_send_and_drops_older_ones(db, message):
    now = NOW
    erase(db, "old@example.jp", sent=now - timedelta(days=40), erased=now - timedelta(days=20))
    erase(db, "young@example.jp", sent=now - timedelta(days=20), erased=now - timedelta(days=19))
    erase(db, "never@example.jp", sent=None, erased=now - timedelta(days=35))
    erase(db, "fresh@example.jp", sent=None, erased=now - timedelta(days=2))
    with db.session() as s, s.begin():  # the live contact's records are never purged
        live = s.scalars(select(Contact)).one()
        consent.record(s, live, ConsentBasis.OPT_IN, at=now - timedelta(days=900))
    with db.session() as s, s.begin():
        stamps = {
            r.email_hash: r.detail.get(consent.LAST_SENT_AT)
            for r in s.scalars(select(ConsentRecord).where(ConsentRecord.contact_id.is_(None)))
        }
        assert stamps[consent.email_hash("old@example.jp")] == (
            (now - timedelta(days=40)).isoformat()
        )
        assert stamps[consent.email_hash("never@example.jp")] is None
        done = consent.purge(s, now, timedelta(days=31))
    assert (done.deleted, done.kept) == (2, 2)
    with db.session() as s:
        left = set(s.scalars(select(ConsentRecord.email_hash)))
    assert left == {
        consent.email_hash("young@example.jp"),
        consent.email_hash("fresh@example.jp"),
        consent.email_hash("taro@example.jp"),
    }
    with db.session() as s, s.begin():  # 12 days on, the young one's month is over too
        assert consent.purge(s, now + timedelta(days=12), timedelta(days=31)).deleted == 1


def test_campaigns_consent_purge_uses_the_retention_setting(cli, db, message):
    erase(db, "old@example.jp", sent=NOW - timedelta(days=40), erased=NOW - timedelta(days=20))
    cli.env["DATABASE_URL"] = db.url
    cli.env["CONSENT_RETENTION_DAYS"] = "3650"
    kept = cli("consent", "purge")
    assert kept.exit_code == 0 and "0 deleted, 1 of erased contacts kept" in kept.output
    cli.env["CONSENT_RETENTION_DAYS"] = "31"
    assert "1 deleted, 0 of erased contacts kept" in cli("consent", "purge").output


# -- the demo --------------------------------------------------------------------------------------


def test_the_demos_sample_contacts_opt_in_unless_they_unsubscribed(db, message):
    from campaigns.cli.demo_weeks import record_sample_consent

    with db.session() as s, s.begin():
        gone = Contact(email="gone@example.jp", subscribed=False)
        kept = Contact(email="kept@example.jp")
        s.add_all([gone, kept])
        without_consent(s, gone)  # kept keeps the kit's opt_in: nothing to record for it
    assert record_sample_consent(db.sessions, NOW) == 1  # taro, who has none
    with db.session() as s:
        bases = dict(s.execute(select(Contact.email, Contact.consent_basis)).all())
    assert bases == {
        "taro@example.jp": "opt_in",
        "gone@example.jp": None,
        "kept@example.jp": "opt_in",
    }
    assert history(db) == [
        ("granted", "opt_in", "demo:sign-up form", defaults.CONSENT_WORDING_VERSION)
    ]
