"""Take the README's screenshots from the demo: the journeys list (docs/img/journeys.png), a
shipped journey's page (docs/img/journey.png), the NPS page (docs/img/nps.png) and an
account's page (docs/img/account.png, for the dashboard guide).

Runs ``campaigns demo`` (the shipped playbooks over simulated weeks with synthetic
recipients, as ``make demo`` does) on a throw-away SQLite database, serves the dashboard on
loopback, signs in with headless Chromium (cut off from the network, as in the browser tests)
and saves each page from its top to its last table.

    .venv/bin/python docs/screenshot.py                 # every page
    .venv/bin/python docs/screenshot.py --page nps [--out docs/img/nps.png]

The account page is shown as a CSM sees it: the demo owner's account whose health fell the
most (tests/accounts_kit.py, as the browser tests do), from the top to the contacts.

Needs ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``)
and a Japanese font for the names (``apt-get install fonts-noto-cjk``). The demo is seeded,
so the pictures only change when the pages, the playbooks or the demo do (and the day).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the app, and the browser helpers the tests use

from browser import chromium, console_errors, missing, png_size, serving, sign_in  # noqa: E402
from flask import Flask  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

from campaigns import config as settings_module  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker  # noqa: E402
from campaigns.store.users import add_user  # noqa: E402
from campaigns.web import create_app  # noqa: E402

IMG = ROOT / "docs" / "img"
WIDTH = 1280
MAX_BYTES = 300_000
"""The README's images stay small."""

EMAIL = "hanako@example.com"
PASSWORD = "screenshot only, thrown away"
SECRET = "screenshot-secret-0123456789abcdef"
JOURNEY = "tech_touch_onboarding"
"""The journey page shown: a shipped playbook with a branch, two variants and a send time."""

PAGES: dict[str, tuple[str, str]] = {
    "journeys": ("/journeys", "main table"),
    "journey": (f"/journeys/{JOURNEY}", "table.held"),
    "nps": ("/nps", "table.nps-table"),
}
"""Each page: its path and the last element the picture shows (the last one that matches)."""


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
    parser.add_argument("--page", choices=[*PAGES, "account", "all"], default="all")
    parser.add_argument("--out", type=Path, help="where to save the PNG (one page only)")
    args = parser.parse_args()
    if args.out is not None and args.page == "all":
        parser.error("--out names one picture: pick its --page")
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
    pages = [*PAGES, "account"] if args.page == "all" else [args.page]
    failed = 0
    if "account" in pages:
        failed |= account_page(args.out or IMG / "account.png", now)
    wanted = [p for p in pages if p in PAGES]
    if wanted:
        failed |= demo_pages({p: args.out or IMG / f"{p}.png" for p in wanted}, now)
    return failed


def demo_pages(outs: dict[str, Path], now: datetime) -> int:
    """The dashboard's pages after ``campaigns demo`` (its default weeks)."""
    with tempfile.TemporaryDirectory(prefix="campaigns-screenshot-") as folder:
        url = f"sqlite:///{Path(folder) / 'campaigns.db'}"
        drop = ("REDIS_URL", "SECRET_KEY", "CAMPAIGNS_INSTANCE", "GLOBAL_CONTROL_PERCENT")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(DATABASE_URL=url, MAIL_URL=f"file://{Path(folder) / 'outbox'}")
        done = subprocess.run(
            [sys.executable, "-m", "campaigns", "demo"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            print(f"screenshot: campaigns demo failed: {done.stderr[-2000:]}", file=sys.stderr)
            return 1
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session, session.begin():
            add_user(session, EMAIL, PASSWORD, now, name="佐藤 花子", role="admin")
        engine.dispose()
        failed = 0
        with serving(_builder(url)) as (base, app):
            driver = chromium()
            try:
                sign_in(driver, base, EMAIL, PASSWORD, page="/journeys")
                for page, out in outs.items():
                    path, last = PAGES[page]
                    failed |= _shoot(driver, base, path, lambda d, s=last: _bottom(d, s), out)
            finally:
                driver.quit()
            app.extensions["campaigns.engine"].dispose()
    return failed


def _builder(url: str) -> Callable[[str], Flask]:
    def build(base: str) -> Flask:
        cfg = dataclasses.replace(
            settings_module.load({}), secret_key=SECRET, base_url=base, redis_url=None
        )
        return create_app({"DATABASE_URL": url, "CAMPAIGNS": cfg, "SECRET_KEY": SECRET})

    return build


def _bottom(driver: WebDriver, selector: str) -> int:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    if not found:
        raise LookupError(f"no {selector} on {driver.current_url}")
    rect = found[-1].rect
    return int(rect["y"] + rect["height"]) + 28


def _shoot(
    driver: WebDriver, base: str, path: str, bottom: Callable[[WebDriver], int], out: Path
) -> int:
    """Open ``path``, size the window to show it down to ``bottom``, save it to ``out``."""
    driver.set_window_size(WIDTH, 2000)
    driver.get(base + path)
    height = bottom(driver)
    driver.set_window_size(WIDTH, height)
    inner = int(driver.execute_script("return window.innerHeight"))
    driver.set_window_size(WIDTH, 2 * height - inner)  # the window is taller than the page it shows
    driver.execute_script("window.scrollTo(0, 0)")
    errors = [e for e in console_errors(driver) if not e.startswith(f"{base}/favicon.ico ")]
    if errors:
        print(f"screenshot: {path} logged errors: {errors}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(out)):
        print(f"screenshot: could not write {out}", file=sys.stderr)
        return 1
    return checked(out)


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
        with serving(_builder(url)) as (base, app):
            driver = chromium()
            try:
                page = f"/accounts/{account_id}"
                sign_in(driver, base, DEMO_OWNER, PASSWORD, page=page)
                failed = _shoot(driver, base, page, lambda d: _bottom(d, "table.contacts"), out)
            finally:
                driver.quit()
            app.extensions["campaigns.engine"].dispose()
    return failed


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
