"""``POST /api/v1/usage``: daily product usage per account, upserted by (account, metric, day)
on SQLite and PostgreSQL; all or nothing, every problem named by index and field; garbage
gets 4xx, never 500, and writes nothing (property tests through the real app)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.store.models import Account, UsageMetric

KEY = "usage-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def client(build_app, db):
    with db.session() as s, s.begin():
        s.add_all(
            [
                Account(external_id="ACME-1", name="株式会社アクメ"),
                Account(external_id="さくら", name="株式会社さくら"),
            ]
        )
    return build_app(api_keys=(KEY,)).test_client()


def rows(db) -> dict[tuple[str, str, date], float]:
    with db.session() as s:
        return {
            (external_id, metric, day): value
            for external_id, metric, day, value in s.execute(
                select(
                    Account.external_id, UsageMetric.metric, UsageMetric.day, UsageMetric.value
                ).join(Account, Account.id == UsageMetric.account_id)
            )
        }


def test_usage_is_stored_per_account_metric_and_day_and_a_day_posted_again_replaces_it(client, db):
    first = client.post(
        "/api/v1/usage",
        json={
            "usage": [
                {
                    "account": "ACME-1",
                    "day": "2026-11-29",
                    "metrics": {"active_users": 12, "logins": 40, "key_feature": 3},
                },
                {"account": "さくら", "day": "2026-11-30", "metrics": {"logins": 7.5}},
            ]
        },
        headers=AUTH,
    )
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"rows": 2, "values": 4}
    again = client.post(
        "/api/v1/usage",
        json={
            "usage": [
                {"account": "ACME-1", "day": "2026-11-29", "metrics": {"logins": 41}},
                {"account": "ACME-1", "day": "2026-11-29", "metrics": {"logins": 42}},
            ]
        },
        headers=AUTH,
    )
    assert again.status_code == 200, again.get_json()
    assert rows(db) == {
        ("ACME-1", "active_users", date(2026, 11, 29)): 12.0,
        ("ACME-1", "logins", date(2026, 11, 29)): 42.0,  # the later of the two in one request
        ("ACME-1", "key_feature", date(2026, 11, 29)): 3.0,
        ("さくら", "logins", date(2026, 11, 30)): 7.5,
    }


def test_a_bad_row_stores_nothing_and_every_problem_names_its_index_and_field(client, db):
    response = client.post(
        "/api/v1/usage",
        json={
            "usage": [
                {"account": "ACME-1", "day": "2026-11-29", "metrics": {"logins": 1}},
                {"account": "NOPE", "day": "2026-11-29", "metrics": {"logins": 1}},
                {"account": "ACME-1", "day": "2026-12-02", "metrics": {"logins": 1}},
                {"account": "ACME-1", "day": "29/11/2026", "metrics": {"Logins": -1}},
                {"account": "ACME-1", "day": "2026-11-29", "metrics": {"logins": -1}},
                {"account": "ACME-1", "metrics": {}, "extra": 1},
            ]
        },
        headers=AUTH,
    )
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["message"].startswith("5 of 6 rows invalid; nothing was stored")
    problems = {(p["index"], p["field"]) for p in error["items"]}
    assert problems == {
        (1, "usage[1].account"),
        (2, "usage[2].day"),
        (3, "usage[3].day"),
        (3, "usage[3].metrics.Logins"),
        (4, "usage[4].metrics.logins"),
        (5, "usage[5].extra"),
        (5, "usage[5].day"),
        (5, "usage[5].metrics"),
    }
    assert rows(db) == {}


def test_tomorrow_is_taken_but_not_the_day_after(client, db):
    ok = client.post(
        "/api/v1/usage",
        json={"usage": [{"account": "ACME-1", "day": "2026-12-01", "metrics": {"logins": 1}}]},
        headers=AUTH,
    )
    assert ok.status_code == 200
    late = client.post(
        "/api/v1/usage",
        json={"usage": [{"account": "ACME-1", "day": "2026-12-02", "metrics": {"logins": 1}}]},
        headers=AUTH,
    )
    assert late.status_code == 422
    assert "more than a day ahead" in late.get_json()["error"]["items"][0]["message"]


@pytest.mark.parametrize(
    "body, status",
    [
        ([], 400),
        ({"usage": []}, 400),
        ({"usage": {}}, 400),
        ({"rows": []}, 400),
        ({"usage": [{}] * 1001}, 400),
        ({"usage": [1]}, 422),
    ],
)
def test_the_shape_is_checked_before_anything(client, db, body, status):
    assert client.post("/api/v1/usage", json=body, headers=AUTH).status_code == status
    assert rows(db) == {}


def test_usage_needs_an_api_key(client):
    assert client.post("/api/v1/usage", json={"usage": []}).status_code == 401


def test_1000_rows_go_in_one_request(client, db):
    usage = [
        {
            "account": "ACME-1",
            "day": f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}",
            "metrics": {"logins": i, "active_users": i % 7},
        }
        for i in range(300)
    ] + [
        {
            "account": "さくら",
            "day": f"2025-{1 + i // 28:02d}-{1 + i % 28:02d}",
            "metrics": {"logins": i},
        }
        for i in range(300)
    ] * 1
    response = client.post("/api/v1/usage", json={"usage": usage[:1000]}, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(UsageMetric)) == 900


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_row = st.fixed_dictionaries(
    {},
    optional={
        "account": st.sampled_from(["ACME-1", "さくら", "", "NOPE"]) | _json,
        "day": st.sampled_from(["2026-11-29", "2026-13-01", "2026-12-05", "0001-01-01"]) | _json,
        "metrics": st.dictionaries(
            st.sampled_from(["logins", "Logins", "a" * 65, "9x", "key_feature"])
            | st.text(max_size=6),
            st.integers(-5, 10**20) | st.floats() | _json,
            max_size=4,
        )
        | _json,
        "extra": _json,
    },
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.fixed_dictionaries({"usage": st.lists(_row | _json, min_size=1, max_size=4)}) | _json
)
def test_garbage_gets_4xx_never_500_and_writes_nothing_unless_all_of_it_is_valid(client, db, body):
    with db.session() as s, s.begin():
        s.query(UsageMetric).delete()
    response = client.post("/api/v1/usage", json=body, headers=AUTH)
    assert response.status_code in (200, 400, 422), (response.status_code, response.get_data())
    if response.status_code != 200:
        assert rows(db) == {}
        assert set(response.get_json()) == {"error"}
    else:
        assert len(rows(db)) == response.get_json()["values"] > 0
