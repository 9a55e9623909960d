"""Benchmark: the open pixel and click redirect of the real app under gunicorn, against the
limit and against the usual approach, with the same gunicorn settings and load in one run.

Three apps, each under ``gunicorn -w 2 -k gthread --threads 4``:
  - real:  ``web:app`` with ``REDIS_URL`` set: each hit is XADDed to the Redis stream before
           the response; nothing touches the database on the request path;
  - limit: a bare WSGI app answering with the same 43-byte GIF and a bare 302
           (``bench/track_apps.py``): what gunicorn and HTTP cost here;
  - usual: a Flask endpoint that verifies the token and INSERTs the hit into a plain table
           with SQLAlchemy, one commit per request (``bench/track_apps.py``).
The load generator is ``--processes`` processes, each driving ``--connections`` persistent
HTTP/1.1 connections (raw sockets and a selector, so it spends little of the two cores the
servers need), rotating over the tracking URLs of ``--messages`` sent messages with a
browser's user agent. Each app is warmed up first; for clicks every connection also requests
every message once, so that each worker's per-message link cache is full, as in steady state.
Then each endpoint is measured on each app in turn, ``--rounds`` times interleaved, so that a
noisy neighbour hurts all three alike. The connections of every load are spread evenly over
the gunicorn workers (left to chance, they often land 6 to 2 or 8 to 0 and the load measures
one worker, not two; see :func:`connect`).

Prints hits/s, p50 and p99 latency and the app's worker CPU per hit (a figure the noise of
other processes hardly moves) per endpoint and app; the ratios real/limit (target >= 0.5) and
real/usual (target >= 2) and the real app's p99 (target < 20 ms); then runs the flusher
(``RedisHitLog.flush``, on the stream the app wrote to) and checks that the database holds
exactly the hits sent to the real app as open/click events, and the usual approach's table
exactly its hits; and the peak RSS (VmHWM) of the real app's gunicorn workers.

Usage: python bench/track.py [--seconds 3 | --requests 20000] [--rounds 4] [--processes 2]
[--connections 4]
       [--messages 1000] [--warmup 500] [--database-url URL] [--redis-url URL]
       (default database: a throw-away PostgreSQL database on the local server; the Redis
       database is flushed first)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-0123456789"
BASE_URL = "https://t.example.com"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
CLIENT_IP = "81.2.69.142"
"""Sent as X-Forwarded-For as a load balancer would; the app reads the socket's address
(127.0.0.1), which like this one is not in Apple's networks."""

GUNICORN = ["-w", "2", "-k", "gthread", "--threads", "4"]
APPS = {"limit": "bench.track_apps:limit", "real": "web:app", "usual": "bench.track_apps:usual()"}
ENDPOINTS = {"pixel": 200, "click": 302}  # endpoint -> expected status


# ---------------------------------------------------------------------------- the load


def request_bytes(path: str, endpoint: str) -> bytes:
    accept = (
        "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
        if endpoint == "pixel"
        else "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    )
    host = BASE_URL.split("://", 1)[1]
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: {accept}\r\n"
        "Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, "
        f"br\r\nX-Forwarded-For: {CLIENT_IP}\r\n\r\n"
    ).encode("ascii")


def parse_head(head: bytes) -> tuple[int, int]:
    """The status and Content-Length of a response's head (every app here sends one)."""
    lines = head.split(b"\r\n")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(lines[0][9:12]), int(value)
    raise RuntimeError(f"response without Content-Length: {head[:300]!r}")


class _Conn:
    """One keep-alive connection: the request in flight and the bytes of its response so far."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buffer = bytearray()
        self.length: int | None = None  # header + body bytes of the response, once known
        self.status = 0
        self.sent = 0.0
        self.swept = 0  # sweep mode: requests this connection has sent


def accepted_by(
    sock: socket.socket, port: int, workers: list[int], timeout: float = 1.0
) -> int | None:
    """The gunicorn worker that accepted this connection, found in /proc (the server side's
    socket inode among the worker's file descriptors); None if none did within ``timeout``."""
    server, client = f"0100007F:{port:04X}", f"0100007F:{sock.getsockname()[1]:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        inode = next((row[9] for row in rows if row[1] == server and row[2] == client), "0")
        for pid in workers if inode != "0" else ():
            try:
                if any(
                    os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]"
                    for fd in os.listdir(f"/proc/{pid}/fd")
                ):
                    return pid
            except OSError:  # a descriptor closed while we looked
                continue
        time.sleep(0.001)
    return None


def connect(port: int, count: int, workers: list[int], placed: Any, cap: int) -> list[_Conn]:
    """``count`` connections, none on a worker that already holds ``cap`` of this load's.

    gunicorn's workers share one listening socket and whichever wakes first accepts, so left
    alone, the keep-alive connections of a load often land 6 to 2 or 8 to 0 on two workers,
    and the load then measures one worker, not two (throughput halves). A connection on a
    full worker is closed and made again. ``placed`` (shared by the load processes) counts
    each worker's connections; one whose worker was not found is kept and not counted, so the
    printed spread shows it.
    """
    conns: list[_Conn] = []
    for _ in range(count * 20):
        if len(conns) == count:
            break
        conn = _Conn(port)
        pid = accepted_by(conn.sock, port, workers)
        with placed.get_lock():
            slot = (
                workers.index(pid) if pid in workers else None
            )  # None: not found, kept and not counted
            if slot is None or placed[slot] < cap:
                if slot is not None:
                    placed[slot] += 1
                conns.append(conn)
                continue
        conn.sock.close()
    while len(conns) < count:  # could not balance them (should not happen): take any, not counted
        conns.append(_Conn(port))
    return conns


def drive(
    port: int,
    requests: list[bytes],
    expected: int,
    connections: int,
    offset: int,
    seconds: float | None,
    quota: int | None,
    sweep: bool,
    workers: list[int],
    placed: Any,
    cap: int,
    barrier: Any,
    results: Any,
) -> None:
    """One load process: keep ``connections`` requests in flight until the deadline (or the
    quota), timing each from its send to the last byte of its response. With ``sweep`` each
    connection sends every request once instead, so that whichever worker it landed on has
    seen every message."""
    selector = selectors.DefaultSelector()
    conns = connect(port, connections, workers, placed, cap)
    latencies = array("d")
    errors = 0
    issued = 0
    position = offset
    barrier.wait()
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else float("inf")

    def send(conn: _Conn) -> bool:
        nonlocal issued, position
        if sweep:
            if conn.swept >= len(requests):
                return False
            conn.swept += 1
        elif (quota is not None and issued >= quota) or time.perf_counter() >= deadline:
            return False
        request = requests[position % len(requests)]
        position += 1
        issued += 1
        conn.buffer.clear()
        conn.length = None
        conn.sent = time.perf_counter()
        conn.sock.sendall(request)  # a few hundred bytes: the send buffer always takes them
        return True

    busy = 0
    for conn in conns:
        if send(conn):
            selector.register(conn.sock, selectors.EVENT_READ, conn)
            busy += 1
    while busy:
        for key, _ in selector.select(10.0):
            conn = key.data
            data = conn.sock.recv(65536)
            if not data:  # the server closed the connection: count an error, reconnect
                errors += 1
                selector.unregister(conn.sock)
                conn.sock.close()
                busy -= 1
                fresh = _Conn(port)
                fresh.swept = conn.swept
                conns[conns.index(conn)] = fresh
                if send(fresh):
                    selector.register(fresh.sock, selectors.EVENT_READ, fresh)
                    busy += 1
                continue
            conn.buffer += data
            if conn.length is None:
                end = conn.buffer.find(b"\r\n\r\n")
                if end < 0:
                    continue
                conn.status, body = parse_head(bytes(conn.buffer[:end]))
                conn.length = end + 4 + body
            if len(conn.buffer) < conn.length:
                continue
            if conn.status == expected:
                latencies.append(time.perf_counter() - conn.sent)
            else:
                errors += 1
            if not send(conn):
                selector.unregister(conn.sock)
                busy -= 1
    finished = time.perf_counter()
    for conn in conns:
        conn.sock.close()
    results.put((started, finished, latencies.tobytes(), errors))


@dataclass
class Load:
    """What the load processes measured, merged."""

    hits: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # CPU seconds the app's gunicorn workers spent meanwhile
    spread: tuple[int, ...] = ()  # connections on each worker
    latencies: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]

    def add(self, other: Load) -> None:
        self.hits += other.hits
        self.errors += other.errors
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.latencies.extend(other.latencies)

    @property
    def cpu_per_hit(self) -> float:
        """Microseconds of worker CPU per hit: what a hit costs the app, whatever else ran."""
        return self.cpu / self.hits * 1e6 if self.hits else float("nan")

    @property
    def rate(self) -> float:
        return self.hits / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency in ms at quantile ``q`` (nearest rank)."""
        ordered = sorted(self.latencies)
        return (
            ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
            if ordered
            else float("nan")
        )


def run_load(
    port: int,
    requests: list[bytes],
    expected: int,
    *,
    workers: list[int],
    processes: int,
    connections: int,
    seconds: float | None = None,
    total: int | None = None,
    sweep: bool = False,
) -> Load:
    """Drive the app on ``port`` (served by ``workers``) from ``processes`` processes for
    ``seconds`` (or ``total`` requests; or with ``sweep``, every request once on each
    connection), with the connections spread evenly over the workers."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes)
    results = context.Queue()
    placed = context.Array("i", len(workers))
    cap = -(-processes * connections // max(1, len(workers)))
    loaders = []
    for i in range(processes):
        quota = None if total is None else total // processes + (1 if i < total % processes else 0)
        offset = i * len(requests) // processes
        loaders.append(
            context.Process(
                target=drive,
                args=(
                    port,
                    requests,
                    expected,
                    connections,
                    offset,
                    seconds,
                    quota,
                    sweep,
                    workers,
                    placed,
                    cap,
                    barrier,
                    results,
                ),
                daemon=True,
            )
        )
    for loader in loaders:
        loader.start()
    parts = [results.get(timeout=(seconds or 0) + 300) for _ in loaders]
    for loader in loaders:
        loader.join()
    load = Load(
        errors=sum(p[3] for p in parts),
        seconds=max(p[1] for p in parts) - min(p[0] for p in parts),
        spread=tuple(placed),
    )
    for part in parts:
        load.latencies.frombytes(part[2])
    load.hits = len(load.latencies)
    return load


# ---------------------------------------------------------------------------- the servers


class Server:
    """One gunicorn, started from the repository root with the shared settings."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log = open(folder / f"{name}.log", "w+b")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            *GUNICORN,
            "-b",
            f"127.0.0.1:{self.port}",
            APPS[name],
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.sent = 0  # successful hits sent, warm-up included
        self.spreads: set[tuple[int, ...]] = set()  # connections per worker, in each load

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until it answers anything (``/healthz``: a page that records no hit)."""
        import http.client

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")

    def measure(self, requests: list[bytes], expected: int, **load: Any) -> Load:
        """One load, with the CPU time the app's workers spent on it."""
        pids = self.workers()
        before = cpu_seconds(pids)
        result = run_load(self.port, requests, expected, workers=pids, **load)
        result.cpu = sum(cpu_seconds(pids)) - sum(before)
        self.sent += result.hits
        self.spreads.add(result.spread)
        return result

    def workers(self) -> list[int]:
        try:
            return [
                int(pid)
                for pid in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
                .read_text()
                .split()
            ]
        except OSError:
            return []

    def tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: list[int]) -> list[float]:
    """Each process's CPU time so far (user + system), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    spent = []
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            spent.append((int(fields[11]) + int(fields[12])) / tick)
        except OSError:
            spent.append(0.0)
    return spent


def peak_rss_mb(pids: list[int]) -> list[float]:
    """Each process's peak resident set (VmHWM) in MB."""
    peaks = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peaks


# ---------------------------------------------------------------------------- the run


def seed(sessions: Any, n: int) -> list[int]:
    """``n`` contacts with one sent message each (sent an hour ago, two links); their ids."""
    from decimal import Decimal

    from sqlalchemy import insert, select

    from campaigns.store.enums import MessageStatus
    from campaigns.store.models import Account, Contact, Message

    sent_at = datetime.now(UTC) - timedelta(hours=1)
    with sessions() as s, s.begin():
        account = Account(external_id="A", name="A", arr=Decimal(1))
        s.add(account)
        s.flush()
        s.execute(
            insert(Contact),
            [
                {
                    "account_id": account.id,
                    "email": f"r{i}@example.com",
                    "name": f"R {i}",
                    "locale": "en",
                    "time_zone": "UTC",
                    "tags": [],
                    "attributes": {},
                }
                for i in range(n)
            ],
        )
        contacts = s.scalars(select(Contact.id).order_by(Contact.id)).all()
        links = [
            "https://www.example.com/guide/{}?utm_source=email",
            "https://www.example.com/pricing",
        ]
        common = {
            "step_id": "hello",
            "status": MessageStatus.SENT,
            "subject": "Tips",
            "template": "onboarding_tips",
            "locale": "en",
            "sent_at": sent_at,
        }
        s.execute(
            insert(Message),
            [
                {
                    **common,
                    "contact_id": c,
                    "to_address": f"r{i}@example.com",
                    "links": [link.format(i) for link in links],
                }
                for i, c in enumerate(contacts)
            ],
        )
        return list(s.scalars(select(Message.id).order_by(Message.id)).all())


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of each measurement (default 3)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="a fixed number of requests per measurement instead of --seconds",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="measurements of each endpoint on each app, interleaved (default 4: the ratios of "
        "shorter runs scatter by about ±0.05 on this 2-core machine)",
    )
    parser.add_argument("--processes", type=int, default=2, help="load processes (default 2)")
    parser.add_argument(
        "--connections",
        type=int,
        default=4,
        help="keep-alive connections per load process (default 4)",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=1_000,
        help="sent messages the requests rotate over (default 1000)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="requests per endpoint and app before measuring (default 500)",
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="a Redis database it may empty (default: $TEST_REDIS_URL, as the tests')",
    )
    args = parser.parse_args()
    seconds = None if args.requests else args.seconds
    signal.signal(
        signal.SIGTERM, lambda *_: sys.exit(1)
    )  # still stop the servers and drop the database

    from redis import Redis
    from sqlalchemy import func, select, text

    from bench.track_apps import CREATE_HITS_TABLE, HITS_TABLE
    from campaigns.store.db import make_engine, make_sessionmaker, migrate
    from campaigns.store.enums import EventKind
    from campaigns.store.models import Event
    from campaigns.tracking.hitlog import STREAM, RedisHitLog
    from campaigns.tracking.tokens import Tokens

    admin = None
    database_url = args.database_url
    if database_url is None:
        name = f"campaigns_bench_{uuid.uuid4().hex[:6]}"
        admin = make_engine(
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    database = make_engine(database_url)
    redis = Redis.from_url(args.redis_url)
    servers: dict[str, Server] = {}
    folder = tempfile.TemporaryDirectory()
    try:
        migrate(database)
        with database.begin() as conn:
            conn.execute(text(CREATE_HITS_TABLE))
        sessions = make_sessionmaker(database)
        message_ids = seed(sessions, args.messages)
        tokens = Tokens(SECRET, BASE_URL)
        paths = {
            "pixel": [tokens.open_url(m) for m in message_ids],
            "click": [tokens.click_url(m, 0) for m in message_ids],
        }
        requests = {
            endpoint: [request_bytes(url.removeprefix(BASE_URL), endpoint) for url in urls]
            for endpoint, urls in paths.items()
        }
        redis.flushdb()
        print(
            f"seeded {len(message_ids):,} sent messages ({database.dialect.name}); load: "
            f"{args.processes} processes x {args.connections} keep-alive connections"
        )

        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url,
            "SECRET_KEY": SECRET,
            "BASE_URL": BASE_URL,
        }
        env.pop("PYTHONPATH", None)
        for name in APPS:
            servers[name] = Server(name, env, Path(folder.name))
        for server in servers.values():
            server.wait_ready()
        print(
            f"gunicorn {' '.join(GUNICORN)}: "
            f"{', '.join(f'{name} on :{s.port}' for name, s in servers.items())}"
        )

        load_args = {"processes": args.processes, "connections": args.connections}
        for server in servers.values():
            for endpoint, expected in ENDPOINTS.items():
                warm = [
                    server.measure(requests[endpoint], expected, total=args.warmup, **load_args)
                ]
                if endpoint == "click":
                    # Every connection sweeps every message, so that each worker's link cache holds
                    # them all.
                    warm.append(
                        server.measure(requests[endpoint], expected, sweep=True, **load_args)
                    )
                if any(w.errors for w in warm):
                    raise RuntimeError(
                        f"{server.name} {endpoint}: errors while warming up:\n{server.tail()}"
                    )

        results = {(endpoint, name): Load() for endpoint in ENDPOINTS for name in APPS}
        order = list(APPS)
        for round_ in range(args.rounds):
            for endpoint, expected in ENDPOINTS.items():
                for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                    results[endpoint, name].add(
                        servers[name].measure(
                            requests[endpoint],
                            expected,
                            seconds=seconds,
                            total=args.requests,
                            **load_args,
                        )
                    )
        rss = peak_rss_mb(servers["real"].workers())
        for server in servers.values():
            server.stop()

        print()
        print(
            f"{'endpoint':<8} {'app':<6} {'hits/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'hits':>8} "
            f"{'errors':>6} {'worker CPU/hit':>15}"
        )
        for (endpoint, name), load in results.items():
            print(
                f"{endpoint:<8} {name:<6} {load.rate:>8,.0f} {load.percentile(0.50):>7.2f} "
                f"{load.percentile(0.99):>7.2f} {load.hits:>8,} {load.errors:>6} "
                f"{load.cpu_per_hit:>12.0f} us"
            )
        spreads = sorted(
            {"+".join(map(str, spread)) for s in servers.values() for spread in s.spreads}
        )
        print(f"keep-alive connections per worker: {' or '.join(spreads)}")
        print()
        for endpoint in ENDPOINTS:
            real, limit, usual = (results[endpoint, name] for name in ("real", "limit", "usual"))
            ratio = real.rate / limit.rate
            print(
                f"{endpoint}: real / limit {ratio:.2f} (target >= 0.5) {verdict(ratio >= 0.5)}; "
                f"by worker CPU per hit {limit.cpu_per_hit / real.cpu_per_hit:.2f}"
            )
            times = real.rate / usual.rate
            print(f"{endpoint}: real / usual {times:.2f} (target >= 2) {verdict(times >= 2)}")
            p99 = real.percentile(0.99)
            print(f"{endpoint}: real p99 {p99:.2f} ms (target < 20 ms) {verdict(p99 < 20)}")

        print()
        sent = servers["real"].sent
        waiting = int(redis.xlen(STREAM))
        started = time.perf_counter()
        flushed = RedisHitLog(redis).flush(sessions)
        flush_seconds = time.perf_counter() - started
        with sessions() as s:
            events = s.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.kind.in_([EventKind.OPEN, EventKind.CLICK]))
            )
            rows = s.scalar(text(f"SELECT count(*) FROM {HITS_TABLE}"))
        print(
            f"real: sent {sent:,} hits, {waiting:,} in the stream; the flusher wrote "
            f"{flushed.written:,} in {flush_seconds:.1f} s "
            f"({flushed.written / flush_seconds:,.0f}/s); events: {events:,}"
        )
        print(
            f"real: sent {sent:,} hits, flushed {events:,} events: "
            f"{'exact' if events == sent else f'MISMATCH ({events - sent:+,})'} "
            f"{verdict(events == sent)}"
        )
        usual_sent = servers["usual"].sent
        print(
            f"usual: sent {usual_sent:,} hits, {HITS_TABLE} holds {rows:,} rows: "
            f"{'exact' if rows == usual_sent else f'MISMATCH ({rows - usual_sent:+,})'} "
            f"{verdict(rows == usual_sent)}"
        )
        if rss:
            print(
                "peak RSS of the real app's gunicorn workers: "
                f"{', '.join(f'{mb:.0f} MB' for mb in rss)}"
            )
    finally:
        for server in servers.values():
            if not server.log.closed:
                server.stop()
        redis.delete(STREAM)
        database.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(
                    text(f'DROP DATABASE IF EXISTS "{database.url.database}" WITH (FORCE)')
                )
        folder.cleanup()


if __name__ == "__main__":
    main()
