"""The account page, "My accounts" and the Health overview, on SQLite and PostgreSQL: the
dashboard through Flask's test client (signed in), the API's JSON of the same data, and the
data module itself (health history, what changed, bounded lists, sorting across currencies);
unknown accounts are 404s and bad parameters 4xx, never 500."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.clock import FakeClock
from campaigns.currency import parse as parse_currencies
from campaigns.insight.accounts import (
    HealthDay,
    Measure,
    account_page,
    find_account,
    read_measures,
    thresholds,
    what_changed,
)
from campaigns.insight.portfolio import health_overview, list_accounts
from campaigns.store.models import Account, HealthScore
from campaigns.store.users import add_user
from campaigns.web.charts import Layer, band_bars, band_moves, health_trend
from tests.accounts_kit import health_rows, seed_account

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
TODAY = NOW.date()
OWNER = "hanako@example.com"
PASSWORD = "correct horse battery"
KEY = "accounts-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
CURRENCIES = parse_currencies("JPY", "USD=150")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def seeded(db):
    with db.session() as s, s.begin():
        add_user(s, OWNER, PASSWORD, NOW, name="佐藤 花子", role="csm")
        main = seed_account(s, NOW)
        # Others' and mine, for the list: health, renewal and ARR (two currencies) all differ.
        for i, (owner, score, band, arr, currency, renewal) in enumerate(
            [
                (OWNER, 81, "green", Decimal(2_000_000), "JPY", 200),
                (OWNER, 55, "yellow", Decimal(30_000), "USD", 10),  # 4,500,000 JPY
                (OWNER, None, None, None, "JPY", None),
                ("kenji@example.com", 12, "red", Decimal(9_000_000), "JPY", 5),
            ]
        ):
            s.add(
                Account(
                    external_id=f"A{i}",
                    name=f"取引先{i}",
                    owner_email=owner,
                    health_score=score,
                    health_band=band,
                    arr=arr,
                    currency=currency,
                    tier="low_touch" if i % 2 else "high_touch",
                    renewal_date=TODAY + timedelta(days=renewal) if renewal is not None else None,
                )
            )
    return main


@pytest.fixture
def app(build_app, seeded):
    return build_app(api_keys=(KEY,), currencies=CURRENCIES)


def csrf_of(client, path: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


@pytest.fixture
def client(app):
    client = app.test_client()
    response = client.post(
        "/login", data={"csrf": csrf_of(client, "/login"), "email": OWNER, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


def names_in_order(html: str) -> list[str]:
    return re.findall(
        r'<tr data-account-id="\d+"[^>]*>\s*<td><a href="/accounts/\d+">([^<]+)</a>', html
    )


# ---------------------------------------------------------------------------- the data


def test_the_page_gathers_facts_health_contacts_journeys_tasks_answers_and_timeline(db, seeded):
    with db.session() as s:
        account = find_account(s, external_id="SAKURA")
        assert account is not None
        view = account_page(s, account, NOW, locale="ja")
    facts = view.facts
    assert (facts.name, facts.arr, facts.currency) == (
        "株式会社さくら製作所",
        Decimal(3_600_000),
        "JPY",
    )
    assert facts.days_to_renewal == 45
    assert [h.day for h in view.history] == [TODAY - timedelta(days=d) for d in range(59, -1, -1)]
    assert view.history[-1].band == "red" and view.history[0].band == "green"
    usage = next(m for m in view.history[-1].measures if m.name == "usage")
    assert usage.label == "製品の利用"  # in the reader's language
    # Usage fell from 100 to 20 points of score (x 0.5 weight = 40 points of contribution).
    assert [(c.name, round(c.delta, 1)) for c in view.changes] == [("usage", -40.0)]
    assert [c.name for c in view.contacts] == ["山田 太郎", "佐藤 花"]
    taro = view.contacts[0]
    assert (taro.role, taro.title, taro.persona) == ("admin", "情報システム部 部長", "executive")
    assert (taro.sent, taro.opened, taro.clicked) == (1, 1, 1)
    assert taro.last_touch == NOW - timedelta(days=20, hours=19)  # the answer; not the machine
    assert [(j.key, j.contact, j.running) for j in view.journeys] == [
        ("renewal_90", None, True),
        ("renewal_90", "佐藤 花", False),
    ]
    assert [t.title for t in view.open_tasks] == ["Call 山田 太郎: NPS 3"]
    assert view.open_tasks[0].escalated_to == "manager@example.com"
    assert [t.outcome for t in view.done_tasks] == ["資料を共有済み"]
    assert [(a.value, a.nps, a.contact) for a in view.answers] == [("3", "detractor", "山田 太郎")]
    kinds = [e.kind for e in view.timeline]
    assert "event" in kinds and "message" in kinds and "answer" in kinds and "task" in kinds
    band_change = next(e for e in view.timeline if e.title.endswith("health_band_changed"))
    assert band_change.who == "the account"
    assert next(e for e in view.timeline if e.kind == "answer").who == "山田 太郎"


def test_the_page_keeps_personas_given_by_the_persona_rules_over_the_mails(db, seeded):
    with db.session() as s:
        account = find_account(s, id=seeded.account_id)
        assert account is not None
        view = account_page(
            s,
            account,
            NOW,
            personas=lambda people: {
                seeded.contacts["hana"]: "end_user",
                seeded.contacts["taro"]: None,
            },
        )
    assert [c.persona for c in view.contacts] == ["executive", "end_user"]


def test_measures_json_is_read_defensively():
    raw = {
        "usage": {"value": 3, "score": 40, "weight": 0.5, "contribution": 20, "label": "Usage"},
        "odd": {"value": "x", "score": None, "weight": True, "contribution": float("nan")},
        "bad": "not an object",
        7: {"score": 1},
    }
    assert read_measures(raw) == (
        Measure("usage", "Usage", 3.0, 40.0, 0.5, 20.0),
        Measure("odd", "odd", None, None, None, None),
    )
    assert read_measures(None) == () and read_measures([1, 2]) == ()


def test_what_changed_compares_with_the_day_30_days_before_the_latest():
    def day(n: int, usage: float, nps: float) -> HealthDay:
        return HealthDay(
            TODAY - timedelta(days=n),
            usage + nps,
            None,
            "default",
            (
                Measure("usage", "Usage", None, None, 0.5, usage),
                Measure("nps", "NPS", None, None, 0.5, nps),
            ),
        )

    history = [day(40, 10, 10), day(30, 40, 20), day(10, 30, 25), day(0, 15, 28)]
    changes = what_changed(history)
    assert [(c.name, c.before, c.now) for c in changes] == [("usage", 40, 15), ("nps", 20, 28)]
    assert what_changed(history[-1:]) == []


def test_band_thresholds_come_from_the_scores_when_they_are_consistent():
    days = [
        HealthDay(TODAY, s, b, "x", ()) for s, b in [(35, "red"), (45, "yellow"), (72, "green")]
    ]
    assert thresholds(days) == (("yellow", 45.0), ("green", 72.0))
    assert thresholds([]) == (("yellow", 40.0), ("green", 70.0))
    # The scorecard's own bands win over what the history suggests.
    card = {days[-1].scorecard: {"yellow": 50.0, "green": 80.0}}
    assert thresholds(days, card) == (("yellow", 50.0), ("green", 80.0))
    assert thresholds(days, {"another card": {"yellow": 1.0, "green": 2.0}}) == thresholds(days)


def test_my_accounts_sort_by_health_renewal_and_arr_in_the_base_currency(db, seeded):
    with db.session() as s:

        def order(sort: str, direction: str = "asc", owner: str | None = OWNER) -> list[str]:
            rows, _ = list_accounts(
                s, TODAY, CURRENCIES, owner=owner, sort=sort, direction=direction
            )  # type: ignore[arg-type]
            return [r.name for r in rows]

        assert order("health") == ["株式会社さくら製作所", "取引先1", "取引先0", "取引先2"]
        assert order("health", "desc") == ["取引先0", "取引先1", "株式会社さくら製作所", "取引先2"]
        assert order("renewal") == ["取引先1", "株式会社さくら製作所", "取引先0", "取引先2"]
        # 30,000 USD is 4,500,000 JPY: more than 3,600,000 JPY.
        assert order("arr", "desc") == ["取引先1", "株式会社さくら製作所", "取引先0", "取引先2"]
        assert order("health", owner=None)[0] == "取引先3"
        rows, total = list_accounts(s, TODAY, CURRENCIES, owner=OWNER, band="yellow")
        assert total == 1 and rows[0].name == "取引先1"
        rows, total = list_accounts(s, TODAY, CURRENCIES, owner=OWNER, limit=2, offset=2)
        assert total == 4 and [r.name for r in rows] == ["取引先0", "取引先2"]


def test_the_overview_counts_bands_per_tier_and_moves_since_the_first_of_the_month(db, seeded):
    with db.session() as s, s.begin():
        # 取引先3 was green on November 1st and is red now.
        other = find_account(s, external_id="A3")
        assert other is not None
        s.add(
            HealthScore(
                account_id=other.id, day=date(2026, 11, 1), scorecard="x", score=80, band="green"
            )
        )
    with db.session() as s:
        overview = health_overview(s, TODAY)
    assert overview.by_tier == {
        "high_touch": {"red": 1, "green": 1, "none": 1},
        "low_touch": {"yellow": 1, "red": 1},
    }
    assert overview.since == date(2026, 11, 1)
    # さくら: yellow on the 1st (its usage was falling already), red now.
    assert overview.moves == {("green", "red"): 1, ("yellow", "red"): 1}


# ---------------------------------------------------------------------------- the dashboard


def test_the_account_page_shows_everything_with_arr_in_its_currency(client, seeded):
    page = client.get(f"/accounts/{seeded.account_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "株式会社さくら製作所" in html
    assert "¥3,600,000" in html  # the reader is English here
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="health-trend"' in html
    assert html.count('class="layer"') == 3 and html.count('class="threshold"') == 2
    assert "What changed in 30 days" in html and "Product usage: -40.0 points" in html
    # The persona by the segments' rules (role admin), not the one the last mail was sent for.
    assert "情報システム部 部長" in html and ">admin<" in html and ">executive<" not in html
    assert "Call 山田 太郎: NPS 3" in html and "escalated to manager@example.com" in html
    assert "detractor" in html
    assert 'data-kind="event"' in html and "health_band_changed" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_the_page_speaks_japanese_to_a_japanese_user(client, db, seeded):
    from campaigns.store.models import User

    with db.session() as s, s.begin():
        s.query(User).filter_by(email=OWNER).update({"locale": "ja"})
    html = client.get(f"/accounts/{seeded.account_id}").get_data(as_text=True)
    assert "3,600,000円" in html
    assert "2027年1月8日（金）" in html  # the renewal, 45 days on
    assert "45日" in html


def test_an_unknown_account_is_a_404(client):
    assert client.get("/accounts/999999").status_code == 404
    assert client.get("/accounts/abc").status_code == 404


def test_my_accounts_lists_mine_sorted_by_health_and_the_header_flips_the_order(client):
    html = client.get("/accounts").get_data(as_text=True)
    assert names_in_order(html) == ["株式会社さくら製作所", "取引先1", "取引先0", "取引先2"]
    assert "取引先3" not in html  # someone else's
    link = re.search(r'data-sort="health"[^>]*><a href="([^"]+)"', html)
    assert link
    flipped = client.get(link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert names_in_order(flipped) == ["取引先0", "取引先1", "株式会社さくら製作所", "取引先2"]
    everyone = client.get("/accounts?owner=all&sort=arr&order=desc").get_data(as_text=True)
    assert names_in_order(everyone)[0] == "取引先3"
    assert names_in_order(client.get("/accounts?tier=low_touch").get_data(as_text=True)) == [
        "取引先1"
    ]
    assert names_in_order(client.get("/accounts?band=none").get_data(as_text=True)) == ["取引先2"]


@pytest.mark.parametrize(
    "query",
    [
        "sort=size",
        "order=up",
        "band=blue",
        "owner=bob",
        "page=0",
        "page=x",
        "page=²",
        "tier=" + "x" * 65,
    ],
)
def test_bad_list_parameters_are_400s(client, query):
    assert client.get(f"/accounts?{query}").status_code == 400


def test_the_health_page_draws_bands_per_tier_and_the_month_s_moves(client):
    html = client.get("/health").get_data(as_text=True)
    assert 'id="bands-by-tier"' in html and 'id="band-moves"' in html
    assert 'class="part red"' in html and 'data-from="yellow" data-to="red"' in html
    assert client.get("/health?owner=x").status_code == 400


def test_the_contact_page_and_the_inbox_link_the_account(client, seeded):
    contact = client.get(f"/contacts/{seeded.contacts['taro']}").get_data(as_text=True)
    assert f'href="/accounts/{seeded.account_id}"' in contact
    inbox = client.get("/tasks").get_data(as_text=True)
    assert f'href="/accounts/{seeded.account_id}"' in inbox


def test_the_pages_need_a_sign_in(app, seeded):
    anonymous = app.test_client()
    for path in ("/accounts", f"/accounts/{seeded.account_id}", "/health"):
        assert anonymous.get(path).status_code == 302


# ---------------------------------------------------------------------------- the API


def test_the_api_gives_the_account_page_as_json(app, seeded):
    api = app.test_client()
    body = api.get("/api/v1/accounts/SAKURA", headers=AUTH).get_json()
    assert body["name"] == "株式会社さくら製作所" and body["arr"] == "3600000.00"
    assert body["days_to_renewal"] == 45
    assert body["health"]["band"] == "red" and len(body["health"]["history"]) == 60
    assert body["health"]["changes"][0]["measure"] == "usage"
    assert body["health"]["history"][0]["measures"]["usage"]["contribution"] == 50.0
    assert [c["persona"] for c in body["contacts"]] == ["admin", "end_user"]  # by the persona rules
    assert len(body["journeys"]["running"]) == 1 and len(body["journeys"]["done"]) == 1
    assert body["tasks"]["open"][0]["priority"] == "high"
    assert body["answers"][0]["nps"] == "detractor"
    assert any(e.get("who") == "the account" for e in body["timeline"])
    assert api.get("/api/v1/accounts/NOPE", headers=AUTH).status_code == 404
    assert api.get("/api/v1/accounts/SAKURA?x=1", headers=AUTH).status_code == 400
    assert api.get("/api/v1/accounts/SAKURA").status_code == 401


def test_the_api_lists_accounts_with_owner_sort_and_paging(app):
    api = app.test_client()
    body = api.get(
        f"/api/v1/accounts?owner={OWNER}&sort=arr&order=desc&limit=2", headers=AUTH
    ).get_json()
    assert body["total"] == 4
    assert [a["external_id"] for a in body["accounts"]] == ["A1", "SAKURA"]
    assert body["accounts"][0]["currency"] == "USD" and body["accounts"][0]["arr"] == "30000.00"
    for bad in ("sort=size", "order=up", "limit=0", "limit=501", "band=blue", "owner=x", "q=1"):
        response = api.get(f"/api/v1/accounts?{bad}", headers=AUTH)
        assert response.status_code == 400, bad
        assert set(response.get_json()) == {"error"}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    params=st.dictionaries(
        st.sampled_from(["owner", "sort", "order", "tier", "band", "limit", "offset", "page"]),
        st.text(max_size=12) | st.sampled_from(["health", "arr", "desc", "me", "all", "red", "5"]),
        max_size=4,
    )
)
def test_no_parameters_make_the_lists_fail(client, app, params):
    from urllib.parse import urlencode

    query = urlencode(params)
    assert client.get(f"/accounts?{query}").status_code in (200, 400)
    assert client.get(f"/health?{query}").status_code in (200, 400)
    api = app.test_client().get(f"/api/v1/accounts?{query}", headers=AUTH)
    assert api.status_code in (200, 400)


# ---------------------------------------------------------------------------- the charts


def test_the_health_chart_is_accessible_and_escapes_what_it_names():
    rows = health_rows(1, TODAY, 10)
    chart = str(
        health_trend(
            [r.day.isoformat() for r in rows],
            [r.score for r in rows],
            [Layer("<script>", tuple(r.measures["usage"]["contribution"] for r in rows))],
            (("yellow", 40.0), ("green", 70.0)),
        )
    )
    assert '<title id="health-trend-title">' in chart and "<desc" in chart
    assert "&lt;script&gt;" in chart and "<script>" not in chart
    assert chart.count('class="point"') == 10
    assert 'class="latest"' in chart
    empty = str(health_trend([], [], [], ()))
    assert "No health scores yet." in empty


def test_the_band_charts_write_their_numbers_beside_the_shapes():
    bars = str(band_bars([("high_touch", {"red": 3, "green": 12}), ("", {"none": 1})]))
    assert 'class="part red"' in bars and ">12<" in bars and "no tier" in bars
    moves = str(band_moves({("green", "red"): 2, ("red", "red"): 5}, since="2026-11-01"))
    assert moves.count('class="cell"') == 9
    assert "0 moved up, 2 moved down, 5 stayed" in moves


# ---------------------------------------------------------------------------- the CLI


def test_campaigns_account_prints_the_page_and_its_json(cli, db):
    now = datetime.now(UTC)
    with db.session() as s, s.begin():
        seed_account(s, now)
    cli.env["DATABASE_URL"] = db.url
    result = cli("account", "SAKURA", "--locale", "ja")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("株式会社さくら製作所 (SAKURA)")
    assert "3,600,000円" in out and "45日" in out
    assert "Health over 60 days:" in out and "製品の利用: -40.0 points" in out
    assert "山田 太郎" in out and "executive" in out and "情報システム部 部長" in out
    assert "escalated to manager@example.com" in out
    assert "3 detractor" in out
    assert "the account: Product event: health_band_changed" in out
    as_json = cli("account", "SAKURA", "--json")
    assert as_json.exit_code == 0
    import json

    body = json.loads(as_json.output)
    assert body["external_id"] == "SAKURA" and len(body["health"]["history"]) == 60
    missing = cli("account", "NOPE")
    assert missing.exit_code != 0
    assert "no account with external_id 'NOPE'" in str(missing.exception)


def test_files_read_for_the_pages_are_read_again_only_when_they_change(tmp_path):
    from campaigns.web.accounts import _read_once

    path = tmp_path / "segments.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    loads: list[str] = []

    def load() -> str:
        loads.append(path.read_text(encoding="utf-8"))
        return loads[-1]

    assert _read_once((path,), load) == "a: 1\n"
    assert _read_once((path,), load) == "a: 1\n"
    assert len(loads) == 1  # kept while the file stays the same
    path.write_text("a: 22\n", encoding="utf-8")  # another size: read again
    assert _read_once((path,), load) == "a: 22\n"
    path.unlink()
    assert _read_once((path,), lambda: "gone") == "gone"
