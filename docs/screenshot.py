"""Take the README's screenshot of a journey's page (docs/img/journey.png), or with
``--page account`` the dashboard guide's screenshot of an account's page (docs/img/account.png).

Seeds a throw-away SQLite database with a demo-like journey (four steps, four segments, four
weeks of sends, opens, clicks and answers, an A/B test on the first email and a holdout),
serves the dashboard on loopback, signs in with headless Chromium (cut off from the network,
as in the browser tests) and saves the page from its top to the table by segment.

    .venv/bin/python docs/screenshot.py [--out docs/img/journey.png]
    .venv/bin/python docs/screenshot.py --page account [--out docs/img/account.png]

The account page is shown as a CSM sees it after ``campaigns demo``: the demo's database with
60 days of health scored for its accounts (tests/accounts_kit.py, as the browser tests do),
signed in as one of its owners, from the top to the contacts.

Needs ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``)
and a Japanese font for the names (``apt-get install fonts-noto-cjk``). The numbers come
from a seeded random generator, so the picture only changes when the pages do.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the app, and the browser helpers the tests use

from browser import chromium, console_errors, missing, png_size, serving, sign_in  # noqa: E402
from flask import Flask  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from sqlalchemy import select  # noqa: E402

from campaigns import config as settings_module  # noqa: E402
from campaigns.engine.deploy import deploy  # noqa: E402
from campaigns.insight import stats  # noqa: E402
from campaigns.journeys.parse import parse_journey  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from campaigns.store.models import Journey  # noqa: E402
from campaigns.store.users import add_user  # noqa: E402
from campaigns.web import create_app  # noqa: E402

OUT = ROOT / "docs" / "img" / "journey.png"
ACCOUNT_OUT = ROOT / "docs" / "img" / "account.png"
WIDTH = 1280
MAX_BYTES = 300_000
"""The README's image stays small."""

EMAIL = "hanako@example.com"
PASSWORD = "screenshot only, thrown away"
SECRET = "screenshot-secret-0123456789abcdef"
DAYS = 28
KEY = "onboarding_nps"
JOURNEY = textwrap.dedent(
    f"""\
    journey: {KEY}
    name: Onboarding and first NPS
    description: Welcome (two variants), tips and a check-in over the first weeks,
      then an NPS survey.
    segments: [healthcare, retail, it_services, finance]
    entry: {{trigger: segment}}
    holdout: 10
    goal: {{event: first_report_created, within: 30 days}}
    steps:
      - id: welcome
        email:
          template: onboarding_welcome
          subject: {{en: "Welcome: your workspace is ready", ja: ご利用開始のご案内}}
          variants:
            - id: short
              subject: {{en: Get started in 5 minutes, ja: 5分で始められます}}
            - id: video
              template: onboarding_welcome_video
              subject: {{en: Your five-minute video tour, ja: 5分でわかる動画ガイド}}
      - {{id: wait_tips, wait: 3 days}}
      - id: tips
        email: {{template: onboarding_tips, subject: {{en: Three habits of successful teams,
            ja: 活用が進むチームの3つの習慣}}}}
      - {{id: wait_checkin, wait: 5 days}}
      - id: checkin
        email: {{template: onboarding_checkin, subject: {{en: "How is it going so far?",
            ja: ご利用状況はいかがでしょうか}}}}
      - {{id: wait_nps, wait: 14 days}}
      - id: ask_nps
        survey: {{scale: nps, template: nps_survey,
            subject: {{en: "How likely are you to recommend us?",
                ja: サービスのおすすめ度を教えてください}}}}
    """
)


@dataclasses.dataclass(frozen=True)
class Audience:
    """A segment: its touch tier, how many enter a day, and how readily they respond."""

    segment: str
    tier: str
    per_day: int
    engagement: float


AUDIENCES = (
    Audience("healthcare", "low_touch", 3, 1.15),
    Audience("retail", "tech_touch", 5, 0.8),
    Audience("it_services", "tech_touch", 4, 1.3),
    Audience("finance", "high_touch", 2, 1.0),
)

# Per step: (metric, share of the step's sends, of what), applied in order; "video" opens better.
STEPS: tuple[tuple[str, float, tuple[tuple[str, float], ...]], ...] = (
    ("welcome", 0.97, (("opened", 0.52), ("clicked", 0.22))),
    ("tips", 0.9, (("opened", 0.41), ("clicked", 0.12))),
    ("checkin", 0.7, (("opened", 0.45), ("clicked", 0.1))),
    ("ask_nps", 0.85, (("opened", 0.48), ("answered", 0.27))),
)


def seed_counts(journey_id: int, today: date, rng: random.Random) -> Counter[stats.Key]:
    """Four weeks of counts, per day, segment, step and variant, as the scheduler and the
    flusher would have written them."""
    counts: Counter[stats.Key] = Counter()

    def add(
        step: str, channel: str, variant: str, audience: Audience, day: date, metric: str, n: int
    ) -> None:
        if n:
            counts[
                (journey_id, step, channel, variant, audience.segment, audience.tier, day, metric)
            ] += n

    def some(n: int, p: float) -> int:
        return sum(rng.random() < min(p, 0.98) for _ in range(n))

    for offset in range(DAYS, 0, -1):
        day = today - timedelta(days=offset)
        for audience in AUDIENCES:
            entered = max(0, round(rng.gauss(audience.per_day, audience.per_day / 4)))
            held_out = some(entered, 0.1)
            add("", "", "", audience, day, "enrolled", entered - held_out)
            add("", "", "", audience, day, "holdout", held_out)
            add("", "", "", audience, day, "holdout_goal", some(held_out, 0.12))
            reached = entered - held_out
            add("", "", "", audience, day, "goal", some(reached, 0.22 + 0.1 * audience.engagement))
            for step, reach, funnel in STEPS:
                reached = some(reached, reach)
                variants = ("short", "video") if step == "welcome" else ("",)
                for variant in variants:
                    sent = reached // len(variants) + (
                        reached % len(variants) if variant == variants[0] else 0
                    )
                    lift = 1.15 if variant == "video" else 1.0
                    add(step, "email", variant, audience, day, "sent", sent)
                    add(step, "email", variant, audience, day, "bounced", some(sent, 0.01))
                    add(step, "email", variant, audience, day, "opened_machine", some(sent, 0.08))
                    base = sent
                    for metric, share in funnel:
                        hits = some(base, share * audience.engagement * lift)
                        add(step, "email", variant, audience, day, metric, hits)
                        if metric == "clicked":
                            add(
                                step,
                                "email",
                                variant,
                                audience,
                                day,
                                "clicked_machine",
                                some(sent, 0.02),
                            )
                        base = hits if metric == "opened" else base
                    add(step, "email", variant, audience, day, "unsubscribed", some(sent, 0.004))
    return counts


def japanese_font() -> bool:
    try:
        found = subprocess.run(
            ["fc-list", ":lang=ja", "family"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except OSError:
        return False
    return bool(found.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", choices=["journey", "account"], default="journey")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"where to save the PNG (default: {OUT.relative_to(ROOT)}, or "
        f"{ACCOUNT_OUT.relative_to(ROOT)} for the account page)",
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = ACCOUNT_OUT if args.page == "account" else OUT
    problem = missing()
    if problem:
        print(f"screenshot: {problem}", file=sys.stderr)
        return 1
    if not japanese_font():
        print(
            "screenshot: no Japanese font, names would show as boxes; run `apt-get install "
            "fonts-noto-cjk`",
            file=sys.stderr,
        )
        return 1
    now = datetime.now(UTC)
    if args.page == "account":
        return account_page(args.out, now)
    with tempfile.TemporaryDirectory(prefix="campaigns-screenshot-") as folder:
        url = f"sqlite:///{Path(folder) / 'campaigns.db'}"
        engine = make_engine(url)
        migrate(engine)
        with make_sessionmaker(engine)() as session, session.begin():
            add_user(session, EMAIL, PASSWORD, now, name="佐藤 花子", role="csm")
            deploy(
                session,
                parse_journey(JOURNEY, f"journeys/{KEY}.yaml"),
                JOURNEY,
                f"journeys/{KEY}.yaml",
            )
            journey_id = session.scalar(select(Journey.id).where(Journey.key == KEY))
            assert journey_id is not None
            stats.add(session, seed_counts(journey_id, now.date(), random.Random(20261124)))
        engine.dispose()

        def build(base: str) -> Flask:
            cfg = dataclasses.replace(
                settings_module.load({}), secret_key=SECRET, base_url=base, redis_url=None
            )
            return create_app({"DATABASE_URL": url, "CAMPAIGNS": cfg, "SECRET_KEY": SECRET})

        with serving(build) as (base, app):
            driver = chromium()
            try:
                sign_in(driver, base, EMAIL, PASSWORD, page=f"/journeys/{KEY}")
                bottom = driver.find_element(
                    By.CSS_SELECTOR, "table.report[data-by='segment']"
                ).rect
                height = int(bottom["y"] + bottom["height"]) + 28
                driver.set_window_size(WIDTH, height)
                inner = int(driver.execute_script("return window.innerHeight"))
                driver.set_window_size(
                    WIDTH, 2 * height - inner
                )  # the window is taller than the page it shows
                driver.execute_script("window.scrollTo(0, 0)")
                errors = [
                    e for e in console_errors(driver) if not e.startswith(f"{base}/favicon.ico ")
                ]
                if errors:
                    print(f"screenshot: the page logged errors: {errors}", file=sys.stderr)
                    return 1
                args.out.parent.mkdir(parents=True, exist_ok=True)
                if not driver.save_screenshot(str(args.out)):
                    print(f"screenshot: could not write {args.out}", file=sys.stderr)
                    return 1
            finally:
                driver.quit()
            app.extensions["campaigns.engine"].dispose()
    return checked(args.out)


def account_page(out: Path, now: datetime) -> int:
    """The account page of the demo owner's account whose health fell the most."""
    from accounts_kit import DEMO_OWNER, falling_account, run_demo

    with tempfile.TemporaryDirectory(prefix="campaigns-screenshot-") as folder:
        url = f"sqlite:///{Path(folder) / 'campaigns.db'}"
        run_demo(url, now.date(), Path(folder))
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session, session.begin():
            account_id = falling_account(session)
            add_user(session, DEMO_OWNER, PASSWORD, now, name="佐藤 美咲", role="csm")
        engine.dispose()

        def build(base: str) -> Flask:
            cfg = dataclasses.replace(
                settings_module.load({}), secret_key=SECRET, base_url=base, redis_url=None
            )
            return create_app({"DATABASE_URL": url, "CAMPAIGNS": cfg, "SECRET_KEY": SECRET})

        with serving(build) as (base, app):
            driver = chromium()
            try:
                sign_in(driver, base, DEMO_OWNER, PASSWORD, page=f"/accounts/{account_id}")
                bottom = driver.find_element(By.CSS_SELECTOR, "table.contacts").rect
                height = int(bottom["y"] + bottom["height"]) + 28
                driver.set_window_size(WIDTH, height)
                inner = int(driver.execute_script("return window.innerHeight"))
                driver.set_window_size(WIDTH, 2 * height - inner)
                driver.execute_script("window.scrollTo(0, 0)")
                errors = console_errors(driver)
                if errors:
                    print(f"screenshot: the page logged errors: {errors}", file=sys.stderr)
                    return 1
                out.parent.mkdir(parents=True, exist_ok=True)
                if not driver.save_screenshot(str(out)):
                    print(f"screenshot: could not write {out}", file=sys.stderr)
                    return 1
            finally:
                driver.quit()
            app.extensions["campaigns.engine"].dispose()
    return checked(out)


def checked(out: Path) -> int:
    """Say what was written; 1 if it is too large for the docs."""
    args = argparse.Namespace(out=out)
    width, shown = png_size(args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({width}x{shown}, {size / 1000:.0f} KB)")
    if size > MAX_BYTES:
        print(
            f"screenshot: {args.out} is over {MAX_BYTES / 1000:.0f} KB; show less of the page",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
