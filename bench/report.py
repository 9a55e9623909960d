"""Benchmark: the journey report and the dashboard's journey page over 10M events.

In one run, on a throw-away PostgreSQL database:
  1. generate contacts, sent messages and ``--events`` raw hit events (opens, clicks,
     answers; human and machine) for the shipped ``low_touch_nps`` journey, set-based in SQL;
  2. build the pre-aggregated ``stats`` from them with one GROUP BY (the same counts the
     flusher keeps as hits arrive; printed, as a one-off cost);
  3. time the journey report (``campaigns.insight.report.journey_report``, by step and by segment),
     the journeys overview and the dashboard's pages (signed in, over Flask's test client):
     the journey page, the journeys list, the NPS page, a contact's timeline (about 50 of
     the 10M events are theirs) and the tasks inbox, each the median of several runs
     (target: report < 2 s);
  4. for comparison, the same funnel computed by scanning the raw events.

Usage: python bench/report.py [--events 10000000] [--messages 1000000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEGMENTS = ("low_touch_ja", "low_touch_en", "low_touch_new")


def timed(fn, runs: int = 5) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from sqlalchemy import text

    from campaigns import config as settings
    from campaigns.engine.deploy import deploy
    from campaigns.insight.report import journey_report, overview
    from campaigns.journeys.parse import load_journey
    from campaigns.store.db import make_engine, make_sessionmaker, migrate
    from campaigns.store.users import add_user
    from campaigns.web import create_app

    admin = None
    url = args.database_url
    if url is None:
        name = f"campaigns_report_{uuid.uuid4().hex[:6]}"
        admin = make_engine(
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        started = time.perf_counter()
        path = ROOT / "journeys" / "low_touch_nps.yaml"
        with sessions() as s, s.begin():
            journey = load_journey(path)
            deploy(s, journey, path.read_text(encoding="utf-8"), str(path))
            journey_id = s.scalar(text("SELECT id FROM journeys WHERE key = 'low_touch_nps'"))
            version_id = s.scalar(
                text("SELECT current_version_id FROM journeys WHERE id = :j"), {"j": journey_id}
            )
            add_user(s, "bench@example.com", "bench-password-123", now)
        sending = [
            step.id for step in journey.steps if step.type.value in ("email", "survey", "invite")
        ][:3]
        steps = "ARRAY[" + ",".join(f"'{step}'" for step in sending) + "]"
        segments = "ARRAY[" + ",".join(f"'{seg}'" for seg in SEGMENTS) + "]"
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (external_id, name, currency, contract_status, "
                    "attributes, tier, created_at, updated_at) SELECT 'A' || g, 'Account ' || g, "
                    "'JPY', 'active', '{}', 'low_touch', now(), now() FROM generate_series(1, :n) g"
                ),
                {"n": args.contacts // 4},
            )
            conn.execute(
                text(
                    "INSERT INTO contacts (account_id, email, name, locale, time_zone, "
                    "subscribed, opt_out, tags, attributes, created_at, updated_at) SELECT 1 + "
                    "(g % :a), 'c' || g || '@example.com', '山田 ' || g, 'ja', 'Asia/Tokyo', true, "
                    "'[]', '[]', '{}', now(), now() FROM generate_series(1, :n) g"
                ),
                {"n": args.contacts, "a": args.contacts // 4},
            )
            conn.execute(
                text(
                    "INSERT INTO enrollments (journey_id, journey_version_id, contact_id, "
                    "entry_key, segment, tier, holdout, state, current_step, context, "
                    "entered_at, counted) "
                    f"SELECT :j, :v, g, 'segment', ({segments})[1 + g % 3], 'low_touch', g % 10 "
                    "= 0, 'completed', NULL, '{}', :t, 0 FROM generate_series(1, :n) g"
                ),
                {
                    "j": journey_id,
                    "v": version_id,
                    "n": args.contacts,
                    "t": now - timedelta(days=30),
                },
            )
            conn.execute(
                text(
                    "INSERT INTO messages (enrollment_id, contact_id, journey_id, step_id, "
                    "attempt_key, channel, category, status, tries, links, created_at, sent_at, "
                    "counted) "
                    f"SELECT 1 + (g % :c), 1 + (g % :c), :j, ({steps})[1 + (g / :c) % "
                    f"{len(sending)}], 'x' || g, 'email', 'survey', 'sent', 1, "
                    "'[\"https://example.com/\"]', :t + (g % 30) * interval '1 day', :t + (g % "
                    "30) * interval '1 day', false "
                    f"FROM generate_series(1, :n) g"
                ),
                {
                    "j": journey_id,
                    "c": args.contacts,
                    "n": args.messages,
                    "t": now - timedelta(days=30),
                },
            )
            conn.execute(
                text(
                    "INSERT INTO events (kind, message_id, contact_id, journey_id, step_id, "
                    "value, classification, reason, dedupe_key, data, occurred_at, recorded_at) "
                    "SELECT (ARRAY['open','open','open','click','answer'])[1 + g % 5], 1 + "
                    "(g::bigint * 7919) % :m, 1 + ((1 + (g::bigint * 7919) % :m) % :c), :j, "
                    "NULL, CASE WHEN g % 5 = 4 THEN ((g / 5) % 11)::text END, "
                    "(ARRAY['human','human','machine','unknown'])[1 + (g / 3) % 4], 'bench', "
                    "'b:' || g, '{}', :t + (g % 30) * interval '1 day', :t + (g % 30) * interval "
                    "'1 day' "
                    "FROM generate_series(1, :n) g"
                ),
                {
                    "j": journey_id,
                    "m": args.messages,
                    "c": args.contacts,
                    "n": args.events,
                    "t": now - timedelta(days=30),
                },
            )
        generated = time.perf_counter() - started
        with engine.connect() as conn:
            events = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
        print(
            f"generated {events:,} events on {args.messages:,} messages, {args.contacts:,} "
            f"contacts in {generated:.0f} s (postgresql)"
        )

        # The stats the flusher and the rollup keep, built here in one pass over the raw rows.
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO stats (journey_id, step_id, channel, variant, segment, tier, "
                    "day, metric, count) "
                    "SELECT m.journey_id, m.step_id, m.channel, '', coalesce(e.segment, ''), "
                    "coalesce(e.tier, ''), m.sent_at::date, 'sent', count(*) "
                    "FROM messages m JOIN enrollments e ON e.id = m.enrollment_id GROUP BY 1, 2, "
                    "3, 5, 6, 7"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO stats (journey_id, step_id, channel, variant, segment, tier, "
                    "day, metric, count) "
                    "SELECT m.journey_id, m.step_id, m.channel, '', coalesce(n.segment, ''), "
                    "coalesce(n.tier, ''), first::date, "
                    "CASE kind WHEN 'open' THEN 'opened' WHEN 'click' THEN 'clicked' ELSE "
                    "'answered' END, count(*) FROM ("
                    "  SELECT message_id, kind, min(occurred_at) AS first FROM events WHERE "
                    "classification = 'human' GROUP BY 1, 2) h "
                    "JOIN messages m ON m.id = h.message_id JOIN enrollments n ON n.id = "
                    "m.enrollment_id GROUP BY 1, 2, 3, 5, 6, 7, 8"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO stats (journey_id, step_id, channel, variant, segment, tier, "
                    "day, metric, count) "
                    "SELECT m.journey_id, m.step_id, m.channel, '', coalesce(n.segment, ''), "
                    "coalesce(n.tier, ''), ev.occurred_at::date, "
                    "CASE ev.kind WHEN 'open' THEN 'opened_' ELSE 'clicked_' END || "
                    "ev.classification, count(*) FROM events ev "
                    "JOIN messages m ON m.id = ev.message_id JOIN enrollments n ON n.id = "
                    "m.enrollment_id "
                    "WHERE ev.classification <> 'human' AND ev.kind IN ('open', 'click') GROUP "
                    "BY 1, 2, 3, 5, 6, 7, 8"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO stats (journey_id, step_id, channel, variant, segment, tier, "
                    "day, metric, count) "
                    "SELECT journey_id, '', '', '', coalesce(segment, ''), coalesce(tier, ''), "
                    "entered_at::date, CASE WHEN holdout THEN 'holdout' ELSE 'enrolled' END, "
                    "count(*) "
                    "FROM enrollments GROUP BY 1, 5, 6, 7, 8"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO stats (journey_id, step_id, channel, variant, segment, tier, "
                    "day, metric, count) "
                    "SELECT m.journey_id, m.step_id, m.channel, '', coalesce(n.segment, ''), "
                    "coalesce(n.tier, ''), a.occurred_at::date, 'score_' || a.value, count(*) "
                    "FROM ("
                    "  SELECT DISTINCT ON (message_id) message_id, value, occurred_at FROM "
                    "events WHERE kind = 'answer' AND classification <> 'machine' ORDER BY "
                    "message_id, occurred_at, id) a "
                    "JOIN messages m ON m.id = a.message_id JOIN enrollments n ON n.id = "
                    "m.enrollment_id GROUP BY 1, 2, 3, 5, 6, 7, 8"
                )
            )
            rows = conn.execute(text("SELECT count(*) FROM stats")).scalar_one()
        print(
            f"stats built from the raw rows in {time.perf_counter() - started:.1f} s: {rows:,} "
            "rows (kept up to date by the flusher and the rollup in production)"
        )

        with sessions() as s:
            by_step, report = timed(lambda: journey_report(s, "low_touch_nps"))
            by_segment, _ = timed(lambda: journey_report(s, "low_touch_nps", by="segment"))
            listing, _ = timed(lambda: overview(s))
        steps_found = {row.key: row.count("sent") for row in report.rows}  # type: ignore[attr-defined]
        print(
            f"journey report by step:    {by_step * 1000:7.1f} ms (target < 2 s): "
            f"{'OK' if by_step < 2 else 'MISSED'}  {steps_found}"
        )
        print(f"journey report by segment: {by_segment * 1000:7.1f} ms")
        print(f"journeys overview:         {listing * 1000:7.1f} ms")

        cfg = dataclasses.replace(
            settings.load({}),
            database_url=url,
            secret_key="bench-secret-0123456789",
            redis_url=None,
        )
        app = create_app({"DATABASE_URL": url, "CAMPAIGNS": cfg, "TESTING": True})
        client = app.test_client()
        import re

        page = client.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        assert (
            client.post(
                "/login",
                data={"csrf": csrf, "email": "bench@example.com", "password": "bench-password-123"},
            ).status_code
            == 302
        )
        page_time, response = timed(lambda: client.get("/journeys/low_touch_nps"))
        assert response.status_code == 200  # type: ignore[attr-defined]
        list_time, _ = timed(lambda: client.get("/journeys"))
        print(
            f"dashboard journey page:    {page_time * 1000:7.1f} ms   journeys list: "
            f"{list_time * 1000:.1f} ms"
        )
        nps_time, response = timed(lambda: client.get("/nps?bucket=week"))
        assert response.status_code == 200  # type: ignore[attr-defined]
        contact_time, response = timed(lambda: client.get("/contacts/4242"))
        assert response.status_code == 200 and "Timeline" in response.get_data(as_text=True)  # type: ignore[attr-defined]
        tasks_time, response = timed(lambda: client.get("/tasks?owner=all"))
        assert response.status_code == 200  # type: ignore[attr-defined]
        print(
            f"dashboard NPS page:        {nps_time * 1000:7.1f} ms   contact timeline: "
            f"{contact_time * 1000:.1f} ms   tasks inbox: {tasks_time * 1000:.1f} ms"
        )
        app.extensions["campaigns.engine"].dispose()

        with engine.connect() as conn:
            started = time.perf_counter()
            conn.execute(
                text(
                    "SELECT m.step_id, ev.kind, count(DISTINCT ev.message_id) FROM events ev "
                    "JOIN messages m ON m.id = ev.message_id "
                    "WHERE m.journey_id = :j AND ev.classification = 'human' GROUP BY 1, 2"
                ),
                {"j": journey_id},
            ).all()
            scan = time.perf_counter() - started
        print(
            f"for comparison, the funnel by scanning raw events: {scan:.1f} s "
            f"({scan / by_step:,.0f}x the report)"
        )
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{engine.url.database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
