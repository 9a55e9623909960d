"""Benchmark: the hit flusher's throughput (hits written per second), Redis stream to
PostgreSQL, classification and stats included.

On a throw-away PostgreSQL database: ``--messages`` sent messages (as bench/track.py seeds
them), ``--hits`` opens and clicks from a browser spread over them and XADDed to a Redis
stream in one pipeline, then one :meth:`campaigns.tracking.hitlog.RedisHitLog.flush` writes them all
(batches of ``campaigns.tracking.hitlog.BATCH``), timed. Prints hits/s and checks that the events
table
holds exactly the hits sent.

Usage: python bench/flush.py [--hits 40000] [--messages 1000] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hits", type=int, default=40_000)
    parser.add_argument("--messages", type=int, default=1_000)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="a Redis database it may empty (default: $TEST_REDIS_URL, as the tests')",
    )
    args = parser.parse_args()

    from redis import Redis
    from sqlalchemy import func, select, text
    from track import USER_AGENT, seed  # bench/track.py's seeding and browser

    from campaigns.store.db import make_engine, make_sessionmaker, migrate
    from campaigns.store.models import Event
    from campaigns.tracking.hitlog import STREAM, RedisHitLog
    from campaigns.tracking.hits import Hit

    name = f"campaigns_flush_{uuid.uuid4().hex[:6]}"
    admin = make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    try:
        migrate(engine)
        sessions = make_sessionmaker(engine)
        ids = seed(sessions, args.messages)
        redis = Redis.from_url(args.redis_url)
        redis.delete(STREAM)
        log = RedisHitLog(redis)
        start = time.time()
        hits = [
            Hit(
                "click" if i % 2 == 0 else "open",
                ids[i % len(ids)],
                start + i * 0.01,
                user_agent=USER_AGENT,
                ip="81.2.69.142",
                link=0 if i % 2 == 0 else None,
            )
            for i in range(args.hits)
        ]
        log.record_many(hits)
        began = time.perf_counter()
        result = log.flush(sessions)
        took = time.perf_counter() - began
        with sessions() as s:
            stored = s.scalar(select(func.count()).select_from(Event)) or 0
        print(
            f"flushed {result.written:,} of {args.hits:,} hits on {args.messages:,} messages in "
            f"{took:.1f} s = {result.written / took:,.0f} hits/s (postgresql)"
        )
        print(
            f"events table holds {stored:,}: {'exact' if stored == args.hits else 'MISMATCH'}; "
            f"by class { ({str(k): v for k, v in result.by_class.items()}) }"
        )
        redis.delete(STREAM)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
