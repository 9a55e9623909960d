"""Recording what recipients do, at the speed of the request path.

A tracking request (open pixel, click, answer, unsubscribe) only verifies its token and
appends a :class:`Hit` to a log; it never opens a database transaction. The log is a Redis
stream (``XADD``: the hit is in Redis before the response goes out). A flusher reads the
stream as a consumer group in batches, classifies the hits (human, machine or unknown; see
:mod:`campaigns.tracking.classify`), writes them as events in one transaction, wakes the journeys
waiting on them, and only then acknowledges and deletes the entries.

Nothing is lost when a process restarts: an entry that a flusher read but did not
acknowledge stays pending in the group, and the next flusher claims it (``XAUTOCLAIM``)
after :data:`CLAIM_IDLE`. Nothing counts twice: every event written from a hit carries
``dedupe_key = "hit:<stream entry id>"`` (unique in the database), so re-flushing an entry
whose transaction committed just before a crash inserts nothing.

Without Redis (``campaigns run`` on one machine, tests) :class:`DirectHitLog` flushes each
hit at once, in its own transaction: the same code, one hit per batch.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from campaigns.insight import stats
from campaigns.store.models import Channel, Classification, Contact, Event, EventKind, Message
from campaigns.tracking.classify import HitView, Verdict, classify_hits
from campaigns.tracking.events import wake

log = logging.getLogger("campaigns.hits")

STREAM = "campaigns:hits"
"""The Redis stream of hits not yet written to the database."""

GROUP = "flusher"
"""The consumer group the flushers read the stream in."""

BATCH = 2_000
"""Hits a flusher reads and writes per transaction."""

CLAIM_IDLE = timedelta(seconds=30)
"""A hit read by a flusher that has not acknowledged it for this long is taken over."""

LOOKBACK = timedelta(minutes=2)
"""Earlier hits on the same message considered when classifying new ones (bursts and trap
clicks happen within seconds)."""

KINDS = ("open", "click", "trap", "answer", "unsubscribe", "comment")

_EVENT_KIND = {
    "open": EventKind.OPEN,
    "click": EventKind.CLICK,
    "trap": EventKind.CLICK,
    "unsubscribe": EventKind.UNSUBSCRIBE,
    "comment": EventKind.COMMENT,
}


@dataclass(frozen=True)
class Hit:
    """One request on a tracking URL, as the request path saw it."""

    kind: str  # one of KINDS
    message: int  # Message row id, from the verified token
    at: float  # unix time the request arrived
    method: str = "GET"
    user_agent: str = ""
    ip: str = ""
    link: int | None = None  # clicks: index into the message's links
    value: str | None = None  # answers: the score or yes/no; comments: the text

    def fields(self) -> dict[str, str]:
        """The stream entry: short keys, strings only."""
        entry = {
            "k": self.kind,
            "m": str(self.message),
            "t": f"{self.at:.3f}",
            "h": self.method,
            "u": self.user_agent[:512],
            "i": self.ip[:64],
        }
        if self.link is not None:
            entry["l"] = str(self.link)
        if self.value is not None:
            entry["v"] = self.value
        return entry

    @classmethod
    def from_fields(cls, entry: dict[bytes, bytes] | dict[str, str]) -> Hit | None:
        """The hit in a stream entry; None for an entry this version cannot read."""
        data = {
            (k.decode() if isinstance(k, bytes) else k): (
                v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            )
            for k, v in entry.items()
        }
        try:
            kind = data["k"]
            if kind not in KINDS:
                return None
            return cls(
                kind=kind, message=int(data["m"]), at=float(data["t"]), method=data.get("h", "GET"), user_agent=data.get("u", ""),
                ip=data.get("i", ""), link=int(data["l"]) if "l" in data else None, value=data.get("v"),
            )  # fmt: skip
        except (KeyError, ValueError):
            return None


class HitLog(Protocol):
    def record(self, hit: Hit) -> None: ...


@dataclass
class FlushResult:
    read: int = 0
    written: int = 0
    duplicates: int = 0
    dropped: int = 0  # unreadable entries, or hits on messages that no longer exist
    reclassified: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: FlushResult) -> None:
        self.read += other.read
        self.written += other.written
        self.duplicates += other.duplicates
        self.dropped += other.dropped
        self.reclassified += other.reclassified
        for key, count in other.by_class.items():
            self.by_class[key] += count


# ---------------------------------------------------------------------------- writing


def write_hits(session: Session, hits: Sequence[tuple[str, Hit]], now: datetime) -> FlushResult:
    """Classify ``hits`` (each with its unique id) and store them as events; the caller
    commits. Earlier hits on the same messages are classified again with the new ones."""
    result = FlushResult(read=len(hits))
    if not hits:
        return result
    message_ids = sorted({hit.message for _, hit in hits})
    # Mail to account owners is not tracked, and its hits (from notices sent before it was
    # its own channel) count for no one: an unsubscribe there must not unsubscribe the customer.
    messages = {
        m.id: m
        for m in session.scalars(
            select(Message).where(Message.id.in_(message_ids), Message.channel != Channel.OWNER)
        )
    }
    account_of = (
        dict(
            session.execute(
                select(Contact.id, Contact.account_id).where(
                    Contact.id.in_({m.contact_id for m in messages.values()})
                )
            ).all()
        )
        if messages
        else {}
    )
    earliest = min(datetime.fromtimestamp(hit.at, UTC) for _, hit in hits) - LOOKBACK
    prior = _prior_hits(session, hits, list(messages), earliest) if messages else {}
    fresh: dict[int, list[tuple[str, Hit]]] = defaultdict(list)
    for hit_id, hit in hits:
        if hit.message not in messages or (
            hit.kind == "click" and not _valid_link(messages[hit.message], hit.link)
        ):
            result.dropped += 1
            continue
        fresh[hit.message].append((hit_id, hit))
    rows: list[dict[str, Any]] = []
    reclassified: list[tuple[PriorHit, str]] = []
    changed: list[dict[str, Any]] = []
    woken: set[int] = set()
    unsubscribed: set[int] = set()
    for message_id, new in fresh.items():
        message = messages[message_id]
        old = prior.get(message_id, [])
        views = [_view_of_event(e) for e in old] + [_view_of_hit(h) for _, h in new]
        verdicts = classify_hits(views, sent_at=message.sent_at)
        for event, verdict in zip(old, verdicts[: len(old)], strict=True):
            if (event.classification, event.reason) != (
                verdict.classification,
                verdict.reason[:255],
            ):
                if event.classification != verdict.classification:
                    reclassified.append((event, event.classification))
                event.classification, event.reason = verdict.classification, verdict.reason[:255]
                changed.append(
                    {"id": event.id, "classification": event.classification, "reason": event.reason}
                )
                result.reclassified += 1
        for (hit_id, hit), verdict in zip(new, verdicts[len(old) :], strict=True):
            rows.append(
                _event_row(hit_id, hit, verdict, message, account_of.get(message.contact_id), now)
            )
            if hit.kind == "unsubscribe":
                # Always honoured: the one-click POST (RFC 8058) often comes from the mailbox
                # provider's servers on the person's behalf, and scanners do not POST.
                unsubscribed.add(message.contact_id)
            if verdict.classification != Classification.MACHINE:
                woken.add(message.contact_id)
    if changed:
        session.execute(update(Event), changed)  # ORM bulk UPDATE by primary key: one executemany
    inserted: list[dict[str, Any]] = []
    if rows:
        keys = _insert_events(session, rows)
        inserted = [row for row in rows if row["dedupe_key"] in keys]
        result.written += len(inserted)
        result.duplicates += len(rows) - len(inserted)
        for row in inserted:
            result.by_class[row["classification"]] += 1
    if inserted or reclassified:
        stats.add(session, stats.count_hits(session, inserted, reclassified, messages, now))
    if unsubscribed:
        session.execute(
            update(Contact).where(Contact.id.in_(unsubscribed)).values(subscribed=False)
        )
    if woken:
        wake(session, now, kind=EventKind.CLICK, contact_ids=sorted(woken))
    return result


def _valid_link(message: Message, link: int | None) -> bool:
    return link is not None and 0 <= link < len(message.links or [])


def _view_of_hit(hit: Hit) -> HitView:
    return HitView(
        kind="answer" if hit.kind == "comment" else hit.kind,
        at=datetime.fromtimestamp(hit.at, UTC),
        method=hit.method,
        user_agent=hit.user_agent,
        ip=hit.ip,
        link=hit.link,
    )


@dataclass
class PriorHit:
    """An earlier hit of a message, as stored: what classification needs, and what may change."""

    id: int
    message_id: int
    kind: str
    occurred_at: datetime
    user_agent: str
    data: dict[str, Any]
    classification: str
    reason: str | None


def _prior_hits(
    session: Session, hits: Sequence[tuple[str, Hit]], message_ids: list[int], earliest: datetime
) -> dict[int, list[PriorHit]]:
    """The stored hits of these messages within the lookback, read as plain rows. Opens are
    needed only for messages with new clicks (a click burst or a trap may turn them into a
    machine's); new opens are judged against earlier clicks alone."""
    clicked = sorted(
        {hit.message for _, hit in hits if hit.kind in ("click", "trap")} & set(message_ids)
    )
    kinds = Event.kind == EventKind.CLICK
    if clicked:
        kinds = or_(kinds, and_(Event.kind == EventKind.OPEN, Event.message_id.in_(clicked)))
    columns = (
        Event.id,
        Event.message_id,
        Event.kind,
        Event.occurred_at,
        Event.user_agent,
        Event.data,
        Event.classification,
        Event.reason,
    )
    prior: dict[int, list[PriorHit]] = defaultdict(list)
    query = (
        select(*columns)
        .where(
            Event.message_id.in_(message_ids),
            kinds,
            Event.occurred_at >= earliest,
            Event.dedupe_key.is_not(None),
        )
        .order_by(Event.id)
    )
    for row in session.execute(query):
        prior[row.message_id].append(
            PriorHit(
                row.id,
                row.message_id,
                row.kind,
                row.occurred_at,
                row.user_agent or "",
                row.data or {},
                row.classification,
                row.reason,
            )
        )
    return prior


def _view_of_event(event: PriorHit) -> HitView:
    data = event.data
    kind = "trap" if data.get("trap") else event.kind
    return HitView(
        kind=str(kind),
        at=event.occurred_at,
        method=str(data.get("method", "GET")),
        user_agent=event.user_agent,
        ip=str(data.get("ip", "")),
        link=data.get("link"),
    )


def _event_row(
    hit_id: str, hit: Hit, verdict: Verdict, message: Message, account_id: int | None, now: datetime
) -> dict[str, Any]:
    kind: str = _EVENT_KIND.get(hit.kind, EventKind.ANSWER)
    value = hit.value
    if hit.kind == "answer":
        kind = EventKind.RSVP if value in ("yes", "no") else EventKind.ANSWER
    data: dict[str, Any] = {"method": hit.method, "ip": _network(hit.ip)}
    if hit.link is not None:
        data["link"] = hit.link
    if hit.kind == "trap":
        data["trap"] = True
    return {
        "kind": kind, "name": None, "message_id": message.id, "contact_id": message.contact_id, "account_id": account_id,
        "enrollment_id": message.enrollment_id, "journey_id": message.journey_id, "step_id": message.step_id,
        "value": value[:2048] if value else None, "classification": verdict.classification, "reason": verdict.reason[:255],
        "user_agent": hit.user_agent[:512] or None, "dedupe_key": f"hit:{hit_id}", "data": data,
        "occurred_at": datetime.fromtimestamp(hit.at, UTC), "recorded_at": now,
    }  # fmt: skip


def _network(ip: str) -> str:
    """The requester's network, not the address: /24 for IPv4, /48 for IPv6 (enough to tell a
    proxy's or a scanner's network, without keeping a person's address)."""
    import ipaddress

    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert, skipping rows whose dedupe key is already stored; the keys that went in."""
    if session.get_bind().dialect.name == "postgresql":
        return _insert_events_unnest(session, rows)
    statement = (
        sqlite_insert(Event)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Event.dedupe_key)
    )
    keys: set[str] = set()
    for start in range(0, len(rows), 1_000):
        keys.update(
            k for k in session.execute(statement, rows[start : start + 1_000]).scalars() if k
        )
    return keys


_UNNEST_COLUMNS = (
    ("kind", "varchar"), ("name", "varchar"), ("message_id", "bigint"), ("contact_id", "bigint"), ("account_id", "bigint"),
    ("enrollment_id", "bigint"), ("journey_id", "bigint"), ("step_id", "varchar"), ("value", "varchar"), ("classification", "varchar"),
    ("reason", "varchar"), ("user_agent", "varchar"), ("dedupe_key", "varchar"), ("data", "jsonb"), ("occurred_at", "timestamptz"),
    ("recorded_at", "timestamptz"),
)  # fmt: skip
_UNNEST_INSERT = text(
    f"INSERT INTO events ({', '.join(c for c, _ in _UNNEST_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in _UNNEST_COLUMNS)}) "
    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key"
)
"""PostgreSQL: a whole batch as one array per column. One short statement, whatever the batch
size: the server plans it once and the driver does not rewrite a statement of thousands of
rows (which cost more than the insert itself, as ``INSERT ... VALUES`` for each batch)."""


def _insert_events_unnest(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    params: dict[str, list[Any]] = {column: [] for column, _ in _UNNEST_COLUMNS}
    for row in rows:
        for column, kind in _UNNEST_COLUMNS:
            value = row[column]
            if kind == "jsonb":
                value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            elif kind == "timestamptz" and value is not None:
                value = value.astimezone(UTC)
            params[column].append(value)
    return {k for k in session.execute(_UNNEST_INSERT, params).scalars() if k}


# ---------------------------------------------------------------------------- the logs


class DirectHitLog:
    """No Redis: each hit is written at once in its own transaction (single-machine use)."""

    def __init__(self, sessions: sessionmaker[Session], now: Any = None) -> None:
        self.sessions = sessions
        self._now = now or (lambda: datetime.now(UTC))
        self._counter = 0

    def record(self, hit: Hit) -> None:
        self._counter += 1
        hit_id = f"d{time.time_ns()}-{os.getpid()}-{self._counter}"
        with self.sessions() as session, session.begin():
            write_hits(session, [(hit_id, hit)], self._now())


class RedisHitLog:
    """Hits appended to a Redis stream; :meth:`flush` writes them to the database."""

    def __init__(
        self, redis: Any, stream: str = STREAM, group: str = GROUP, consumer: str | None = None
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}"
        self._group_ready = False
        self._local = threading.local()
        stream_name = stream.encode()
        self._xadd = b"$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n" % (len(stream_name), stream_name)

    def record(self, hit: Hit) -> None:
        """``XADD`` the hit and wait for Redis to confirm it. Each thread keeps one connection
        of the pool for itself (no pool round trip per hit: this is the pixel's hot path)."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        command = _resp(self._xadd, hit.fields())
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.redis.connection_pool.get_connection()
        try:
            connection.send_packed_command([command])
            connection.read_response()
        except (RedisConnectionError, RedisTimeoutError):
            connection.disconnect()  # one retry on a fresh socket (Redis restarted, idle timeout)
            connection.send_packed_command([command])
            connection.read_response()

    def record_many(self, hits: Iterable[Hit]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for hit in hits:
            pipe.xadd(self.stream, hit.fields())
        pipe.execute()

    def pending(self) -> int:
        """Hits in the stream not yet written (read or not)."""
        return int(self.redis.xlen(self.stream))

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: it exists
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def flush(
        self,
        sessions: sessionmaker[Session],
        now: Any = None,
        *,
        batch: int = BATCH,
        block_ms: int | None = None,
        claim_idle: timedelta = CLAIM_IDLE,
    ) -> FlushResult:
        """Write everything in the stream (or up to one batch when blocking); returns counts."""
        clock = now or (lambda: datetime.now(UTC))
        self._ensure_group()
        total = FlushResult()
        # Hits a dead flusher read but never acknowledged come first.
        claimed = self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=int(claim_idle.total_seconds() * 1000),
            start_id="0-0",
            count=batch,
        )
        entries = claimed[1] if claimed else []
        if entries:
            total.add(self._write(sessions, entries, clock()))
        # Then this consumer's own pending entries (a restart under the same name), then new ones.
        for start in ("0", ">"):
            while True:
                response = self.redis.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: start},
                    count=batch,
                    block=block_ms if start == ">" else None,
                )
                entries = response[0][1] if response else []
                entries = [(entry_id, fields) for entry_id, fields in entries if fields]
                if not entries:
                    break
                total.add(self._write(sessions, entries, clock()))
                if block_ms is not None:
                    return total
        return total

    def _write(
        self, sessions: sessionmaker[Session], entries: list[tuple[Any, Any]], now: datetime
    ) -> FlushResult:
        hits: list[tuple[str, Hit]] = []
        ids = []
        unreadable = 0
        for entry_id, fields in entries:
            key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            ids.append(entry_id)
            hit = Hit.from_fields(fields) if fields else None
            if hit is None:
                unreadable += 1
                continue
            hits.append((key, hit))
        with sessions() as session, session.begin():
            result = write_hits(session, hits, now)
        result.read += unreadable
        result.dropped += unreadable
        # Only after the commit: acknowledged entries are gone for good.
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()
        return result


def _resp(head: bytes, fields: dict[str, str]) -> bytes:
    """``XADD stream * k v ...`` in Redis's wire format (RESP), ``head`` holding the first three
    arguments already encoded: the one command the request path sends, packed without the
    general-purpose machinery."""
    parts = [b"*%d\r\n" % (3 + 2 * len(fields)), head]
    for key, value in fields.items():
        for item in (key, value):
            data = item.encode("utf-8", "surrogatepass")
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def run_flusher(
    log_: RedisHitLog, sessions: sessionmaker[Session], *, block_ms: int = 1_000, stop: Any = None
) -> None:
    """Flush forever (until ``stop()`` is true): the flusher process beside the worker.

    A failed flush acknowledges nothing, so its hits are read again. An outage (the database
    or Redis away) is logged in one line when it starts and when it ends; anything else with
    its traceback."""
    from campaigns.outages import Backoff, first_line, is_outage

    backoff = Backoff()
    down = False
    while stop is None or not stop():
        backoff.started()
        try:
            log_.flush(sessions, block_ms=block_ms)
        except Exception as exc:
            if not is_outage(exc):
                log.exception("flushing hits failed; trying again")
            elif not down:
                log.warning(
                    "flushing hits: %s unreachable (%s); trying again with growing waits",
                    "Redis" if "redis" in type(exc).__module__ else "the database",
                    first_line(exc),
                )
            down = True
            time.sleep(backoff.next_delay())
            continue
        if down:
            log.warning("flushing hits again")
            down = False
            backoff.succeeded()
