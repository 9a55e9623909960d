"""End to end under gunicorn with two worker processes on loopback, as production runs it
(``gunicorn -w 2 web:app`` behind one load balancer: ``TRUSTED_PROXIES=1``): password guesses
spread over both workers are throttled as one count, the owner signing in from another
address is not held back, and signing out in one worker ends a copy of the cookie in the
other. With the counts in Redis (``REDIS_URL`` set) and in the database (unset), on SQLite
and PostgreSQL.

Each response names the worker that served it (a header added by a wrapper around
``web:app``), and the test keeps one keep-alive connection on each worker, so it knows that
both served the requests rather than hoping they did."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import free_port

from campaigns.store.users import add_user
from campaigns.web.dashboard import BAD_LOGIN
from campaigns.web.throttle import PAIR_FREE, PAIR_RULE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SECRET = "signin-e2e-secret-0123456789"
EMAIL = "hanako@example.com"
PASSWORD = "correct horse battery"

WRAPPER = textwrap.dedent(
    '''\
    """web:app, each response saying which worker process served it."""
    import os

    from web import app as web_app


    def app(environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, ("X-Worker", str(os.getpid()))], exc_info)

        return web_app(environ, start)
    '''
)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: str


@dataclass
class Browser:
    """One browser (one cookie) at one client address, behind the load balancer; it may send
    each request over either worker's connection."""

    conns: list[http.client.HTTPConnection]
    address: str
    cookie: str = ""
    seen: list[str] = field(default_factory=list)  # the worker of every response

    def request(
        self, worker: int, method: str, path: str, form: dict[str, str] | None = None
    ) -> Response:
        headers = {"X-Forwarded-For": self.address}  # as the load balancer would add it
        if self.cookie:
            headers["Cookie"] = f"campaigns_session={self.cookie}"
        body = urlencode(form) if form is not None else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = self.conns[worker]
        conn.request(method, path, body=body, headers=headers)
        raw = conn.getresponse()
        response = Response(raw.status, raw.headers, raw.read().decode())
        self.seen.append(raw.headers["X-Worker"])
        for value in raw.headers.get_all("Set-Cookie") or ():
            match = re.match(r"campaigns_session=([^;]*)", value)
            if match:
                self.cookie = match.group(1)
        return response

    def csrf(self, worker: int, path: str = "/login") -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', self.request(worker, "GET", path).body)
        assert match
        return match.group(1)

    def sign_in(self, worker: int, password: str = PASSWORD) -> Response:
        return self.request(
            worker,
            "POST",
            "/login",
            {"csrf": self.csrf(worker), "email": EMAIL, "password": password},
        )


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    conns: list[http.client.HTTPConnection] = field(default_factory=list)  # closed by the fixture

    def connection_on_each_worker(self, timeout: float = 60.0) -> list[http.client.HTTPConnection]:
        """Two keep-alive connections, accepted by two different workers (the workers share
        the listening socket; whichever wakes first takes a connection, so try until both did)."""
        by_worker: dict[str, http.client.HTTPConnection] = {}
        deadline = time.monotonic() + timeout
        while len(by_worker) < 2 and time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conns.append(conn)
            conn.request("GET", "/healthz")
            raw = conn.getresponse()
            raw.read()
            worker = raw.headers["X-Worker"]
            if worker in by_worker:
                conn.close()
            else:
                by_worker[worker] = conn
        assert len(by_worker) == 2, (
            f"both workers never answered:\n{self.log.read_text(errors='replace')[-3000:]}"
        )
        return list(by_worker.values())


@pytest.fixture(params=["redis", "database"])
def server(request, db, tmp_path) -> Iterator[Server]:
    """gunicorn, two workers (threads too, as the benchmarks run it), on a free loopback port."""
    (tmp_path / "signin_app.py").write_text(WRAPPER)
    environ = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "REDIS_URL",
            "MAIL_URL",
            "SECRET_KEY",
            "BASE_URL",
            "TRUSTED_PROXIES",
        )
    }
    port = free_port()
    environ.update(
        DATABASE_URL=db.url,
        SECRET_KEY=SECRET,
        BASE_URL=f"http://127.0.0.1:{port}",
        TRUSTED_PROXIES="1",
        MAIL_URL=f"file://{tmp_path / 'outbox'}",
        CAMPAIGNS_JOURNEYS=str(ROOT / "journeys"),
        CAMPAIGNS_TEMPLATES=str(ROOT / "templates"),
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        PYTHONDONTWRITEBYTECODE="1",  # importing web.py must leave nothing in the working tree
    )
    if request.param == "redis":
        environ["REDIS_URL"] = request.getfixturevalue("redis_url")
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "-k",
        "gthread",
        "--threads",
        "2",
        "--keep-alive",
        "60",
        "-b",
        f"127.0.0.1:{port}",
        "signin_app:app",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    running = Server(port, process, log)
    try:
        _wait_ready(port, process, log)
        yield running
    finally:
        for conn in running.conns:
            conn.close()
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a worker that hangs
            process.kill()
            process.wait()


def _wait_ready(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise AssertionError(f"gunicorn did not start:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def addresses(server) -> tuple[str, str]:
    """A stranger's and the owner's address, fresh for each run (the counts of an earlier
    test must not be found, in Redis or the database)."""
    stranger, owner = (
        f"198.51.100.{secrets.randbelow(254) + 1}",
        f"203.0.113.{secrets.randbelow(254) + 1}",
    )
    return stranger, owner


@pytest.fixture
def user(db) -> None:
    with db.session() as s, s.begin():
        add_user(s, EMAIL, PASSWORD, datetime.now(UTC))


def test_guesses_spread_over_both_workers_are_throttled_as_one(server, user, addresses):
    """Guesses go to worker 0, 1, 0, 1 ... as fast as they can. Counted per process, worker 1
    would check its 3rd, 4th and 5th at once; counted as one, after the first 5 overall every
    guess either waits its 2^k seconds or gets a 429, from either worker.

    The wait is measured at the client (sent and received times), where it can only look
    longer than the server's, so a slow machine cannot make this test fail wrongly."""
    stranger_at, owner_at = addresses
    conns = server.connection_on_each_worker()
    stranger = Browser(conns, stranger_at)
    form = {"csrf": stranger.csrf(0), "email": EMAIL, "password": "wrong horse battery"}
    checked: list[
        tuple[int, float, float]
    ] = []  # (worker, sent, received) of each guess whose password was checked
    statuses: list[int] = []
    refused_by: set[int] = set()
    for n in range(40):
        worker = n % 2
        sent = time.monotonic()
        response = stranger.request(worker, "POST", "/login", form)
        statuses.append(response.status)
        if response.status == 200:
            assert BAD_LOGIN in response.body
            checked.append((worker, sent, time.monotonic()))
            continue
        assert response.status == 429 and "Too many failed sign-ins" in response.body, response.body
        assert 1 <= int(response.headers["Retry-After"]) <= PAIR_RULE.delay(len(checked))
        refused_by.add(worker)
        if refused_by == {0, 1}:
            break
    assert statuses[:PAIR_FREE] == [200] * PAIR_FREE
    assert refused_by == {0, 1}, statuses  # both workers refused the stranger
    assert {worker for worker, _, _ in checked} == {0, 1}  # and both checked some of the guesses
    for k in range(
        PAIR_FREE, len(checked)
    ):  # the guess after the k-th came 2^(k-5) s after it, at least
        assert checked[k][2] - checked[k - 1][1] >= PAIR_RULE.delay(k), (k, statuses)
    owner = Browser(conns, owner_at)
    assert (
        owner.sign_in(1).status == 302
    )  # the owner, from their own address, never waits for the stranger
    assert owner.request(0, "GET", "/journeys").status == 200


def test_signing_out_in_one_worker_ends_a_copied_cookie_in_the_other(server, user, addresses):
    _, owner_at = addresses
    conns = server.connection_on_each_worker()
    laptop = Browser(conns, owner_at)
    assert laptop.sign_in(0).status == 302
    copy = Browser(conns, "192.0.2.200", cookie=laptop.cookie)
    assert copy.request(1, "GET", "/journeys").status == 200
    assert laptop.request(0, "POST", "/logout", {"csrf": laptop.csrf(0, "/journeys")}).status == 302
    for worker in (1, 0):
        ended = copy.request(worker, "GET", "/journeys")
        assert ended.status == 302 and ended.headers["Location"].startswith("/login")
    assert len(set(copy.seen)) == 2
