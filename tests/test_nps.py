"""NPS: the score and its interval against hand-computed values, the summary from the stats
rows of NPS steps only (a CSAT step's scores are not mixed in), by period, segment and
journey, and the dashboard's page with its chart, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import re
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from campaigns.engine.deploy import deploy
from campaigns.insight import stats
from campaigns.insight.nps import Nps, nps_steps, period, summary
from campaigns.journeys.parse import parse_journey
from campaigns.store.models import Journey
from campaigns.web.charts import Series, lines

JOURNEY = textwrap.dedent(
    """\
    journey: pulse
    name: 満足度調査
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: ask_nps, survey: {scale: nps, template: nps_survey, subject: NPS}}
      - {id: ask_csat, survey: {scale: csat, template: nps_survey, subject: CSAT}}
    """
)


def test_the_score_and_interval_by_hand():
    n = Nps()
    for score, count in {10: 30, 9: 20, 8: 15, 7: 10, 6: 10, 3: 10, 0: 5}.items():
        n.add(score, count)
    assert (n.promoters, n.passives, n.detractors, n.n) == (50, 25, 25, 100)
    assert n.score == pytest.approx(25.0)
    # p = 0.5, d = 0.25: 1.96 * sqrt((0.75 - 0.0625) / 100) * 100 = 16.25...
    half = 1.96 * math.sqrt((0.5 + 0.25 - 0.25**2) / 100) * 100
    assert half == pytest.approx(16.2513, abs=1e-3)
    assert n.interval == pytest.approx((25 - half, 25 + half))
    everyone = Nps()
    everyone.add(10, 40)
    assert everyone.score == 100.0 and everyone.interval == (100.0, 100.0)  # clipped, no spread
    assert Nps().score is None and Nps().interval is None
    one = Nps()
    one.add(0, 1)
    assert one.score == -100.0 and one.interval is None  # n < 2


def test_periods():
    assert period(date(2026, 11, 26), "week") == date(2026, 11, 23)  # the Monday
    assert period(date(2026, 11, 26), "month") == date(2026, 11, 1)
    assert period(date(2026, 11, 26), "day") == date(2026, 11, 26)


def _seed(db) -> int:
    with db.session() as s, s.begin():
        deploy(s, parse_journey(JOURNEY, "pulse.yaml"), JOURNEY, "pulse.yaml")
        journey_id = s.scalar(select(Journey.id).where(Journey.key == "pulse"))
    counts: Counter = Counter()
    rows = [
        (
            "ask_nps",
            "エンタープライズ",
            date(2026, 11, 2),
            {10: 3, 9: 1, 5: 1},
        ),  # week of Oct 26... (Monday 2026-11-02)
        ("ask_nps", "smb", date(2026, 11, 10), {8: 2, 2: 2}),
        ("ask_csat", "smb", date(2026, 11, 10), {5: 7, 1: 1}),  # CSAT: not NPS
    ]
    for step, segment, day, scores in rows:
        for score, n in scores.items():
            counts[(journey_id, step, "email", "", segment, "tier", day, f"score_{score}")] += n
    with db.session() as s, s.begin():
        stats.add(s, counts)
    return journey_id


def test_the_summary_counts_nps_steps_only(db):
    journey_id = _seed(db)
    with db.session() as s:
        assert nps_steps(s) == {journey_id: {"ask_nps"}}
        result = summary(s)
        weekly = summary(s, "pulse", bucket="week")
        later = summary(s, since=date(2026, 11, 9))
        with pytest.raises(LookupError):
            summary(s, "nope")
        with pytest.raises(ValueError):
            summary(s, bucket="year")
    total = result.total
    assert (total.promoters, total.passives, total.detractors) == (4, 2, 3)
    assert total.score == pytest.approx(100 * (4 - 3) / 9)
    assert [(p.key, p.n) for p in weekly.over_time] == [("2026-11-02", 5), ("2026-11-09", 4)]
    assert [(p.key, p.score) for p in weekly.over_time] == [
        ("2026-11-02", pytest.approx(60.0)),
        ("2026-11-09", pytest.approx(-50.0)),
    ]
    assert [(p.key, p.n) for p in result.by_segment] == [("smb", 4), ("エンタープライズ", 5)]
    assert later.total.n == 4
    assert result.as_dict()["total"]["scores"] == {"2": 2, "5": 1, "8": 2, "9": 1, "10": 3}


def test_the_nps_page(signed_in, db):
    _seed(db)
    html = signed_in.get("/nps?bucket=week").get_data(as_text=True)
    assert re.search(r'class="nps-score">\+11<', html), html[:3000]
    assert "エンタープライズ" in html and "満足度調査" in html
    svg = re.search(r'<svg[^>]*id="nps-over-time".*?</svg>', html, re.S).group(0)
    root = ET.fromstring(svg)
    points = root.findall(".//{http://www.w3.org/2000/svg}circle")
    assert len(points) == 2
    assert signed_in.get("/nps?bucket=year").status_code == 400
    assert signed_in.get("/nps?journey=nope").status_code == 404
    assert signed_in.get("/nps?since=2026-12-01&until=2026-11-01").status_code == 400
    empty = signed_in.get("/nps?since=2027-01-01").get_data(as_text=True)
    assert "No NPS answers in these days" in empty


def test_a_line_chart_is_well_formed_and_escaped():
    svg = str(
        lines(
            ["11-01", "11-02", "11-03"],
            [Series("<script>", (10.0, None, 30.0)), Series("B案", (50.0, 60.0, 70.0))],
            title="t & t",
            description="d",
            low=0,
            high=100,
            unit="%",
        )
    )
    root = ET.fromstring(svg)
    series = root.findall("{http://www.w3.org/2000/svg}g[@class='series']")
    assert [g.get("data-series") for g in series] == ["<script>", "B案"]
    assert len(series[0].findall("{http://www.w3.org/2000/svg}circle")) == 2 and not series[
        0
    ].findall("{http://www.w3.org/2000/svg}polyline")  # a gap: no line
    assert len(series[1].findall("{http://www.w3.org/2000/svg}polyline")) == 1
    assert "<script>" not in svg
    assert "No data yet" in str(lines([], [], title="t", description="d", low=0, high=1))


@pytest.fixture
def signed_in(db, build_app):
    from campaigns.clock import FakeClock
    from campaigns.store.users import add_user

    now = datetime(2026, 11, 24, tzinfo=UTC)
    with db.session() as s, s.begin():
        add_user(s, "a@example.com", "correct horse battery", now)
    client = build_app(clock=FakeClock(now), secret_key="nps-secret-0123456789").test_client()
    token = re.search(
        r'name="csrf" value="([^"]+)"', client.get("/login").get_data(as_text=True)
    ).group(1)
    assert (
        client.post(
            "/login",
            data={"csrf": token, "email": "a@example.com", "password": "correct horse battery"},
        ).status_code
        == 302
    )
    return client
