"""Benchmark: tier 1M generated contacts on SQLite, set-based.

Generates accounts and contacts into a fresh SQLite file (WAL), in JPY, USD and EUR, then
times, with the shipped journeys/segments.yaml (amounts compared in yen at the embedded rates):
  1. tiering: one UPDATE that stores every account's tier (CASE over the tier rules);
  2. counting: accounts and contacts in every tier and segment (one scan per table);
and, for comparison, the per-row way: loading contacts with their accounts and evaluating
the same rules in Python, measured on a sample and scaled up.

Usage: python bench/segments.py [--contacts 1000000] [--per-account 4]
Target (issue 2): tiering + counting 1M contacts < 30 s on this machine.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaigns.engine import audience  # noqa: E402
from campaigns.engine.context import condition_values  # noqa: E402
from campaigns.journeys import segments as seg  # noqa: E402
from campaigns.journeys.expressions import Condition  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from campaigns.store.models import Account, Contact  # noqa: E402

PLANS = ["starter", "growth", "business", "enterprise"]
INDUSTRIES = ["manufacturing", "retail", "software", "finance", "healthcare", "logistics"]
STATUSES = ["active"] * 8 + ["trial", "churned"]
ROLES = ["admin", "user", "billing", "executive"]
CURRENCIES = ["JPY", "USD", "EUR"]  # a Japanese vendor's book with some foreign accounts
SCALE = {"JPY": 1, "USD": 150, "EUR": 160}  # amounts drawn in yen, written in their currency


def generate(sessions, contacts: int, per_account: int, today: date, rng: random.Random) -> None:
    accounts = contacts // per_account
    batch = 20_000
    with sessions() as s, s.begin():
        for start in range(0, accounts, batch):
            rows = []
            for i in range(start, min(start + batch, accounts)):
                currency = rng.choices(CURRENCIES, weights=[85, 10, 5])[0]
                arr = int(rng.lognormvariate(13.5, 1.3) / SCALE[currency])
                rows.append(
                    {
                        "external_id": f"A{i:07d}",
                        "name": f"株式会社サンプル{i}" if i % 3 == 0 else f"Sample {i} Inc.",
                        "arr": Decimal(arr),
                        "currency": currency,
                        "plan": rng.choices(PLANS, weights=[50, 30, 15, 5])[0],
                        "contract_status": rng.choice(STATUSES),
                        "contract_start": today - timedelta(days=rng.randint(10, 1500)),
                        "renewal_date": today + timedelta(days=rng.randint(-30, 400)),
                        "industry": rng.choice(INDUSTRIES),
                        "company_size": rng.randint(5, 5000),
                        "health_score": rng.randint(0, 100),
                        "attributes": {"region": rng.choice(["関東", "関西", "us-west", "eu"])},
                    }
                )
            s.execute(insert(Account), rows)
        for start in range(0, contacts, batch):
            rows = [
                {
                    "account_id": i // per_account + 1,
                    "email": f"c{i}@example.com",
                    "name": f"山田 太郎{i}" if i % 3 == 0 else f"Pat {i}",
                    "role": rng.choice(ROLES),
                    "locale": "ja" if i % 3 == 0 else "en",
                    "time_zone": "Asia/Tokyo" if i % 3 == 0 else "UTC",
                    "tags": [],
                    "attributes": {},
                }
                for i in range(start, min(start + batch, contacts))
            ]
            s.execute(insert(Contact), rows)


def per_row_python(sessions, segset: seg.SegmentSet, today: date, sample: int) -> float:
    """Seconds to load ``sample`` contacts with their accounts and evaluate every rule in Python
    (on the values journey conditions get: amounts converted to the base currency)."""
    conditions = [
        (s.name, Condition(s.rule))
        for s in (*segset.tiers, *segset.segments)
        if "tier" not in s.rule
    ]
    now = datetime.combine(today, datetime.min.time(), UTC)
    started = time.perf_counter()
    with sessions() as s:
        rows = s.execute(
            select(Contact, Account).join(Account, Contact.account_id == Account.id).limit(sample)
        )
        for contact, account in rows:
            values = condition_values(contact, account, now, currencies=segset.currencies)
            for _name, condition in conditions:
                condition(values)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--per-account", type=int, default=4)
    parser.add_argument(
        "--sample", type=int, default=50_000, help="contacts for the per-row comparison"
    )
    parser.add_argument("--segments", type=Path, default=ROOT / "journeys" / "segments.yaml")
    args = parser.parse_args()

    today = date(2026, 11, 23)
    segset = seg.load_segments(args.segments)
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/bench.db")
        migrate(engine)
        sessions = make_sessionmaker(engine)
        started = time.perf_counter()
        generate(sessions, args.contacts, args.per_account, today, random.Random(7))
        generated = time.perf_counter() - started
        accounts = args.contacts // args.per_account
        print(
            f"generated {args.contacts:,} contacts, {accounts:,} accounts in {generated:.1f} s "
            "(SQLite, WAL)"
        )
        source = args.segments
        if source.is_relative_to(ROOT):
            source = source.relative_to(ROOT)
        print(f"rules: {len(segset.tiers)} tiers, {len(segset.segments)} segments from {source}")

        started = time.perf_counter()
        with sessions() as s, s.begin():
            changed = audience.apply_tiers(s, segset, today)
        tiering = time.perf_counter() - started
        started = time.perf_counter()
        with sessions() as s:
            counts = audience.count(s, segset, today)
        counting = time.perf_counter() - started

        print(
            f"tiering (one UPDATE of {accounts:,} accounts, {changed:,} changed): {tiering:.2f} s"
        )
        print(
            f"counting ({len(counts)} tiers+segments over {args.contacts:,} contacts): "
            f"{counting:.2f} s"
        )
        for c in counts:
            print(
                f"  {c.name:<22} {'tier' if c.is_tier else 'segment':<8} accounts "
                f"{c.accounts:>9,}  contacts {c.contacts:>9,}"
            )
        total = tiering + counting
        print(
            f"total set-based: {total:.2f} s for {args.contacts:,} contacts (target < 30 s): "
            f"{'OK' if total < 30 else 'MISSED'}"
        )

        sample = min(args.sample, args.contacts)
        loop = per_row_python(sessions, segset, today, sample)
        scaled = loop * args.contacts / sample
        print(
            f"per-row Python for comparison: {loop:.2f} s for {sample:,} contacts -> "
            f"~{scaled:.0f} s for {args.contacts:,} ({scaled / total:.1f}x slower)"
        )
        engine.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
