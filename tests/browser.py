"""Headless Chromium for the dashboard's browser tests (tests/test_browser.py) and for the
README's screenshot (docs/screenshot.py): the app under a real WSGI server on loopback,
and Debian's ``chromium`` driven by Selenium through the system ``chromedriver``.

Nothing is downloaded: the driver's path is given to Selenium, so Selenium Manager never
runs (``SE_OFFLINE`` says so too), and the browser cannot reach any other host than
127.0.0.1 (every name resolves to nothing and every other address goes to a closed proxy
port), so a page that needs outside network shows it.
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install chromium chromium-driver"
"""What installs both (Debian; CI's .ci/run does it on a fresh machine)."""

WINDOW = (1280, 2000)
"""The browser window, in CSS pixels: wide enough for the tables, tall enough for the funnel."""

OFFLINE = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
)
"""Switches that cut the browser off from everything but loopback."""

WAIT = 10
"""Seconds to wait for a page after a click."""

PNG = b"\x89PNG\r\n\x1a\n"

App = TypeVar("App")


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed."""


def missing() -> str | None:
    """Why the browser cannot start (a sentence naming the fix), or None when it can."""
    absent = [
        str(path)
        for path in (CHROMIUM, CHROMEDRIVER)
        if not (path.is_file() and os.access(path, os.X_OK))
    ]
    if not absent:
        return None
    return (
        f"{' and '.join(absent)} not found: the browser tests need Debian's Chromium and its "
        f"driver; run `{INSTALL}`"
    )


def chromium(window: tuple[int, int] = WINDOW) -> WebDriver:
    """Start headless Chromium, cut off from the network but loopback, with the page's
    console kept (``browser`` log, every level). Raises :class:`BrowserMissing`."""
    problem = missing()
    if problem:
        raise BrowserMissing(problem)
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must never fetch a driver
    options = Options()
    options.binary_location = str(CHROMIUM)
    for switch in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers often have a small /dev/shm
        f"--window-size={window[0]},{window[1]}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",  # screenshots show the page, not the window's scrollbars
        "--lang=en-US",
        *OFFLINE,
    ):
        options.add_argument(switch)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def browser_fixture() -> Iterator[WebDriver]:
    """The body of each browser test module's ``driver`` fixture (``yield from`` it): one
    headless Chromium, quit at the end; the test fails (never skips) when it is missing."""
    import pytest

    problem = missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    browser = chromium()
    try:
        yield browser
    finally:
        browser.quit()


@contextmanager
def serving(build: Callable[[str], App]) -> Iterator[tuple[str, App]]:
    """Serve ``build(base_url)`` (a WSGI app) with werkzeug on a free loopback port, in a
    thread; yield the base URL and the app. The port is taken before the app is built, so
    the app's ``BASE_URL`` can be its real address."""
    httpd = make_server("127.0.0.1", 0, _unready, threaded=True)
    base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        app = build(base)
    except BaseException:
        httpd.server_close()
        raise
    httpd.app = app
    thread = threading.Thread(target=httpd.serve_forever, name="wsgi", daemon=True)
    thread.start()
    try:
        yield base, app
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(WAIT)


def _unready(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]


def path_of(driver: WebDriver) -> str:
    """The path of the page the browser shows (``/journeys``)."""
    return urlsplit(driver.current_url).path


def sign_in(
    driver: WebDriver, base: str, email: str, password: str, page: str = "/journeys"
) -> None:
    """Open ``page`` signed out, which shows the sign-in form; fill it in and send it, as a
    person would; wait until the browser is back on ``page``."""
    driver.get(base + page)
    WebDriverWait(driver, WAIT).until(lambda d: path_of(d) == "/login")
    form = driver.find_element(By.CSS_SELECTOR, "form[action='/login']")
    form.find_element(By.NAME, "email").send_keys(email)
    form.find_element(By.NAME, "password").send_keys(password)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(
        lambda d: path_of(d) == urlsplit(page).path,
        message=f"signing in as {email} did not lead to {page}",
    )


def console_errors(driver: WebDriver) -> list[str]:
    """The console's errors (``SEVERE``: a script error, a refused CSP, a failed load) since
    the last call; reading the log empties it."""
    return [
        entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"
    ]


def artifacts_dir() -> Path:
    """Where test artefacts go: ``$ARTIFACTS_DIR``, else ``campaigns-test-artifacts/`` in the
    system's temporary folder (tests write nothing into the checkout); made if missing."""
    folder = Path(
        os.environ.get("ARTIFACTS_DIR") or Path(tempfile.gettempdir()) / "campaigns-test-artifacts"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file; ValueError if it is not one."""
    head = path.read_bytes()[:24]
    if len(head) < 24 or not head.startswith(PNG) or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG image")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)
