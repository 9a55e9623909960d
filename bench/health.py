"""Benchmark: health scores for 250k accounts on PostgreSQL, set-based.

Makes a private PostgreSQL database on the shared server (dropped at the end; `--postgres-url`
names the server) and fills it with COPY: 250k accounts, 1M contacts (4 each), 10M usage rows
(active users and logins, one row per account, metric and day over 20 days), NPS and CSAT
answers (one event per 5 contacts), 2M customer emails (8 per account; opened and clicked in
part) and 100k tasks. Then scores every account with the shipped journeys/scorecards.yaml over
journeys/segments.yaml (:func:`campaigns.engine.health.compute`): yesterday first (no band
change to compare with), then today (band changes against yesterday, as events), then today
again (a rerun replaces the day's rows and records nothing). Prints the seconds of each
statement and in all.

Usage: python bench/health.py [--accounts 250000] [--days 20]
Target (issue 13): health computed from 10M usage rows and the stats in under 30 s.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaigns.engine import health  # noqa: E402
from campaigns.journeys.scorecards import load_scorecards  # noqa: E402
from campaigns.journeys.segments import load_segments  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from campaigns.store.models import Event, HealthScore, UsageMetric  # noqa: E402

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 0, 5, tzinfo=UTC)
TARGET = 30.0
PER_ACCOUNT = 4
ROLES = ("admin", "user", "billing", "executive")
INDUSTRIES = ("manufacturing", "retail", "software", "finance", "healthcare")


def copy(conn, table: str, columns: str, lines) -> int:
    """COPY the tab-separated ``lines`` into ``table``, in blocks of text; rows written."""
    count = 0
    cursor = conn.connection.dbapi_connection.cursor()
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as pipe:
        block = io.StringIO()
        for line in lines:
            block.write(line)
            count += 1
            if count % 200_000 == 0:
                pipe.write(block.getvalue())
                block = io.StringIO()
        pipe.write(block.getvalue())
    return count


def fill(engine, accounts: int, days: int) -> dict[str, int]:
    rng = random.Random(7)
    counts: dict[str, int] = {}
    stamp = "2026-11-01 00:00:00+00"
    with engine.begin() as conn:
        counts["accounts"] = copy(
            conn,
            "accounts",
            "id, external_id, name, arr, currency, plan, contract_status, contract_start,"
            " renewal_date, industry, company_size, attributes, created_at, updated_at",
            (
                f"{i}\tA{i:07d}\t{'株式会社サンプル' if i % 3 == 0 else 'Sample '}{i}"
                f"\t{int(rng.lognormvariate(13.5, 1.3))}\tJPY"
                f"\t{rng.choice(('starter', 'growth', 'business', 'enterprise'))}\tactive"
                f"\t{TODAY - timedelta(days=rng.randint(10, 1500))}"
                f"\t{TODAY + timedelta(days=rng.randint(-30, 400))}"
                f"\t{rng.choice(INDUSTRIES)}\t{rng.randint(5, 5000)}\t{{}}\t{stamp}\t{stamp}\n"
                for i in range(1, accounts + 1)
            ),
        )
        counts["contacts"] = copy(
            conn,
            "contacts",
            "id, account_id, email, name, role, locale, time_zone, subscribed, opt_out, tags,"
            " attributes, created_at, updated_at",
            (
                f"{k}\t{(k - 1) // PER_ACCOUNT + 1}\tc{k}@example.com\tPat {k}"
                f"\t{ROLES[k % 4]}\t{'ja' if k % 3 == 0 else 'en'}\tUTC\ttrue\t[]\t[]\t{{}}"
                f"\t{stamp}\t{stamp}\n"
                for k in range(1, accounts * PER_ACCOUNT + 1)
            ),
        )

        # Usage: a trend per account (growing, flat or dropping) and some noise.
        def usage():
            for a in range(1, accounts + 1):
                base = 1 + a % 30
                slope = (a % 3 - 1) * 0.05  # -5%, 0, +5% a day
                for d in range(days):
                    day = TODAY - timedelta(days=d)
                    level = max(0.0, base * (1 - slope * d))
                    yield f"{a}\tactive_users\t{day}\t{level:.1f}\t{stamp}\n"
                    yield f"{a}\tlogins\t{day}\t{level * 3:.0f}\t{stamp}\n"

        counts["usage rows"] = copy(
            conn, "usage_metrics", "account_id, metric, day, value, recorded_at", usage()
        )
        conn.execute(
            text(
                "INSERT INTO journeys (id, key, name, status, created_at, updated_at) VALUES"
                " (1, 'nps', 'NPS', 'active', now(), now()), (2, 'csat', 'CSAT', 'active',"
                " now(), now())"
            )
        )
        conn.execute(
            text(
                "INSERT INTO journey_versions (journey_id, number, source_path, source_text,"
                " source_hash, definition, created_at) VALUES"
                ' (1, 1, \'nps.yaml\', \'\', \'x\', \'{"steps": [{"id": "ask", "blocks":'
                ' {"survey": {"scale": "nps"}}}]}\', now()),'
                ' (2, 1, \'csat.yaml\', \'\', \'y\', \'{"steps": [{"id": "ask", "blocks":'
                ' {"survey": {"scale": "csat"}}}]}\', now())'
            )
        )
        contacts = accounts * PER_ACCOUNT

        def answers():
            for k in range(1, contacts + 1, 5):
                journey = 1 if k % 2 else 2
                value = rng.randint(0, 10) if journey == 1 else rng.randint(1, 5)
                when = NOW - timedelta(days=rng.randint(1, 170), hours=rng.randint(0, 23))
                yield (
                    f"answer\t{k}\t{(k - 1) // PER_ACCOUNT + 1}\t{journey}\task\t{value}"
                    f"\thuman\t{{}}\t{when.isoformat()}\t{when.isoformat()}\n"
                )

        counts["answers"] = copy(
            conn,
            "events",
            "kind, contact_id, account_id, journey_id, step_id, value, classification, data,"
            " occurred_at, recorded_at",
            answers(),
        )

        def emails():
            for n in range(1, 8 * accounts + 1):
                contact = (n * 7919) % contacts + 1
                sent = NOW - timedelta(days=n % 85, hours=n % 24)
                opened = f"{(sent + timedelta(hours=2)).isoformat()}" if n % 3 == 0 else r"\N"
                clicked = f"{(sent + timedelta(hours=3)).isoformat()}" if n % 11 == 0 else r"\N"
                yield (
                    f"{contact}\tstep\t{n}\temail\tsent\t0\t[]\t{sent.isoformat()}"
                    f"\t{sent.isoformat()}\t{opened}\t{clicked}\tfalse\n"
                )

        counts["emails"] = copy(
            conn,
            "messages",
            "contact_id, step_id, attempt_key, channel, status, tries, links, created_at,"
            " sent_at, opened_at, clicked_at, counted",
            emails(),
        )

        def tasks():
            for n in range(1, 100_001):
                due = NOW + timedelta(days=n % 10 - 5)
                yield (
                    f"{(n * 31) % accounts + 1}\tcall\tnormal\tCall\topen\t{due.isoformat()}"
                    f"\t{stamp}\t0\n"
                )

        counts["tasks"] = copy(
            conn,
            "tasks",
            "account_id, kind, priority, title, status, due_at, created_at, counted",
            tasks(),
        )
        for table in ("accounts", "contacts"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return counts


def score(sessions, cards, segset, day: date, now: datetime, label: str) -> float:
    started = time.perf_counter()
    with sessions() as s, s.begin():
        run = health.compute(s, cards, segset, day, now)
    total = time.perf_counter() - started
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in run.seconds.items())
    bands: dict[str, int] = {}
    for (_, band), n in run.bands.items():
        bands[band or "none"] = bands.get(band or "none", 0) + n
    verdict = "OK" if total < TARGET else "MISSED"
    print(f"{label}: {run.scored:,} accounts scored in {total:.2f} s ({phases}, commit included)")
    print(f"  bands {dict(sorted(bands.items()))}; events {dict(sorted(run.events.items()))}")
    print(f"  target < {TARGET:.0f} s: {verdict}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=250_000)
    parser.add_argument("--days", type=int, default=20, help="days of usage per metric")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    segset = load_segments(ROOT / "journeys" / "segments.yaml")
    cards = load_scorecards(ROOT / "journeys" / "scorecards.yaml", segset)
    admin = make_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    name = f"campaigns_bench_health_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
    url = make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrate(engine)
        started = time.perf_counter()
        counts = fill(engine, args.accounts, args.days)
        shown = ", ".join(f"{v:,} {k}" for k, v in counts.items())
        print(f"generated with COPY: {shown} in {time.perf_counter() - started:.1f} s")
        sessions = make_sessionmaker(engine)
        score(sessions, cards, segset, TODAY - timedelta(days=1), NOW, "yesterday (first day)")
        score(sessions, cards, segset, TODAY, NOW, "today (band changes)")
        score(sessions, cards, segset, TODAY, NOW, "today again (rerun)")
        with sessions() as s:
            rows = s.scalar(select(func.count()).select_from(HealthScore))
            events = s.scalar(
                select(func.count()).select_from(Event).where(Event.name.like("health_%"))
            )
            usage = s.scalar(select(func.count()).select_from(UsageMetric))
        print(
            f"stored: {rows:,} health_scores rows, {events:,} band-change events,"
            f" {usage:,} usage rows read"
        )
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
