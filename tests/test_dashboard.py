"""The dashboard through Flask's test client, on SQLite and PostgreSQL: every page needs a
signed-in user, sign-in gives nothing away and refuses open redirects, every POST needs the
CSRF token, and the pages show the numbers put into ``stats`` (worked out by hand), with a
well-formed SVG funnel, escaped names and Japanese intact; garbage never gets a 500."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.routing import IntegerConverter

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.insight import stats
from campaigns.insight.rates import Rate, wilson
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import JourneyStatus
from campaigns.store.models import Allocation, Journey, User
from campaigns.store.users import UserError, add_user, set_password
from campaigns.web import (  # noqa: F401
    accounts,
    crm,
    editor,
    events,
    journey_steps,
    lifecycle,
    previews,
)
from campaigns.web.auth import safe_next
from campaigns.web.charts import FunnelStep, funnel
from campaigns.web.dashboard import BAD_LOGIN
from campaigns.web.dashboard_base import PUBLIC, format_rate
from campaigns.web.dashboard_base import bp as dashboard_bp

SECRET = "dashboard-secret-0123456789"
BASE = "https://cs.example.com"
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
EMAIL = "hanako@example.com"
PASSWORD = "correct horse battery"
SVG = "{http://www.w3.org/2000/svg}"
JOURNEY = textwrap.dedent(
    """\
    journey: counted
    name: 計測ジャーニー
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: hello, email: {template: onboarding_tips, subject: Tips}}
      - {id: ask, survey: {scale: nps, template: nps_survey, subject: NPS}}
    """
)


# ---------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def app(build_app):
    return build_app(secret_key=SECRET, base_url=BASE)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def user(db) -> str:
    with db.session() as s, s.begin():
        add_user(s, EMAIL, PASSWORD, NOW, name="佐藤 花子", role="admin")
    return EMAIL


def csrf_of(client, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def sign_in(client, email: str = EMAIL, password: str = PASSWORD, **extra: str):
    return client.post(
        "/login", data={"csrf": csrf_of(client), "email": email, "password": password, **extra}
    )


@pytest.fixture
def signed_in(client, user):
    response = sign_in(client)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def day(offset: int = 0) -> date:
    return (NOW + timedelta(days=offset)).date()


def put(
    db,
    journey_id: int,
    counts: dict[tuple[str, str], int],
    *,
    segment: str = "エンタープライズ",
    tier: str = "high_touch",
    channel: str = "email",
    variant: str = "A",
    on: date | None = None,
) -> None:
    """Add ``counts`` ((step, metric) -> n) to the stats table; step "" is the journey level."""
    when = on or day()
    keyed: Counter = Counter()
    for (step, metric), n in counts.items():
        key = (
            journey_id,
            step,
            "" if not step else channel,
            "" if not step else variant,
            segment,
            tier,
            when,
            metric,
        )
        keyed[key] += n
    with db.session() as s, s.begin():
        stats.add(s, keyed)


@pytest.fixture
def journey(db) -> int:
    """The journey ``counted`` (计测ジャーニー): hello sent 7, opened 3 (+1 machine), clicked 1
    (+2 machine); ask sent 7, answered 3; 10 enrolled of whom 4 reached the goal, and a
    holdout of 10 of whom 1 did."""
    text = JOURNEY.replace("steps:", "goal: {event: renewed, within: 30 days}\nsteps:")
    with db.session() as s, s.begin():
        deploy(s, parse_journey(text, "counted.yaml"), text, "counted.yaml")
        journey_id = s.scalar(select(Journey.id).where(Journey.key == "counted"))
    assert journey_id is not None
    put(
        db,
        journey_id,
        {
            ("hello", "sent"): 7,
            ("hello", "opened"): 3,
            ("hello", "opened_machine"): 1,
            ("hello", "clicked"): 1,
            ("hello", "clicked_machine"): 2,
            ("ask", "sent"): 7,
            ("ask", "answered"): 3,
            ("", "enrolled"): 10,
            ("", "goal"): 4,
            ("", "holdout"): 10,
            ("", "holdout_goal"): 1,
        },
    )
    return journey_id


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (
        url,
        response.status_code,
        response.get_data(as_text=True)[:500],
    )
    assert response.content_type == "text/html; charset=utf-8"
    return response.get_data(as_text=True)


def svg_of(html: str) -> ET.Element:
    match = re.search(r"<svg\b.*?</svg>", html, re.S)
    assert match, "no SVG in the page"
    return ET.fromstring(match.group(0))


# ---------------------------------------------------------------------------- signing in


def _rules() -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every dashboard page, from the blueprint itself."""
    probe = Flask("probe")
    probe.register_blueprint(dashboard_bp)
    adapter = probe.url_map.bind("localhost")
    found = []
    for rule in probe.url_map.iter_rules():
        if rule.endpoint.startswith("dashboard.") and rule.endpoint not in PUBLIC:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                values = {
                    name: 1 if isinstance(rule._converters[name], IntegerConverter) else "counted"
                    for name in rule.arguments
                }
                found.append((rule.endpoint, method, adapter.build(rule.endpoint, values)))
    return found


def test_only_the_sign_in_page_is_public():
    assert sorted(PUBLIC) == ["dashboard.login"]
    assert {endpoint for endpoint, _, _ in _rules()} >= {
        "dashboard.index",
        "dashboard.journeys",
        "dashboard.journey",
        "dashboard.logout",
    }


@pytest.mark.parametrize(("endpoint", "method", "url"), _rules())
def test_every_dashboard_page_needs_a_signed_in_user(client, journey, endpoint, method, url):
    data = {"csrf": csrf_of(client)} if method == "POST" else None  # a valid form, just no user
    response = client.open(url, method=method, data=data)
    assert response.status_code == 302, (url, response.status_code)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    if method == "GET":
        assert parse_qs(location.query)["next"] == [url]
    assert "計測" not in response.get_data(as_text=True)


def test_signing_in_goes_to_the_page_asked_for_and_records_the_time(
    client, db, user, journey, clock
):
    first = client.get("/journeys/counted?since=2026-11-01")
    next_url = parse_qs(urlsplit(first.headers["Location"]).query)["next"][0]
    assert next_url == "/journeys/counted?since=2026-11-01"
    login = client.get(first.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/journeys/counted?since=2026-11-01"' in login
    response = sign_in(
        client, email="  Hanako@Example.COM ", next=next_url
    )  # emails compare without case
    assert (
        response.status_code == 302
        and response.headers["Location"] == "/journeys/counted?since=2026-11-01"
    )
    assert "計測ジャーニー" in page(client, response.headers["Location"])
    with db.session() as s:
        assert s.scalars(select(User)).one().last_login_at == NOW


def test_the_root_goes_to_the_journeys(signed_in):
    response = signed_in.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/journeys"


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(client, user):
    wrong = sign_in(client, EMAIL, "not the password at all")
    unknown = sign_in(client, "nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 200
    assert BAD_LOGIN in wrong.get_data(as_text=True)
    assert wrong.get_data(as_text=True).replace(EMAIL, "X") == unknown.get_data(
        as_text=True
    ).replace("nobody@example.com", "X")
    assert client.get("/journeys").status_code == 302  # still signed out


@pytest.mark.parametrize(
    "evil",
    [
        "//evil.example.com",
        "https://evil.example.com/",
        "http:evil.example.com",
        "/\\evil.example.com",
        "\\\\evil.example.com",
        "/\t/evil.example.com",
        "javascript:alert(1)",
        " /journeys",
        "evil",
        "/%0a/x\n",
    ],
)
def test_next_never_leaves_the_site(client, user, evil):
    assert safe_next(evil) is None
    response = sign_in(client, next=evil)
    assert response.status_code == 302 and response.headers["Location"] == "/journeys"
    assert "evil" not in client.get("/login", query_string={"next": evil}).get_data(as_text=True)


def test_local_next_paths_are_kept():
    for good in (
        "/journeys",
        "/journeys/counted?since=2026-11-01&until=2026-11-30",
        "/journeys/%E8%A8%88",
    ):
        assert safe_next(good) == good


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_posts_without_the_sessions_csrf_token_are_refused(signed_in, token):
    data = {} if token is None else {"csrf": token}
    response = signed_in.post("/logout", data=data)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "expired" in response.get_data(as_text=True)
    assert signed_in.get("/journeys").status_code == 200  # still signed in


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_the_sign_in_form_needs_its_csrf_token_too(client, user, token):
    client.get("/login")
    data = {"email": EMAIL, "password": PASSWORD} | ({} if token is None else {"csrf": token})
    assert client.post("/login", data=data).status_code == 400
    fresh = client.application.test_client()  # no session at all: no token can match
    assert fresh.post("/login", data={**data, "csrf": "x"}).status_code == 400
    assert client.get("/journeys").status_code == 302


def test_signing_out_ends_the_session(signed_in):
    response = signed_in.post("/logout", data={"csrf": csrf_of(signed_in, "/journeys")})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert signed_in.get("/journeys").status_code == 302


def test_a_new_password_ends_every_session_signed_in_with_the_old_one(signed_in, db):
    assert signed_in.get("/journeys").status_code == 200
    with db.session() as s, s.begin():
        set_password(s, EMAIL, "a brand new passphrase")
    assert signed_in.get("/journeys").status_code == 302


def test_the_session_cookie_is_httponly_lax_and_secure_behind_https(client, user):
    response = sign_in(client)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_pages_carry_a_strict_content_security_policy(signed_in, journey):
    for url in ("/login", "/journeys", "/journeys/counted", "/journeys/nope"):
        response = signed_in.get(url)
        policy = response.headers["Content-Security-Policy"]
        assert (
            "default-src 'none'" in policy
            and "script-src" not in policy
            and "img-src 'self' data:" in policy
        )
        assert (
            response.headers["X-Frame-Options"] == "DENY"
            and response.headers["Cache-Control"] == "no-store"
        )
        assert "<script" not in response.get_data(as_text=True)


# ---------------------------------------------------------------------------- the numbers


def test_format_rate_shows_value_interval_and_n():
    assert format_rate(Rate(3, 7)) == "42.9% [15.8–75.0] n=7"  # Wilson (0.1582, 0.7495)
    assert format_rate(Rate(0, 7)) == "0.0% [0.0–35.4] n=7"
    assert format_rate(Rate(0, 0)) == "—"
    assert format_rate(Rate(1500, 3000)) == "50.0% [48.2–51.8] n=3,000"


def test_the_journeys_list_shows_headline_rates_with_intervals(signed_in, db, journey):
    with db.session() as s, s.begin():
        s.scalars(select(Journey)).one().status = JourneyStatus.PAUSED
    html = page(signed_in, "/journeys")
    row = re.search(r"<tr>\s*<td><a href=\"/journeys/counted\">.*?</tr>", html, re.S)
    assert row, html
    cells = [
        re.sub(r"<[^>]+>", " ", c).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    ]
    # 14 sent over two steps; 3 opened, 1 clicked, 3 answered, all of 14: Wilson by hand
    # 3/14 -> (0.0757, 0.4759); 1/14 -> (0.0127, 0.3147).
    assert cells[0].split() == ["計測ジャーニー", "counted"]
    assert cells[1:7] == ["paused", "v1", "0", "0", "0", "14"]  # enrolled, in progress, held
    cells = cells[:3] + cells[6:]  # (the live counts out: the rest as before)
    assert cells[4:7] == ["21.4% [7.6–47.6] n=14", "7.1% [1.3–31.5] n=14", "21.4% [7.6–47.6] n=14"]
    assert cells[7:11] == [
        "0",
        "0",
        "1",
        "2",
    ]  # unsubscribed, bounced, machine opens, machine clicks
    assert wilson(3, 14) == pytest.approx((0.0757, 0.4759), abs=5e-5)


def test_the_journey_page_shows_the_funnel_tables_goal_and_lift(signed_in, db, journey):
    put(
        db,
        journey,
        {("hello", "sent"): 2, ("hello", "opened"): 1},
        segment="中小企業",
        tier="tech_touch",
        channel="email",
        variant="B",
    )
    html = page(signed_in, "/journeys/counted")
    assert "<h1>計測ジャーニー</h1>" in html and "v1" in html
    tables = {
        by: body
        for by, body in re.findall(
            r'<table class="report" data-by="(\w+)">(.*?)</table>', html, re.S
        )
    }
    assert list(tables) == ["step", "segment", "tier", "channel", "variant"]
    steps = re.findall(r"<tr><td>(\w+)</td>", tables["step"].split("<tfoot>")[0])
    assert steps == ["hello", "ask"]  # the funnel in the journey's order, not by name
    # hello: 9 sent, 4 opened (3 + 1) -> 44.4% [18.9–73.3]; ask: 3 answered of 7.
    assert "44.4% [18.9–73.3] n=9" in tables["step"]
    assert "42.9% [15.8–75.0] n=7" in tables["step"]
    assert "エンタープライズ" in tables["segment"] and "中小企業" in tables["segment"]
    # エンタープライズ: hello opened 3 of 14 sent over both steps; 中小企業: 1 of 2.
    assert re.search(
        r"<td>エンタープライズ</td>.*?21\.4% \[7\.6–47\.6\] n=14", tables["segment"], re.S
    )
    assert re.search(r"<td>中小企業</td>.*?50\.0% \[9\.5–90\.5\] n=2", tables["segment"], re.S)
    assert "<td>A</td>" in tables["variant"] and "<td>B</td>" in tables["variant"]
    assert "<td>tech_touch</td>" in tables["tier"] and "<td>email</td>" in tables["channel"]
    # Goal 4 of 10 (Wilson 0.1682, 0.6873); holdout 1 of 10; lift +30.0 points, Newcombe [−8.2,
    # +59.9].
    assert '<strong class="goal-rate">40.0% [16.8–68.7] n=10</strong>' in html
    assert '<span class="holdout-rate">10.0% [1.8–40.4] n=10</span>' in html
    assert "+30.0 points [-8.2, +59.9]" in html and "no clear effect yet" in html


def test_the_global_control_groups_lift_shows_on_the_journeys_and_the_journey_page(signed_in, db):
    goal = JOURNEY.replace("steps:", "goal: {event: converted, within: 30 days}\nsteps:")
    with db.session() as s, s.begin():
        deploy(s, parse_journey(goal, "counted.yaml"), goal, "counted.yaml")
        other = JOURNEY.replace("counted", "no_goal")
        deploy(s, parse_journey(other, "no_goal.yaml"), other, "no_goal.yaml")
        ids = {key: id_ for key, id_ in s.execute(select(Journey.key, Journey.id))}
    put(db, ids["counted"], {("", "enrolled"): 900, ("", "goal"): 270})
    put(db, ids["counted"], {("", "control"): 100, ("", "control_goal"): 20})
    # A journey without a goal is left out of the pooled numbers.
    put(db, ids["no_goal"], {("", "enrolled"): 450, ("", "control"): 50})
    html = page(signed_in, "/journeys")
    # 270 of 900 against 20 of 100: +10.0 points, Newcombe [+0.7, +17.3].
    assert '<span class="global-treated-rate">30.0% [27.1–33.1] n=900</span>' in html
    assert '<span class="global-control-rate">20.0% [13.3–28.9] n=100</span>' in html
    assert '<strong class="global-lift">+10.0 points [+0.7, +17.3]</strong>' in html
    assert "the journeys help" in html
    html = page(signed_in, "/journeys/counted")
    assert '<span class="control-rate">20.0% [13.3–28.9] n=100</span>' in html
    assert '<strong class="control-lift">+10.0 points [+0.7, +17.3]</strong>' in html
    assert "holdout-rate" not in html  # no journey holdout here


def test_no_global_control_card_without_its_members(signed_in, journey):
    assert "Global control group" not in page(signed_in, "/journeys")


def test_the_funnel_is_a_well_formed_svg_with_one_bar_group_per_step(signed_in, journey):
    svg = svg_of(page(signed_in, "/journeys/counted"))
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    assert svg.find(f"{SVG}title") is not None and "計測ジャーニー" in (
        svg.find(f"{SVG}title").text or ""
    )
    groups = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "step"]
    assert [g.get("data-step") for g in groups] == ["hello", "ask"]
    for group in groups:
        bars = [r.get("class") for r in group.iter(f"{SVG}rect")]
        assert bars.count("bar human sent") == 1 and bars.count("bar human opened") == 1
    hello = {r.get("class"): r for r in groups[0].iter(f"{SVG}rect")}
    assert (
        float(hello["bar human sent"].get("width"))
        > float(hello["bar human opened"].get("width"))
        > float(hello["bar human clicked"].get("width"))
        > 0
    )
    assert (
        float(hello["bar machine clicked"].get("width")) > 0
    )  # the scanner's clicks, lighter beside
    assert hello["bar machine clicked"].get("fill-opacity") is not None
    assert "opened 3 (42.9%)" in (hello["bar human opened"].find(f"{SVG}title").text or "")


def test_chart_text_is_escaped_and_stays_well_formed():
    nasty = '<script>alert("x")</script> & \x01 ]]> 長い名前' * 3
    svg = str(
        funnel(
            [
                FunnelStep(nasty, sent=5, opened=2, clicked=1, answered=1, clicked_machine=3),
                FunnelStep("b"),
            ],
            title=nasty,
        )
    )
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "step"]) == 2
    assert root.find(f"{SVG}title").text == nasty.replace("\x01", "")
    assert (
        ET.fromstring(str(funnel([]))).find(f"{SVG}text") is not None
    )  # nothing sent yet: still a chart


def test_names_are_html_escaped(signed_in, db, journey):
    evil = JOURNEY.replace("counted", "evil").replace(
        "計測ジャーニー", '"<script>alert(1)</script>"'
    )
    with db.session() as s, s.begin():
        deploy(s, parse_journey(evil, "evil.yaml"), evil, "evil.yaml")
        evil_id = s.scalar(select(Journey.id).where(Journey.key == "evil"))
    put(db, evil_id, {("hello", "sent"): 1}, segment="<img src=x onerror=alert(1)>")
    for url in ("/journeys", "/journeys/evil"):
        html = page(signed_in, url)
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    svg_of(page(signed_in, "/journeys/evil"))  # still well-formed


def test_the_date_filter_counts_only_those_days(signed_in, db, journey):
    put(db, journey, {("hello", "sent"): 3, ("hello", "opened"): 3}, on=day(-10))
    everything = page(signed_in, "/journeys/counted")
    assert "60.0% [31.3–83.2] n=10" in everything  # hello: 6 of 10 opened over both days
    recent = page(
        signed_in, f"/journeys/counted?since={day(-1).isoformat()}&until={day().isoformat()}"
    )
    assert "42.9% [15.8–75.0] n=7" in recent and "60.0%" not in recent
    assert f'value="{day(-1).isoformat()}"' in recent
    old = page(signed_in, f"/journeys/counted?until={day(-5).isoformat()}")
    assert "100.0% [43.9–100.0] n=3" in old and "Nobody has been enrolled in these days" in old
    assert (
        page(signed_in, "/journeys/counted?since=&until=") == everything
    )  # an empty form is no filter
    for bad in ("since=yesterday", "until=2026-02-30", "since=2026-11-24&until=2026-11-01"):
        response = signed_in.get(f"/journeys/counted?{bad}")
        assert response.status_code == 400 and response.mimetype == "text/html", bad


def test_an_unknown_journey_is_a_404_page(signed_in):
    response = signed_in.get("/journeys/nope")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "No journey &#39;nope&#39;" in response.get_data(as_text=True)


def test_no_journeys_yet(signed_in):
    assert "No journey is deployed yet" in page(signed_in, "/journeys")
    assert "佐藤 花子" in page(signed_in, "/journeys")  # who is signed in, with a sign-out button


# ---------------------------------------------------------------------------- garbage


texts = st.text(max_size=120)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(email=texts, password=texts, next_=texts, good_token=st.booleans())
def test_garbage_on_the_sign_in_form_never_gets_a_500(
    client, user, email, password, next_, good_token
):
    data = {
        "email": email,
        "password": password,
        "next": next_,
        "csrf": csrf_of(client) if good_token else "x",
    }
    response = client.post("/login", data=data)
    assert response.status_code in (200, 302, 400, 429)
    if response.status_code == 302:
        assert safe_next(response.headers["Location"]) == response.headers["Location"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.one_of(st.just("counted"), st.text(max_size=40)),
    query=st.dictionaries(
        st.sampled_from(["since", "until", "next", "by", "x"]), texts, max_size=3
    ),
)
def test_garbage_in_addresses_and_query_strings_never_gets_a_500(signed_in, journey, key, query):
    try:
        response = signed_in.get(f"/journeys/{key}", query_string=query)
        login = signed_in.get("/login", query_string=query)
    except ValueError:  # the test client refuses some raw paths before any request is made
        return
    assert response.status_code in (200, 308, 400, 404, 405) and login.status_code == 200


# ---------------------------------------------------------------------------- users and the CLI


def run(
    db, tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "MAIL_URL", "SECRET_KEY")
    }
    environ["DATABASE_URL"] = db.url
    result = subprocess.run(
        [sys.executable, "-m", "campaigns", *args],
        cwd=tmp_path,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_user_add_from_stdin_then_signing_in_works(db, client, tmp_path):
    added = run(
        db,
        tmp_path,
        "user",
        "add",
        "Kenji@Example.com",
        "--name",
        "田中 健二",
        "--role",
        "csm",
        "--password-stdin",
        stdin="a long enough secret\n",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added csm kenji@example.com"
    listed = run(db, tmp_path, "user", "list")
    assert (
        listed.returncode == 0
        and "kenji@example.com" in listed.stdout
        and "田中 健二" in listed.stdout
        and "never" in listed.stdout
    )
    assert sign_in(client, "kenji@example.com", "a long enough secret").status_code == 302
    assert "田中 健二" in page(client, "/journeys")
    again = run(
        db,
        tmp_path,
        "user",
        "add",
        "kenji@example.com",
        "--password-stdin",
        stdin="another long secret\n",
    )
    assert (
        again.returncode == 2
        and again.stderr.strip() == "campaigns: a user with email kenji@example.com already exists"
    )
    short = run(db, tmp_path, "user", "add", "ami@example.com", "--password-stdin", stdin="short\n")
    assert (
        short.returncode == 2
        and short.stderr.strip() == "campaigns: password too short: use at least 10 characters"
    )
    changed = run(
        db,
        tmp_path,
        "user",
        "password",
        "kenji@example.com",
        "--password-stdin",
        stdin="the second secret\n",
    )
    assert changed.returncode == 0, changed.stderr
    assert client.get("/journeys").status_code == 302  # the new password ended the session
    assert sign_in(client, "kenji@example.com", "the second secret").status_code == 302


def test_user_add_asks_twice_for_the_password(db, tmp_path):
    result = run(
        db,
        tmp_path,
        "user",
        "add",
        "ami@example.com",
        stdin="a long enough secret\na long enough secret\n",
    )
    assert result.returncode == 0, result.stderr
    with db.session() as s:
        stored = s.scalars(select(User)).one()
    assert (
        stored.role == "csm"
        and stored.password_hash.startswith("scrypt:")
        and "a long enough secret" not in stored.password_hash
    )


def test_bad_users_are_refused(db):
    with db.session() as s:
        for email, password, role in (
            ("not-an-email", PASSWORD, "csm"),
            (EMAIL, PASSWORD, "root"),
            (EMAIL, "short", "csm"),
            ("a\x00b@example.com", PASSWORD, "csm"),
        ):
            with pytest.raises(UserError):
                add_user(s, email, password, NOW, role=role)


def test_the_sign_in_page_warns_when_secret_key_is_unset(client, app):
    assert app.config["CAMPAIGNS"].secret_is_ephemeral  # load({}): no SECRET_KEY in the environment
    assert "SECRET_KEY is not set" in client.get("/login").get_data(as_text=True)


def test_the_journey_page_shows_how_the_bandit_split_sends_over_time(signed_in, db, journey):
    rows = [
        # (hours after NOW, arm, share, p_best, trials, successes)
        (0, "plain", 0.5, 0.5, 0, 0),
        (0, "tips", 0.5, 0.5, 0, 0),
        (24, "plain", 0.2, 0.03, 400, 20),
        (24, "tips", 0.8, 0.97, 400, 60),
    ]
    with db.session() as s, s.begin():
        for hours, arm, share, p_best, trials, successes in rows:
            s.add(
                Allocation(
                    journey_id=journey,
                    step_id="hello",
                    segment="エンタープライズ",
                    dimension="variant",
                    arm=arm,
                    at=NOW + timedelta(hours=hours),
                    trials=trials,
                    successes=successes,
                    share=share,
                    p_best=p_best,
                )
            )
    html = page(signed_in, "/journeys/counted")
    section = re.search(
        r'<section class="card allocation" data-step="hello" '
        r'data-segment="エンタープライズ".*?</section>',
        html,
        re.S,
    )
    assert section, html[-3000:]
    svg = ET.fromstring(re.search(r"<svg\b.*?</svg>", section.group(0), re.S).group(0))
    series = {g.get("data-series"): g for g in svg.iter(f"{SVG}g") if g.get("class") == "series"}
    assert set(series) == {"plain", "tips"}
    assert [c.find(f"{SVG}title").text for c in series["tips"].iter(f"{SVG}circle")] == [
        "tips 11-24 01:00: 50.0%",
        "tips 11-25 01:00: 80.0%",
    ]
    table = section.group(0)
    assert re.search(
        r"<td>tips</td><td class=\"num\">80%</td><td class=\"num\">0.97</td><td "
        r"class=\"num\">60</td><td class=\"num\">400</td><td class=\"num\">15.0%</td>",
        table,
    ), table
    assert "tips is very likely the best (97%)" in table
