"""End to end, as a recipient's mail client and browser would: the engine sends an NPS
survey to a real SMTP server (aiosmtpd), the app runs under a real WSGI server on loopback
with hits going through Redis, and the test opens the email's HTML and requests its pixel,
a link and an answer button over HTTP. The flusher writes the hits; the next tick sees the
detractor's answer and creates the CSM's task."""

from __future__ import annotations

import re
import textwrap
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from campaigns.clock import FakeClock, SystemClock
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import Classification, EnrollmentState, EventKind
from campaigns.store.models import Account, Contact, Enrollment, Event, Task
from campaigns.tracking.hitlog import RedisHitLog
from campaigns.tracking.tokens import Tokens

ROOT = Path(__file__).resolve().parent.parent
SECRET = "e2e-secret-0123456789abcdef"
BROWSER = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)

JOURNEY = textwrap.dedent(
    """\
    journey: nps_e2e
    name: NPS
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: tips
        email: {template: onboarding_tips, subject: {en: Tips, ja: 活用のヒント}}
      - id: ask
        survey: {scale: nps, template: nps_survey, subject: {en: "How are we doing?",
            ja: 当社のサービスはいかがですか}}
      - id: wait
        wait_until: {answered: ask, timeout: 7 days}
      - id: route
        branch:
          - when: answer('ask') is not none and answer('ask') <= 6
            goto: call
          - else: done
      - id: call
        task: {title: "Call {{ contact.name }}: NPS {{ answer('ask') }}"}
      - id: done
        exit: done
    """
)


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "img" and values.get("src"):
            self.images.append(values["src"] or "")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


@pytest.fixture
def server(build_app, redis_conn):
    """The app under werkzeug's WSGI server on a free loopback port; hits go to Redis."""
    hits = RedisHitLog(redis_conn, stream=f"campaigns:e2e-hits:{uuid.uuid4().hex[:8]}")
    probe = make_server("127.0.0.1", 0, lambda e, s: [])
    port = probe.server_port
    probe.server_close()
    base = f"http://127.0.0.1:{port}"
    app = build_app(clock=SystemClock(), secret_key=SECRET, base_url=base, flask={"HITS": hits})
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield base, hits
    httpd.shutdown()


def test_a_recipient_opens_clicks_and_answers_and_the_journey_follows(
    db, smtp_sink, server, build_engine
):
    base, hits = server
    with db.session() as s, s.begin():
        account = Account(
            external_id="ACME",
            name="株式会社アクメ",
            arr=Decimal(1),
            owner_email="csm.sato@example.com",
        )
        s.add(account)
        s.flush()
        s.add(
            Contact(
                account_id=account.id,
                email="taro@example.jp",
                name="山田 太郎",
                locale="ja",
                time_zone="Asia/Tokyo",
            )
        )
        deploy(s, parse_journey(JOURNEY, "nps_e2e.yaml"), JOURNEY, "nps_e2e.yaml")
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    engine = build_engine(
        transport=smtp_sink,
        clock=clock,
        secret=SECRET,
        base_url=base,
        links={
            "docs": "https://docs.example.com/{{ contact.locale }}/start",
            "help": "https://help.example.com/",
        },
    )
    engine.tick()
    tips, survey = smtp_sink.parsed()  # sent in the order of the steps
    page = Links()
    page.feed(tips.get_body(("html",)).get_content())
    [pixel] = [src for src in page.images if "/t/o/" in src]
    clicks = [href for href in page.hrefs if "/t/c/" in href]
    page = Links()
    page.feed(survey.get_body(("html",)).get_content())
    answers = [href for href in page.hrefs if "/t/a/" in href]
    assert len(answers) == 11  # NPS 0-10
    parsed = survey
    unsubscribe = parsed["List-Unsubscribe"]
    assert base in unsubscribe and parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    def get(
        url: str, opener: urllib.request.OpenerDirector | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        request = urllib.request.Request(url, headers={"User-Agent": BROWSER})
        try:
            with (opener or urllib.request.build_opener()).open(request, timeout=10) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    # The mail client loads the pixel; the person clicks the first visible link.
    status, body, headers = get(pixel)
    assert status == 200 and body.startswith(b"GIF89a") and "no-store" in headers["Cache-Control"]
    no_redirect = urllib.request.build_opener(NoRedirect)
    visible = [
        href
        for href in clicks
        if (Tokens(SECRET, base).loads("click", href.rsplit("/", 1)[1]) or {}).get("l", -1) >= 0
    ]
    status, _, headers = get(visible[0], no_redirect)
    assert status == 302 and headers["Location"].startswith("http")

    # The person presses "3": the page posts the answer (as its script would), with the form token.
    status, body, _ = get(answers[3])
    assert status == 200
    csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
    form = urllib.parse.urlencode({"csrf": csrf}).encode()
    with urllib.request.urlopen(
        urllib.request.Request(answers[3], data=form, headers={"User-Agent": BROWSER}),
        timeout=10,
    ) as response:
        assert response.status == 200 and "ご回答ありがとうございました" in response.read().decode()

    # Until the flusher runs, the database has none of it; then every hit is there.
    with db.session() as s:
        assert s.scalars(select(Event)).all() == []
    result = hits.flush(db.sessions, clock.now)
    assert result.written == 3
    with db.session() as s:
        kinds = {(e.kind, e.classification) for e in s.scalars(select(Event))}
        assert kinds == {
            (EventKind.OPEN, Classification.HUMAN),
            (EventKind.CLICK, Classification.HUMAN),
            (EventKind.ANSWER, Classification.HUMAN),
        }
        assert (
            s.scalars(select(Enrollment.next_run_at)).one() == clock.now()
        )  # the answer woke the wait

    clock.advance(timedelta(minutes=5))
    engine.tick()
    with db.session() as s:
        task = s.scalars(select(Task)).one()
        assert task.title == "Call 山田 太郎: NPS 3" and task.owner_email == "csm.sato@example.com"
        assert s.scalars(select(Enrollment.state)).one() == EnrollmentState.COMPLETED
