"""Benchmark: the account page at 250k accounts and 1M contacts on PostgreSQL.

Bulk-loads (COPY) a private PostgreSQL database on the shared server (dropped at the end;
``--postgres-url`` names the server) with a realistic history:
  - 250k accounts (20 owners, three tiers, JPY and USD) and 1M contacts (4 per account);
  - 90 days of health rows for ``--scored`` accounts (each day's measures JSON in the
    scorer's shape) and the latest day for every other account;
  - one contact enrollment per contact and one account enrollment per account;
  - 1M messages (one per contact), 2M contact events (opens, clicks, some answers, machine
    hits) and one account-level ``health_band_changed`` event per account;
  - one task per account.
Then times, over ``--samples`` accounts picked at random among the scored ones:
  1. the data call, :func:`campaigns.insight.accounts.account_page` (every query it makes);
  2. the rendered page, ``GET /accounts/<id>`` through Flask's test client, signed in;
and prints the median and the 95th percentile of each, with "My accounts" (an owner's
12,500 accounts sorted by health, and by ARR) and the Health overview for comparison.

Usage: python bench/account_page.py [--accounts 250000] [--per-account 4] [--samples 200]
Target (issue 13): the account page in under 100 ms at that size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pgkit import postgres_database  # noqa: E402

from campaigns import config as settings_module  # noqa: E402
from campaigns.clock import FakeClock  # noqa: E402
from campaigns.insight.accounts import account_page, find_account  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from campaigns.store.users import add_user  # noqa: E402

NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
TODAY = NOW.date()
OWNERS = [f"csm{i:02d}@example.com" for i in range(20)]
PASSWORD = "bench only, thrown away"
TARGET_MS = 100.0
MEASURES = (
    ("usage", "製品の利用", 0.5),
    ("nps", "NPS回答", 0.3),
    ("renewal", "更新までの日数", 0.2),
)


def copy(raw: Any, table: str, columns: tuple[str, ...], rows: Any) -> int:
    """COPY ``rows`` (tuples in ``columns``' order) into ``table``; how many."""
    n = 0
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as out:
        for row in rows:
            out.write_row(row)
            n += 1
    return n


def band(score: float) -> str:
    return "red" if score < 40 else "yellow" if score < 70 else "green"


def measures_json(usage: float, nps: float, renewal: float) -> str:
    scores = {"usage": usage, "nps": nps, "renewal": renewal}
    return json.dumps(
        {
            name: {
                "value": round(scores[name] / 10, 1),
                "score": round(scores[name], 1),
                "weight": weight,
                "contribution": round(scores[name] * weight, 2),
                "label": {"en": name, "ja": ja},
            }
            for name, ja, weight in MEASURES
        },
        ensure_ascii=False,
    )


def load(url: str, accounts: int, per_account: int, scored: int, rng: random.Random) -> list[int]:
    """Fill the database; the ids of the accounts with 90 days of health."""
    engine = make_engine(url)
    migrate(engine)
    contacts = accounts * per_account
    stamp = NOW - timedelta(days=120)
    started = time.perf_counter()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        conn.execute(
            text(
                "INSERT INTO journeys (id, key, name, status, created_at, updated_at) VALUES "
                "(1, 'onboarding', 'オンボーディング', 'active', :t, :t), "
                "(2, 'renewal', '更新', 'active', :t, :t)"
            ),
            {"t": stamp},
        )
        conn.execute(
            text(
                "INSERT INTO journey_versions (id, journey_id, number, source_path, source_text, "
                "source_hash, definition, created_at) VALUES "
                "(1, 1, 1, 'j.yaml', 'x', 'a', '{}', :t), "
                "(2, 2, 1, 'j.yaml', 'x', 'b', "
                """'{"steps": [{"id": "nps", "blocks": {"survey": {"scale": "nps"}}}]}', :t)"""
            ),
            {"t": stamp},
        )
        scored_ids = set(rng.sample(range(1, accounts + 1), scored))
        n = copy(
            raw,
            "accounts",
            (
                "id",
                "external_id",
                "name",
                "arr",
                "currency",
                "contract_status",
                "renewal_date",
                "owner_email",
                "health_score",
                "health_band",
                "health_change_30d",
                "health_scored_on",
                "tier",
                "attributes",
                "created_at",
                "updated_at",
            ),
            (
                (
                    i,
                    f"ACC-{i:07d}",
                    f"株式会社サンプル{i}",
                    rng.randint(1, 500) * 100_000 if i % 5 else rng.randint(1, 300) * 1000,
                    "JPY" if i % 5 else "USD",
                    "active",
                    TODAY + timedelta(days=rng.randint(-30, 365)),
                    OWNERS[i % len(OWNERS)],
                    (s := rng.randint(5, 99)),
                    band(s),
                    rng.uniform(-30, 30),
                    TODAY,
                    ("high_touch", "low_touch", "tech_touch")[i % 3],
                    "{}",
                    stamp,
                    stamp,
                )
                for i in range(1, accounts + 1)
            ),
        )
        print(f"accounts: {n:,}")
        roles = ("admin", "user", "billing", "executive")
        n = copy(
            raw,
            "contacts",
            (
                "id",
                "account_id",
                "email",
                "name",
                "role",
                "title",
                "locale",
                "time_zone",
                "subscribed",
                "opt_out",
                "tags",
                "attributes",
                "created_at",
                "updated_at",
            ),
            (
                (
                    c,
                    1 + (c - 1) // per_account,
                    f"person{c}@example.jp",
                    f"山田 {c}",
                    roles[c % 4],
                    "部長" if c % 4 == 3 else None,
                    "ja",
                    "Asia/Tokyo",
                    True,
                    "[]",
                    "[]",
                    "{}",
                    stamp,
                    stamp,
                )
                for c in range(1, contacts + 1)
            ),
        )
        print(f"contacts: {n:,}")
        n = copy(
            raw,
            "enrollments",
            (
                "id",
                "journey_id",
                "journey_version_id",
                "contact_id",
                "account_id",
                "entry_key",
                "state",
                "current_step",
                "holdout",
                "unfinished_runs",
                "context",
                "entered_at",
                "finished_at",
                "counted",
            ),
            (
                (
                    e,
                    1 if e <= contacts else 2,
                    1 if e <= contacts else 2,
                    e if e <= contacts else None,
                    None if e <= contacts else e - contacts,
                    "segment",
                    "completed" if e % 3 == 0 else "waiting",
                    "wait",
                    False,
                    0,
                    "{}",
                    NOW - timedelta(days=e % 90 + 1),
                    NOW - timedelta(days=e % 30) if e % 3 == 0 else None,
                    2,
                )
                for e in range(1, contacts + accounts + 1)
            ),
        )
        print(f"enrollments: {n:,}")
        n = copy(
            raw,
            "messages",
            (
                "id",
                "enrollment_id",
                "contact_id",
                "journey_id",
                "step_id",
                "attempt_key",
                "channel",
                "status",
                "subject",
                "message_id",
                "tries",
                "links",
                "created_at",
                "sent_at",
                "opened_at",
                "clicked_at",
                "counted",
                "persona",
            ),
            (
                (
                    m,
                    m,
                    m,
                    1,
                    "welcome",
                    "1",
                    "email",
                    "sent",
                    "ようこそ",
                    f"<{m}@bench>",
                    1,
                    "[]",
                    (t := NOW - timedelta(days=m % 80 + 1, minutes=m % 600)),
                    t,
                    t + timedelta(hours=2) if m % 2 else None,
                    t + timedelta(hours=3) if m % 5 == 0 else None,
                    True,
                    ("admin", "end_user", "billing", "executive")[m % 4],
                )
                for m in range(1, contacts + 1)
            ),
        )
        print(f"messages: {n:,}")
        kinds = ("open", "open", "click", "answer")

        def events() -> Any:
            for e in range(1, 2 * contacts + 1):
                c = 1 + (e - 1) % contacts
                t = NOW - timedelta(days=e % 80, minutes=e % 900)
                answer = e % 4 == 3
                yield (
                    kinds[e % 4],
                    None,
                    c,
                    c,
                    1 + (c - 1) // per_account,
                    2 if answer else 1,
                    "nps" if answer else "welcome",
                    str(e % 11) if answer else None,
                    "machine" if e % 7 == 0 else "human",
                    "{}",
                    t,
                    t,
                )
            for a in range(1, accounts + 1):
                yield (
                    "custom",
                    "health_band_changed",
                    None,
                    None,
                    a,
                    None,
                    None,
                    "yellow → red",
                    "human",
                    '{"from": "yellow", "to": "red"}',
                    NOW - timedelta(days=a % 20),
                    NOW,
                )

        n = copy(
            raw,
            "events",
            (
                "kind",
                "name",
                "message_id",
                "contact_id",
                "account_id",
                "journey_id",
                "step_id",
                "value",
                "classification",
                "data",
                "occurred_at",
                "recorded_at",
            ),
            events(),
        )
        print(f"events: {n:,}")
        n = copy(
            raw,
            "tasks",
            (
                "account_id",
                "contact_id",
                "owner_email",
                "kind",
                "priority",
                "title",
                "status",
                "due_at",
                "created_at",
                "counted",
            ),
            (
                (
                    a,
                    (a - 1) * per_account + 1,
                    OWNERS[a % len(OWNERS)],
                    "call",
                    ("urgent", "high", "normal", "low")[a % 4],
                    f"電話: サンプル{a}",
                    "open" if a % 2 else "done",
                    NOW + timedelta(days=a % 10 - 5),
                    NOW - timedelta(days=a % 40),
                    2,
                )
                for a in range(1, accounts + 1)
            ),
        )
        print(f"tasks: {n:,}")

        def health() -> Any:
            for a in range(1, accounts + 1):
                days = 90 if a in scored_ids else 1
                level, slope = rng.uniform(20, 95), rng.uniform(-0.4, 0.4)
                for back in range(days - 1, -1, -1):
                    usage = min(max(level + slope * (days - back), 0), 100)
                    m = measures_json(usage, level, 60.0)
                    score = usage * 0.5 + level * 0.3 + 12
                    yield (a, TODAY - timedelta(days=back), "default", score, band(score), m, NOW)

        n = copy(
            raw,
            "health_scores",
            ("account_id", "day", "scorecard", "score", "band", "measures", "computed_at"),
            health(),
        )
        print(f"health_scores: {n:,}")
        for table in ("accounts", "contacts", "enrollments", "messages", "events", "tasks"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"loaded in {time.perf_counter() - started:.0f} s")
    engine.dispose()
    return sorted(scored_ids)


def summary(label: str, times: list[float], target: float | None = None) -> str:
    times = sorted(times)
    median = statistics.median(times) * 1000
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))] * 1000
    line = f"{label}: median {median:.1f} ms, p95 {p95:.1f} ms, max {times[-1] * 1000:.1f} ms"
    line += f" (n={len(times)})"
    if target is not None:
        line += f"; target < {target:.0f} ms: {'OK' if p95 < target else 'MISSED'}"
    return line


def measure(url: str, ids: list[int], samples: int, rng: random.Random) -> None:
    from campaigns.web import create_app

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as s, s.begin():
        add_user(s, OWNERS[0], PASSWORD, NOW, name="ベンチ", role="csm")
    cfg = dataclasses.replace(
        settings_module.load({}), secret_key="bench-secret-0123456789abcdef", redis_url=None
    )
    app = create_app(
        {"DATABASE_URL": url, "CAMPAIGNS": cfg, "TESTING": True, "CLOCK": FakeClock(NOW)}
    )
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    signed = client.post(
        "/login", data={"csrf": token.group(1), "email": OWNERS[0], "password": PASSWORD}
    )
    assert signed.status_code == 302, signed.status_code
    statements: dict[str, list[float]] = {}
    db_engine = app.extensions["campaigns.engine"]

    @event.listens_for(db_engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["started"] = time.perf_counter()

    @event.listens_for(db_engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        flat = " ".join(statement.split())
        table = flat.split(" FROM ", 1)[-1].split(" ", 1)[0]
        statements.setdefault(f"{table}: ...{flat[-70:]}", []).append(
            time.perf_counter() - conn.info["started"]
        )

    picked = rng.sample(ids, min(samples, len(ids)))
    for account_id in picked[:10]:  # warm the caches and the connection pool
        client.get(f"/accounts/{account_id}")
    data, html, sizes = [], [], []
    for account_id in picked:
        with sessions() as s:
            started = time.perf_counter()
            account = find_account(s, id=account_id)
            assert account is not None
            view = account_page(s, account, NOW)
            data.append(time.perf_counter() - started)
            assert len(view.history) >= 80 and view.contacts and view.timeline, account_id
        started = time.perf_counter()
        response = client.get(f"/accounts/{account_id}")
        html.append(time.perf_counter() - started)
        assert response.status_code == 200
        sizes.append(len(response.get_data()))
    print(summary("account page, data (account_page)", data, TARGET_MS))
    print(summary("account page, rendered HTML (GET /accounts/<id>)", html, TARGET_MS))
    print(f"  page size: median {statistics.median(sizes) / 1024:.0f} KB")
    print("  the page's statements, slowest first (server round trip, median):")
    slowest = sorted(statements.items(), key=lambda kv: -statistics.median(kv[1]))
    for statement, times in slowest[:8]:
        print(f"    {statistics.median(times) * 1000:6.2f} ms  x{len(times):<5} {statement}")
    for label, path in (
        ("My accounts, 12,500 of an owner's by health", "/accounts"),
        ("My accounts, 12,500 of an owner's by ARR", "/accounts?sort=arr&order=desc"),
        ("all 250k accounts by renewal, page 3", "/accounts?owner=all&sort=renewal&page=3"),
        ("Health overview over every account", "/health"),
    ):
        times = []
        for _ in range(15):
            started = time.perf_counter()
            assert client.get(path).status_code == 200
            times.append(time.perf_counter() - started)
        print(summary(label, times))
    app.extensions["campaigns.services"].close()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=250_000)
    parser.add_argument("--per-account", type=int, default=4)
    parser.add_argument(
        "--scored", type=int, default=2_000, help="Accounts with 90 days of health."
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    rng = random.Random(13)
    url, drop = postgres_database(args.postgres_url, "account")
    try:
        ids = load(url, args.accounts, args.per_account, args.scored, rng)
        measure(url, ids, args.samples, rng)
    finally:
        drop()


if __name__ == "__main__":
    main()
