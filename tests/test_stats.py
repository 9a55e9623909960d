"""Pre-aggregated counts and the report, on SQLite and PostgreSQL: a journey runs for ten
contacts (two suppressed, one refused by the SMTP server), recipients open, click and answer
(people, a privacy proxy and a link scanner among them), and every count and rate is checked
against numbers worked out by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns.engine.deploy import deploy
from campaigns.insight import stats
from campaigns.insight.nps import summary
from campaigns.insight.rates import wilson
from campaigns.insight.report import journey_report, overview
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import SuppressionReason
from campaigns.store.models import Account, Contact, Message, Stat, Suppression
from campaigns.tracking.hits import Hit, write_hits
from tests.kit import LINKS

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
JOURNEY = textwrap.dedent(
    """\
    journey: counted
    name: 計測ジャーニー
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: hello, email: {template: onboarding_tips, subject: Tips}}
      - {id: ask, survey: {scale: nps, template: nps_survey, subject: NPS}}
      - {id: call, task: {title: "Call {{ contact.name }}", per: contact}}
    """
)


@pytest.fixture
def ran(db, smtp_sink, build_engine, clock):
    """The journey after one tick: 10 contacts, c0 and c1 suppressed, c2 refused (550)."""
    with db.session() as s, s.begin():
        account = Account(
            external_id="A", name="株式会社エー", arr=Decimal(1), owner_email="csm@example.com"
        )
        s.add(account)
        s.flush()
        s.add_all(
            [
                Contact(
                    account_id=account.id, email=f"c{i}@example.com", name=f"山田 {i}", locale="ja"
                )
                for i in range(10)
            ]
        )
        s.add_all(
            [
                Suppression(email="c0@example.com", reason=SuppressionReason.HARD_BOUNCE),
                Suppression(email="c1@example.com", reason=SuppressionReason.UNSUBSCRIBED),
            ]
        )
        deploy(s, parse_journey(JOURNEY, "counted.yaml"), JOURNEY, "counted.yaml")
    smtp_sink.refuse["c2@example.com"] = "550 5.1.1 no such user"
    build_engine(transport=smtp_sink, settings={"frequency_cap": 10}, links=LINKS).tick()
    with db.session() as s:
        return {
            (to, step): mid
            for to, step, mid in s.execute(select(Message.to_address, Message.step_id, Message.id))
        }, clock


def hit(
    kind: str, message: int, at: datetime, ua: str = CHROME, ip: str = "198.51.100.9", **extra
) -> Hit:
    return Hit(kind, message, at.timestamp(), user_agent=ua, ip=ip, **extra)


def test_counts_and_rates_match_the_hand_count(db, ran):
    ids, clock = ran
    later = START + timedelta(hours=2)
    hello = {i: ids[(f"c{i}@example.com", "hello")] for i in range(3, 10)}
    ask = {i: ids[(f"c{i}@example.com", "ask")] for i in range(3, 10)}
    hits = [
        # c3 opens three times (one unique open), c4 once; an Apple MPP prefetch on c5.
        *[
            ("o3", hit("open", hello[3], later)),
            ("o3b", hit("open", hello[3], later + timedelta(minutes=1))),
            ("o3c", hit("open", hello[3], later + timedelta(minutes=9))),
        ],
        ("o4", hit("open", hello[4], later)),
        (
            "o5",
            hit("open", hello[5], START + timedelta(seconds=1), ua="Mozilla/5.0", ip="17.58.1.2"),
        ),
        # c6 clicks with images off (a click is an open too); a scanner goes through c7's links.
        ("k6", hit("click", hello[6], later, link=0)),
        ("s7a", hit("click", hello[7], later, link=0)),
        ("s7b", hit("click", hello[7], later + timedelta(seconds=0.5), link=1)),
        # Answers: c3 9, c4 3 then 4 (one answer), c8 10; c9 unsubscribes.
        ("a3", hit("answer", ask[3], later, method="POST", value="9")),
        ("a4", hit("answer", ask[4], later, method="POST", value="3")),
        ("a4b", hit("answer", ask[4], later + timedelta(minutes=2), method="POST", value="4")),
        ("a8", hit("answer", ask[8], later, method="POST", value="10")),
        ("u9", hit("unsubscribe", ask[9], later, method="POST")),
    ]
    with db.session() as s, s.begin():
        write_hits(s, hits, later)
    with db.session() as s, s.begin():
        write_hits(s, hits[:3], later)  # replayed: counted once
    with db.session() as s, s.begin():
        stats.rollup(s, clock.now())
    with db.session() as s, s.begin():
        stats.rollup(s, clock.now())  # again: nothing is counted twice

    with db.session() as s:
        report = journey_report(s, "counted")
    steps = {row.key: row for row in report.rows}
    assert list(steps) == ["hello", "ask", "call"]  # the funnel, in the journey's order
    h = steps["hello"].counts
    # 10 contacts: c0, c1 suppressed; c2 refused; c3..c9 sent (7).
    assert (h["sent"], h["bounced"], h["suppressed"]) == (7, 1, 2)
    assert (h["opened"], h["clicked"], h["opened_machine"], h["clicked_machine"]) == (
        3,
        1,
        1,
        2,
    )  # c3, c4, c6 opened; c6 clicked
    a = steps["ask"].counts
    assert (a["sent"], a["answered"], a["unsubscribed"]) == (7, 3, 1)
    # The first answer of each survey email by its score: c3 9, c4 3 (not 4), c8 10.
    assert {m: n for m, n in a.items() if m.startswith("score_")} == {
        "score_9": 1,
        "score_3": 1,
        "score_10": 1,
    }
    with db.session() as s:
        nps = summary(s, "counted").total
    assert (nps.promoters, nps.passives, nps.detractors, round(nps.score or 0, 1)) == (
        2,
        0,
        1,
        33.3,
    )
    assert steps["call"].counts == {"task_created": 10, "owner_notified": 10}
    assert report.totals.counts["enrolled"] == 10
    open_rate = steps["hello"].rate("open_rate")
    assert (open_rate.hits, open_rate.n) == (3, 7) and open_rate.interval == pytest.approx(
        wilson(3, 7)
    )
    assert steps["ask"].rate("answer_rate").value == pytest.approx(3 / 7)
    with db.session() as s:
        [segment] = journey_report(
            s, "counted", by="segment"
        ).rows  # entered through the 'everyone' tier
        assert (segment.key, segment.counts["enrolled"], segment.counts["sent"]) == (
            "everyone",
            10,
            14,
        )
        assert (
            s.scalar(
                select(func.count()).select_from(Message).where(Message.opened_at.is_not(None))
            )
            == 3
        )
        [listed] = [j for j in overview(s) if j["journey"] == "counted"]
        assert listed["counts"]["sent"] == 14 and listed["name"] == "計測ジャーニー"


def test_a_human_click_later_revealed_as_a_scanner_moves_to_the_machine_count(db, ran):
    ids, _ = ran
    message = ids[("c3@example.com", "hello")]
    later = START + timedelta(hours=2)
    with db.session() as s, s.begin():
        write_hits(s, [("k1", hit("click", message, later, link=0))], later)
    with db.session() as s:
        row = {r.key: r for r in journey_report(s, "counted").rows}["hello"]
        assert (row.count("clicked"), row.count("opened"), row.count("clicked_machine")) == (
            1,
            1,
            0,
        )
    with db.session() as s, s.begin():
        write_hits(
            s, [("k2", hit("click", message, later + timedelta(seconds=0.4), link=1))], later
        )
    with db.session() as s:
        row = {r.key: r for r in journey_report(s, "counted").rows}["hello"]
        assert (row.count("clicked"), row.count("opened"), row.count("clicked_machine")) == (
            0,
            0,
            2,
        )
        assert s.scalar(select(Message.clicked_at).where(Message.id == message)) is None


def test_report_command_prints_table_json_and_csv(db, ran, tmp_path):
    ids, _ = ran
    with db.session() as s, s.begin():
        write_hits(
            s,
            [("o", hit("open", ids[("c3@example.com", "hello")], START + timedelta(hours=1)))],
            START + timedelta(hours=1),
        )
    environ = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MAIL_URL")},
        "DATABASE_URL": db.url,
    }

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "campaigns", "report", *args],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return result.stdout

    table = run("counted")
    assert (
        "計測ジャーニー" in table and "14.3% [2.6-51.3]" in table
    )  # 1 of 7: Wilson (0.0257, 0.5131)
    document = json.loads(run("counted", "--format", "json"))
    hello = next(r for r in document["rows"] if r["key"] == "hello")
    assert hello["rates"]["open_rate"] == {
        "value": 0.1429,
        "hits": 1,
        "n": 7,
        "low": 0.0257,
        "high": 0.5131,
    }
    assert run("counted", "--format", "csv").splitlines()[1].startswith("hello,7,1,1,0")
    assert "counted" in run()  # every journey
    missing = subprocess.run(
        [sys.executable, "-m", "campaigns", "report", "nope"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0 and "no journey 'nope'; deployed: counted" in missing.stderr


def test_stats_rows_add_up_under_concurrent_increments(db):
    key = (1, "s", "email", "", "", "", START.date(), "sent")
    for _ in range(3):
        with db.session() as s, s.begin():
            stats.add(s, __import__("collections").Counter({key: 5}))
    with db.session() as s:
        assert s.scalar(select(Stat.count).where(Stat.metric == "sent")) == 15
