"""`campaigns demo` shows the product learning: after its simulated weeks the links of its
outbox answer from another process (one secret for the installation), and the dashboard, in
headless Chromium, shows human open, click and answer rates, a welcome email whose allocation
leans to the better variant, and NPS. One demo run (SQLite) is shared by the tests."""

from __future__ import annotations

import dataclasses
import email
import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest

from tests.browser import chromium, missing, serving, sign_in

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "demo-learning-password-1"
WEEKS = "5"  # enough for the welcome email's arms to pass the tuner's minimum sample


@dataclass
class Demo:
    folder: Path
    url: str
    env: dict[str, str]
    out: str


def _env(folder: Path) -> dict[str, str]:
    drop = ("REDIS_URL", "SECRET_KEY", "CAMPAIGNS_INSTANCE", "GLOBAL_CONTROL_PERCENT", "BASE_URL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DATABASE_URL=f"sqlite:///{folder / 'campaigns.db'}",
        MAIL_URL=f"file://{folder / 'outbox'}",
    )
    return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    folder = tmp_path_factory.mktemp("demo-learning")
    env = _env(folder)
    done = subprocess.run(
        [sys.executable, "-m", "campaigns", "demo", "--weeks", WEEKS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return Demo(folder, env["DATABASE_URL"], env, done.stdout)


def test_the_demo_simulates_weeks_with_machine_opens_a_leaning_tuner_nps_and_a_lift(demo_run):
    out = demo_run.out
    assert re.search(rf"Simulated {WEEKS} weeks, .* a pass every 2 hours", out), out
    opens = re.search(r"opens: (\d+) by people, (\d+) by machines", out)
    assert opens and int(opens.group(1)) > 0 and int(opens.group(2)) > 0, out
    split = re.search(r"split now: short (\d+)% .*, video (\d+)%", out)
    assert split and int(split.group(2)) > int(split.group(1)), out
    assert re.search(r"NPS [+-]?\d+ from [1-9]\d* answers", out), out
    assert re.search(r"tips by the recipient's hour, clicks/sent: \d\d:00 \d+/[1-9]", out), out
    assert re.search(r"lift over the global control group: [+-]\d", out), out
    # One secret for the installation, beside the database, not readable by others.
    secret = demo_run.folder / "instance" / "secret_key"
    assert secret.stat().st_mode & 0o777 == 0o600


def _links(outbox: Path) -> tuple[str, list[str]]:
    """An open pixel and the click links of one tracked email of the demo's outbox."""
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        html = message.get_body(("html",))
        if html is None:
            continue
        text = html.get_content()  # type: ignore[attr-defined]
        pixels = re.findall(r'src="(http[^"]+/t/o/[^"]+\.gif)"', text)
        clicks = re.findall(r'href="(http[^"]+/t/c/[^"]+)"', text)
        if pixels and len(clicks) > 1:  # a link besides the hidden trap link
            return pixels[0], clicks
    raise AssertionError("no tracked email in the outbox")


def test_links_signed_by_the_demo_answer_under_campaigns_run_in_another_process(demo_run):
    from conftest import free_port

    pixel, clicks = _links(demo_run.folder / "outbox")
    port = free_port()
    env = {**demo_run.env, "BASE_URL": f"http://127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "campaigns", "run", "--port", str(port), "--interval", "3600"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    local = re.sub(r"^https?://[^/]+", base, pixel)
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        with urllib.request.urlopen(local, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/gif"
        statuses = []
        for click in clicks:  # the links, and the hidden trap link (204) among them
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", re.sub(r"^https?://[^/]+", "", click))
            reply = connection.getresponse()
            reply.read()
            statuses.append(reply.status)
            connection.close()
        assert 302 in statuses and set(statuses) <= {302, 204}, statuses
        forged = local[: local.rindex(".") - 2] + "xx.gif"  # the signature no longer matches
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=5)
        assert refused.value.code == 404
        refused.value.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


@pytest.fixture(scope="module")
def dashboard(demo_run: Demo) -> Iterator[tuple[str, object]]:
    problem = missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    from campaigns import config as settings_module
    from campaigns.store.db import make_engine, make_sessionmaker
    from campaigns.store.users import add_user
    from campaigns.web import create_app

    engine = make_engine(demo_run.url)
    with make_sessionmaker(engine)() as s, s.begin():
        add_user(s, "learning@example.com", PASSWORD, datetime.now(UTC), role="admin")
    engine.dispose()

    def build(base: str):  # type: ignore[no-untyped-def]
        cfg = dataclasses.replace(settings_module.load({}), base_url=base, redis_url=None)
        return create_app({"DATABASE_URL": demo_run.url, "CAMPAIGNS": cfg})

    driver = chromium()
    try:
        with serving(build) as (base, app):
            sign_in(driver, base, "learning@example.com", PASSWORD, page="/journeys")
            yield base, driver
            app.extensions["campaigns.engine"].dispose()
    finally:
        driver.quit()


def _counts(driver, what: str) -> list[int]:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, f"td[title$='{what} (95% Wilson interval)']")
    return [int(c.get_attribute("title").split()[0]) for c in cells]


@pytest.mark.browser
def test_the_dashboard_after_the_demo_shows_human_open_click_and_answer_rates(dashboard):
    base, driver = dashboard
    driver.get(f"{base}/journeys")
    for what in ("opened", "clicked", "answered"):
        counts = _counts(driver, what)
        assert counts and sum(counts) > 0, (what, counts)


@pytest.mark.browser
def test_the_welcome_emails_allocation_leans_to_the_better_variant(dashboard):
    from selenium.webdriver.common.by import By

    base, driver = dashboard
    driver.get(f"{base}/journeys/tech_touch_onboarding")
    section = driver.find_element(By.CSS_SELECTOR, "section.allocation[data-step='welcome']")
    assert section.find_element(By.TAG_NAME, "svg").is_displayed()
    shares = {
        row.find_elements(By.TAG_NAME, "td")[0].text: int(
            row.find_elements(By.TAG_NAME, "td")[1].text.rstrip("%")
        )
        for row in section.find_elements(By.CSS_SELECTOR, "tbody tr")
    }
    assert set(shares) == {"short", "video"} and shares["video"] > shares["short"] + 30, shares


@pytest.mark.browser
def test_the_nps_page_has_answers_after_the_demo(dashboard):
    from selenium.webdriver.common.by import By

    base, driver = dashboard
    driver.get(f"{base}/nps")
    assert re.fullmatch(r"[+-]?\d+", driver.find_element(By.CSS_SELECTOR, ".nps-score").text)
    people = [
        int(row.find_elements(By.TAG_NAME, "td")[1].text.replace(",", ""))
        for row in driver.find_elements(By.CSS_SELECTOR, "table.nps-parts tbody tr")
    ]
    assert len(people) == 3 and sum(people) > 0, people
