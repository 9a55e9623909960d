"""API upserts of accounts and contacts (``PUT /accounts/<id>``, ``PUT /contacts/<email>``,
``POST /accounts``, ``POST /contacts``) and account deletion, through the real app
on SQLite and PostgreSQL: the CSV importer's rules, partial updates, idempotence, all or
nothing (or ``?partial=true``), per-object errors by index; garbage gets 4xx, never 500, and
writes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.store.models import (
    Account,
    AuditEntry,
    ConsentRecord,
    Contact,
    Enrollment,
    Task,
    UsageMetric,
)

KEY = "people-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def client(build_app, db):
    return build_app(api_keys=(KEY,), api_key_roles={KEY: "marketer"}).test_client()


def account(db, external_id: str) -> Account | None:
    with db.session() as s:
        return s.scalar(select(Account).where(Account.external_id == external_id))


def contact(db, email: str) -> Contact | None:
    with db.session() as s:
        return s.scalar(select(Contact).where(Contact.email == email))


def counts(db) -> tuple[int, int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Account)) or 0,
            s.scalar(select(func.count()).select_from(Contact)) or 0,
            s.scalar(select(func.count()).select_from(ConsentRecord)) or 0,
        )


def test_put_account_creates_then_a_partial_update_keeps_the_fields_left_out(client, db):
    first = client.put(
        "/api/v1/accounts/ACME-1",
        json={
            "name": "株式会社アクメ",
            "arr": "¥5,000,000",
            "plan": "enterprise",
            "renewal_date": "2027-03-31",
            "company_size": 1200,
            "attributes": {"region": "関東", "crm_id": "0015g00000"},
        },
        headers=AUTH,
    )
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["status"] == "created"
    again = client.put(
        "/api/v1/accounts/ACME-1",
        json={"arr": 6000000, "attributes": {"region": "関西", "crm_id": None}},
        headers=AUTH,
    )
    assert again.status_code == 200, again.get_json()
    assert again.get_json() == {
        "index": 0,
        "status": "updated",
        "id": first.get_json()["id"],
        "external_id": "ACME-1",
    }
    stored = account(db, "ACME-1")
    assert stored is not None
    assert stored.name == "株式会社アクメ"
    assert stored.arr == Decimal("6000000")
    assert stored.plan == "enterprise"
    assert stored.renewal_date == date(2027, 3, 31)
    assert stored.company_size == 1200
    assert stored.currency == "JPY"
    assert stored.attributes == {"region": "関西"}


def test_null_clears_a_field_and_puts_a_default_back(client, db):
    client.put(
        "/api/v1/accounts/A", json={"name": "A社", "plan": "pro", "currency": "USD"}, headers=AUTH
    )
    cleared = client.put("/api/v1/accounts/A", json={"plan": None, "currency": None}, headers=AUTH)
    assert cleared.status_code == 200, cleared.get_json()
    stored = account(db, "A")
    assert stored is not None and stored.plan is None and stored.currency == "JPY"
    refused = client.put("/api/v1/accounts/A", json={"name": None}, headers=AUTH)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["items"][0]["field"] == "name"


def test_the_same_body_twice_is_the_same_state_and_the_second_time_unchanged(client, db):
    client.put("/api/v1/accounts/ACME-1", json={"name": "株式会社アクメ"}, headers=AUTH)
    body = {
        "name": "山田 太郎",
        "account_external_id": "ACME-1",
        "locale": "ja",
        "time_zone": "Asia/Tokyo",
        "tags": ["決裁者", "vip"],
        "country": "jp",
        "consent": {
            "basis": "opt_in",
            "source": "webform:資料請求",
            "at": "2026-11-01T10:00:00+09:00",
            "wording": "v3",
        },
    }
    first = client.put("/api/v1/contacts/Taro.Yamada@Example.jp", json=body, headers=AUTH)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["email"] == "taro.yamada@example.jp"
    before = contact(db, "taro.yamada@example.jp")
    second = client.put("/api/v1/contacts/taro.yamada@example.jp", json=body, headers=AUTH)
    assert second.status_code == 200
    assert second.get_json()["status"] == "unchanged"
    after = contact(db, "taro.yamada@example.jp")
    assert before is not None and after is not None
    columns = [c.key for c in Contact.__table__.columns]
    assert {k: getattr(before, k) for k in columns} == {k: getattr(after, k) for k in columns}
    assert after.country == "JP" and after.tags == ["決裁者", "vip"]
    assert after.consent_basis == "opt_in" and after.consent_wording == "v3"
    assert after.consent_at == datetime(2026, 11, 1, 1, 0, tzinfo=UTC)
    assert counts(db) == (1, 1, 1)
    with db.session() as s:
        record = s.scalars(select(ConsentRecord)).one()
        assert record.actor == "api:marketer" and record.source == "webform:資料請求"


def test_consent_null_withdraws_it_once(client, db):
    client.put(
        "/api/v1/contacts/a@example.com",
        json={"consent": {"basis": "business_relationship"}},
        headers=AUTH,
    )
    for _ in range(2):
        gone = client.put("/api/v1/contacts/a@example.com", json={"consent": None}, headers=AUTH)
        assert gone.status_code == 200, gone.get_json()
    stored = contact(db, "a@example.com")
    assert stored is not None and stored.consent_basis is None
    with db.session() as s:
        actions = s.scalars(select(ConsentRecord.action).order_by(ConsentRecord.id)).all()
    assert actions == ["granted", "withdrawn"]


def test_consent_goes_only_as_its_object_never_as_loose_fields(client, db):
    for field in ("consent_basis", "consent_source", "consent_at", "consent_wording"):
        response = client.put(
            "/api/v1/contacts/a@example.com", json={field: "opt_in"}, headers=AUTH
        )
        assert response.status_code == 422, response.get_json()
        assert "consent:" in response.get_data(as_text=True)
    assert contact(db, "a@example.com") is None
    with db.session() as s:
        assert s.scalars(select(ConsentRecord)).first() is None


def test_batch_upserts_accounts_and_contacts_and_counts_them(client, db):
    accounts = client.post(
        "/api/v1/accounts",
        json={
            "accounts": [
                {"external_id": "さくら", "name": "株式会社さくら", "arr": 1200000},
                {"external_id": "B-2", "name": "B社", "currency": "usd", "arr": "$12,000"},
            ]
        },
        headers=AUTH,
    )
    assert accounts.status_code == 200, accounts.get_json()
    assert accounts.get_json()["created"] == 2
    contacts = client.post(
        "/api/v1/contacts",
        json={
            "contacts": [
                {
                    "email": f"user{i}@example.jp",
                    "name": f"佐藤 花子{i}",
                    "account_external_id": "さくら",
                }
                for i in range(50)
            ]
        },
        headers=AUTH,
    )
    body = contacts.get_json()
    assert contacts.status_code == 200, body
    assert (body["created"], body["updated"], body["failed"]) == (50, 0, 0)
    assert [r["index"] for r in body["results"]] == list(range(50))
    moved = client.post(
        "/api/v1/contacts",
        json={
            "contacts": [
                {"email": "user0@example.jp", "account_external_id": "B-2"},
                {"email": "user1@example.jp", "account_external_id": None},
            ]
        },
        headers=AUTH,
    )
    assert moved.get_json()["updated"] == 2
    b2, u0, u1 = (
        account(db, "B-2"),
        contact(db, "user0@example.jp"),
        contact(db, "user1@example.jp"),
    )
    assert b2 and u0 and u1
    assert u0.account_id == b2.id and u1.account_id is None and u0.name == "佐藤 花子0"


def test_a_bad_object_refuses_the_whole_batch_with_each_problem_by_index(client, db):
    client.put(
        "/api/v1/accounts/OLD", json={"name": "旧社", "contract_start": "2026-04-01"}, headers=AUTH
    )
    response = client.post(
        "/api/v1/accounts",
        json={
            "accounts": [
                {"external_id": "OK-1", "name": "良い会社"},
                {"external_id": "BAD-1", "name": "X", "renewal_date": "2027-13-01"},
                {"external_id": "NEW", "arr": 5},
                {"external_id": "OLD", "renewal_date": "2026-01-01"},
                {"external_id": "Y", "name": "Y", "arr": "¥5,000", "currency": "USD"},
                {"external_id": "T", "name": "T", "tier": "gold"},
                "not an object",
            ]
        },
        headers=AUTH,
    )
    assert response.status_code == 422, response.get_json()
    items = response.get_json()["error"]["items"]
    by_index = {i["index"]: i for i in items}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6]
    assert by_index[1]["field"] == "accounts[1].renewal_date"
    assert "use YYYY-MM-DD" in by_index[1]["message"]
    assert by_index[2]["field"] == "accounts[2].name"
    assert "before contract_start" in by_index[3]["message"]  # checked with the stored start
    assert "currency is USD" in by_index[4]["message"]
    assert "segments" in by_index[5]["message"]
    assert account(db, "OK-1") is None  # nothing written
    assert counts(db)[0] == 1


def test_partial_true_writes_the_good_objects_and_reports_the_bad(client, db):
    response = client.post(
        "/api/v1/contacts?partial=true",
        json={
            "contacts": [
                {"email": "good@example.com", "name": "良"},
                {"email": "ｂａｄ@example.com"},
                {"email": "x@example.com", "account_external_id": "NOPE"},
                {"email": "tz@example.com", "time_zone": "JST"},
                {"email": "late@example.com", "locale": "ja-JP"},
            ]
        },
        headers=AUTH,
    )
    body = response.get_json()
    assert response.status_code == 200, body
    assert (body["created"], body["failed"]) == (2, 3)
    assert [e["index"] for e in body["errors"]] == [1, 3, 2]
    assert "full-width" in body["errors"][0]["message"]
    assert "Asia/Tokyo" in body["errors"][1]["message"]
    assert "no account" in body["errors"][2]["message"]
    late = contact(db, "late@example.com")
    assert late is not None and late.locale == "ja-JP"
    assert contact(db, "x@example.com") is None


def test_a_repeated_key_in_one_batch_applies_in_order(client, db):
    response = client.post(
        "/api/v1/accounts",
        json={"accounts": [{"external_id": "R", "name": "一"}, {"external_id": "R", "plan": "p"}]},
        headers=AUTH,
    )
    assert [r["status"] for r in response.get_json()["results"]] == ["created", "updated"]
    stored = account(db, "R")
    assert stored is not None and (stored.name, stored.plan) == ("一", "p")


def test_more_than_a_thousand_objects_is_413_and_a_viewer_key_is_refused(build_app, db):
    app = build_app(api_keys=(KEY, "viewer-key"), api_key_roles={"viewer-key": "viewer"})
    client = app.test_client()
    many = client.post(
        "/api/v1/contacts",
        json={"contacts": [{"email": f"u{i}@e.jp"} for i in range(1001)]},
        headers=AUTH,
    )
    assert many.status_code == 413
    viewer = client.put(
        "/api/v1/accounts/A", json={"name": "A"}, headers={"Authorization": "Bearer viewer-key"}
    )
    assert viewer.status_code == 403
    assert counts(db) == (0, 0, 0)


def test_the_url_key_and_the_body_key_must_agree(client, db):
    response = client.put(
        "/api/v1/contacts/a@example.com", json={"email": "b@example.com"}, headers=AUTH
    )
    assert response.status_code == 422
    assert client.put("/api/v1/contacts/not-an-address", json={}, headers=AUTH).status_code == 422
    assert counts(db) == (0, 0, 0)


def test_deleting_an_account_with_contacts_needs_a_choice(client, db):
    client.put("/api/v1/accounts/ACME", json={"name": "アクメ"}, headers=AUTH)
    client.put(
        "/api/v1/contacts/a@acme.jp",
        json={"name": "山田", "account_external_id": "ACME"},
        headers=AUTH,
    )
    acme = account(db, "ACME")
    assert acme is not None
    with db.session() as s, s.begin():
        s.add(UsageMetric(account_id=acme.id, metric="logins", day=date(2026, 11, 29), value=3))
        s.add(Task(account_id=acme.id, title="電話", owner_email="csm@example.com"))
        s.add(Enrollment(journey_id=1, journey_version_id=1, account_id=acme.id, state="active"))
    refused = client.delete("/api/v1/accounts/ACME", headers=AUTH)
    assert refused.status_code == 409
    assert "contacts=detach" in refused.get_json()["error"]["message"]
    done = client.delete("/api/v1/accounts/ACME?contacts=detach", headers=AUTH)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["contacts"] == 1
    assert account(db, "ACME") is None
    kept = contact(db, "a@acme.jp")
    assert kept is not None and kept.account_id is None and kept.name == "山田"
    with db.session() as s:
        assert s.scalars(select(Task.account_id)).one() is None
        assert s.scalars(select(Enrollment.state)).one() == "exited"
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "delete")).one()
        assert (entry.actor, entry.target) == ("api:marketer", "ACME")
    assert client.delete("/api/v1/accounts/ACME", headers=AUTH).status_code == 404


def test_deleting_an_account_can_erase_its_contacts(client, db):
    client.put("/api/v1/accounts/Z", json={"name": "Z社"}, headers=AUTH)
    client.put("/api/v1/contacts/z@z.jp", json={"account_external_id": "Z"}, headers=AUTH)
    done = client.delete("/api/v1/accounts/Z?contacts=erase", headers=AUTH)
    assert done.status_code == 200, done.get_json()
    assert contact(db, "z@z.jp") is None
    assert client.delete("/api/v1/accounts/Z?contacts=all", headers=AUTH).status_code == 400


# ---------------------------------------------------------------------------- garbage

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_field = st.sampled_from(
    [
        "external_id",
        "name",
        "arr",
        "ltv",
        "currency",
        "plan",
        "contract_status",
        "contract_start",
        "renewal_date",
        "company_size",
        "owner_email",
        "health_score",
        "email",
        "account_external_id",
        "locale",
        "time_zone",
        "subscribed",
        "tags",
        "attributes",
        "consent",
        "country",
        "role",
        "title",
        "tier",
    ]
)
_object = st.dictionaries(_field, _json, max_size=6) | _json


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["accounts", "contacts"]),
    items=st.lists(_object, min_size=1, max_size=4),
    raw=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_garbage_gets_4xx_never_500_and_a_refused_batch_writes_nothing(
    client, db, kind, items, raw
):
    before = counts(db)
    if raw is not None:
        response = client.post(
            f"/api/v1/{kind}", data=raw, headers={**AUTH, "Content-Type": "application/json"}
        )
    else:
        response = client.post(f"/api/v1/{kind}", json={kind: items}, headers=AUTH)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert counts(db) == before
        assert set(response.get_json()) == {"error"}
    single = client.put(
        "/api/v1/contacts/g@example.com" if kind == "contacts" else "/api/v1/accounts/G",
        json=items[0],
        headers=AUTH,
    )
    assert single.status_code < 500, single.get_data(as_text=True)
