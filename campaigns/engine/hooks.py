"""Delivering outgoing events: claim the due rows of the outbox, POST each, signed, to its
subscriber, and record what the subscriber said.

- **Claims are leases.** :meth:`Deliverer.claim` stamps due ``pending`` rows with
  ``claimed_until`` in one statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has
  one writer), and that value is the claim's fencing token: every result is written only
  where the row still carries it. A deliverer that dies leaves its rows to be claimed again
  once the lease runs out: an event is never lost, and the one in flight may arrive twice
  (receivers deduplicate on ``Campaigns-Event-Id``).
- **Order.** Each subscriber's rows of a claim are posted one after another, by id, in a
  thread of its own (a slow subscriber holds up no other). After a failure the
  subscriber's later rows of the claim go back unposted, so within a claim no event
  overtakes an earlier one that failed. Across claims, retries and replays, order is not
  kept: ``occurred_at`` says when each thing happened.
- **Retries.** A 2xx is delivered. Anything else (another status, a timeout, a refused
  connection, a redirect) counts an attempt and waits ``EVENT_BACKOFF_BASE * 2**(n-1)``
  seconds (jittered, at most ``EVENT_BACKOFF_CAP``); after ``EVENT_MAX_ATTEMPTS`` the row is
  ``dead``, on the dead-letter list until :func:`replay`.
- **Signature.** ``Campaigns-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
  with the subscriber's secret (Stripe's scheme); :func:`verify` is the receiver's check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns import defaults
from campaigns.clock import Clock
from campaigns.config import Config, Subscriber
from campaigns.store.enums import OutboundStatus
from campaigns.store.models import Base, OutboundEvent

log = logging.getLogger("campaigns.hooks")

SIGNATURE_HEADER = "Campaigns-Signature"
ID_HEADER = "Campaigns-Event-Id"
TYPE_HEADER = "Campaigns-Event-Type"
USER_AGENT = "campaigns-events/1"

_events = Base.metadata.tables["outbound_events"]  # Core statements: the ORM never writes leases


# -- signatures ---------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Campaigns-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    now: float | None = None,
    window: int = defaults.EVENT_REPLAY_WINDOW,
) -> bool:
    """Whether ``header`` (the ``Campaigns-Signature`` received) signs ``body`` with ``secret``
    at a time no more than ``window`` seconds from ``now`` (default: the current time).

    Several ``v1=`` values may be present (while a secret is rotated): one matching is
    enough. Compared in constant time; any malformed header is simply False."""
    if not header:
        return False
    stamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and stamp is None:
            stamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if stamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > window:
        return False
    expected = sign(secret, body, stamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def body_of(payload: dict[str, Any]) -> bytes:
    """The bytes POSTed for ``payload``: compact JSON in UTF-8 (Japanese stays as it is)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# -- posting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one POST came to: the HTTP status if there was one, and an error unless 2xx."""

    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer like any other non-2xx: retried, then dead


_OPENER = urllib.request.build_opener(_NoRedirects)

Post = Callable[[Subscriber, bytes, dict[str, str], float], Answer]
"""How an event leaves: ``(subscriber, body, headers, timeout) -> Answer``."""


def http_post(
    subscriber: Subscriber, body: bytes, headers: dict[str, str], timeout: float
) -> Answer:
    """POST ``body`` to the subscriber's URL with urllib; never raises for the network."""
    request = urllib.request.Request(subscriber.url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65_536)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip() if exc.fp else ""
        exc.close()
        text = f"HTTP {exc.code}" + (f": {' '.join(detail.split())}" if detail else "")
        return Answer(exc.code, text[:500])
    except TimeoutError:
        return Answer(None, f"no answer within {timeout:g} s")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Answer(None, f"no answer within {timeout:g} s")
        return Answer(None, f"connection failed: {reason}"[:500])
    except (OSError, ValueError) as exc:  # reset mid-answer, a malformed status line
        return Answer(None, f"connection failed: {exc}"[:500])
    if 200 <= status < 300:
        return Answer(status, None)
    return Answer(status, f"HTTP {status}")


# -- delivering ---------------------------------------------------------------------------


@dataclass
class DeliverResult:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0  # failed, to be tried again later
    dead: int = 0
    deferred: int = 0  # went back unposted behind a failure, or lost to an expired lease

    def add(self, other: DeliverResult) -> None:
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead
        self.deferred += other.deferred


@dataclass
class _Claimed:
    id: int
    uid: str
    subscriber: str
    type: str
    payload: dict[str, Any]
    attempts: int


@dataclass
class Settings:
    """How the deliverer retries (from ``EVENT_*``, :meth:`from_config`)."""

    max_attempts: int = defaults.EVENT_MAX_ATTEMPTS
    backoff_base: int = defaults.EVENT_BACKOFF_BASE
    backoff_cap: int = defaults.EVENT_BACKOFF_CAP
    timeout: float = defaults.EVENT_TIMEOUT
    lease: float = defaults.EVENT_TIMEOUT + defaults.LEASE_SECONDS
    claim: int = defaults.EVENT_CLAIM
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    @classmethod
    def from_config(cls, cfg: Config) -> Settings:
        return cls(
            max_attempts=cfg.event_max_attempts,
            backoff_base=cfg.event_backoff_base,
            backoff_cap=cfg.event_backoff_cap,
            timeout=cfg.event_timeout,
            # A POST takes up to the timeout; the lease covers one with room to renew.
            lease=cfg.event_timeout + cfg.lease_seconds,
        )

    def backoff(self, attempts: int) -> float:
        """Seconds before the next POST after ``attempts`` failed ones: doubling from the
        base, up to the cap, each between 50% and 100% of that (jitter spreads a crowd)."""
        wait = min(float(self.backoff_cap), self.backoff_base * 2.0 ** max(0, attempts - 1))
        return wait * (0.5 + self.jitter() / 2)


class Deliverer:
    """Posts the outbox's due events to their subscribers (see the module's text)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        subscribers: Sequence[Subscriber],
        clock: Clock,
        settings: Settings | None = None,
        post: Post = http_post,
    ) -> None:
        self.sessions = sessions
        self.subscribers = {s.name: s for s in subscribers}
        self.clock = clock
        self.settings = settings or Settings()
        self.post = post

    def claim(self, limit: int | None = None) -> tuple[datetime, list[_Claimed]]:
        """Lease up to ``limit`` due pending rows of known subscribers, oldest first; the
        lease's expiry (the claim's token) and the rows, in id order."""
        now = self.clock.now()
        until = now + timedelta(seconds=self.settings.lease)
        c = _events.c
        with self.sessions() as session, session.begin():
            due = (
                select(c.id)
                .where(
                    c.status == OutboundStatus.PENDING,
                    c.next_attempt_at <= now,
                    (c.claimed_until.is_(None)) | (c.claimed_until < now),
                    c.subscriber.in_(list(self.subscribers)),
                )
                .order_by(c.id)
                .limit(limit or self.settings.claim)
            )
            if session.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rows = session.execute(
                update(_events)
                .where(c.id.in_(due.scalar_subquery()))
                .values(claimed_until=until)
                .returning(c.id, c.uid, c.subscriber, c.type, c.payload, c.attempts)
            ).all()
        claimed = sorted(
            (_Claimed(r.id, r.uid, r.subscriber, r.type, r.payload, r.attempts) for r in rows),
            key=lambda r: r.id,
        )
        return until, claimed

    def deliver(self, limit: int | None = None) -> DeliverResult:
        """One claim, posted: each subscriber's rows in id order, subscribers side by side."""
        until, claimed = self.claim(limit)
        result = DeliverResult(claimed=len(claimed))
        if not claimed:
            return result
        by_subscriber: dict[str, list[_Claimed]] = defaultdict(list)
        for row in claimed:
            by_subscriber[row.subscriber].append(row)
        if len(by_subscriber) == 1:
            result.add(self._post_all(next(iter(by_subscriber.values())), until))
            return result
        with ThreadPoolExecutor(max_workers=min(8, len(by_subscriber))) as pool:
            for part in pool.map(lambda rows: self._post_all(rows, until), by_subscriber.values()):
                result.add(part)
        return result

    def run(self, *, until_idle: bool = True, deadline: float | None = None) -> DeliverResult:
        """Claim and post until nothing is due (or ``deadline``, a monotonic time, passes)."""
        total = DeliverResult()
        while True:
            result = self.deliver()
            total.add(result)
            if not result.claimed or not until_idle:
                return total
            if deadline is not None and time.monotonic() >= deadline:
                return total

    def _post_all(self, rows: list[_Claimed], until: datetime) -> DeliverResult:
        result = DeliverResult()
        subscriber = self.subscribers[rows[0].subscriber]
        token: datetime | None = until
        for index, row in enumerate(rows):
            token = self._renew(rows[index:], token) if token is not None else None
            if token is None:  # the lease ran out (a stall): the rest is someone else's now
                result.deferred += len(rows) - index
                return result
            body = body_of(row.payload)
            stamp = int(time.time())  # the receiver checks it against its own clock
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: sign(subscriber.secret, body, stamp),
                ID_HEADER: row.uid,
                TYPE_HEADER: row.type,
            }
            answer = self.post(subscriber, body, headers, self.settings.timeout)
            outcome = self._record(row, answer, token)
            if outcome == "delivered":
                result.delivered += 1
                continue
            if outcome == "lost":
                result.deferred += 1
            elif outcome == "dead":
                result.dead += 1
            else:
                result.retried += 1
            rest = rows[index + 1 :]
            self._release(rest, token)  # nothing overtakes the event that failed
            result.deferred += len(rest)
            return result
        return result

    def _renew(self, rows: Sequence[_Claimed], token: datetime) -> datetime | None:
        """Extend the lease on ``rows`` if less than a POST's worth of it is left; the new
        token, or None if the lease is lost."""
        now = self.clock.now()
        if token - now >= timedelta(seconds=self.settings.timeout + 1):
            return token
        if token <= now:
            return None
        fresh = now + timedelta(seconds=self.settings.lease)
        c = _events.c
        with self.sessions() as session, session.begin():
            renewed = session.execute(
                update(_events)
                .where(c.id.in_([r.id for r in rows]), c.claimed_until == token)
                .values(claimed_until=fresh)
                .returning(c.id)
            ).all()
        return fresh if len(renewed) == len(rows) else None

    def _record(self, row: _Claimed, answer: Answer, token: datetime) -> str:
        now = self.clock.now()
        attempts = row.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status": answer.status,
            "last_error": answer.error,
            "claimed_until": None,
        }
        if answer.ok:
            outcome = "delivered"
            values.update(status=OutboundStatus.DELIVERED, delivered_at=now)
        elif attempts >= self.settings.max_attempts:
            outcome = "dead"
            values.update(status=OutboundStatus.DEAD)
            log.warning(
                "event %s to %s is dead after %d attempts: %s",
                row.uid,
                row.subscriber,
                attempts,
                answer.error,
            )
        else:
            outcome = "retry"
            wait = timedelta(seconds=self.settings.backoff(attempts))
            values.update(next_attempt_at=now + wait)
        c = _events.c
        with self.sessions() as session, session.begin():
            done = session.execute(
                update(_events)
                .where(c.id == row.id, c.claimed_until == token)
                .values(**values)
                .returning(c.id)
            ).first()
        if done is None:  # taken over after our lease ran out: theirs is the record now
            log.warning("event %s to %s: lease lost before its result", row.uid, row.subscriber)
            return "lost"
        return outcome

    def _release(self, rows: Iterable[_Claimed], token: datetime) -> None:
        ids = [r.id for r in rows]
        if not ids:
            return
        c = _events.c
        with self.sessions() as session, session.begin():
            session.execute(
                update(_events)
                .where(c.id.in_(ids), c.claimed_until == token)
                .values(claimed_until=None)
            )


# -- the dead-letter list -----------------------------------------------------------------


def replay(
    session: Session,
    now: datetime,
    *,
    ids: Sequence[int] | None = None,
    subscriber: str | None = None,
) -> int:
    """Put dead events (``ids``, or all, or all of one ``subscriber``) back in the queue with
    a full set of attempts, due now; how many (the caller commits and audits)."""
    c = _events.c
    query = update(_events).where(c.status == OutboundStatus.DEAD)
    if ids is not None:
        if not ids:
            return 0
        query = query.where(c.id.in_(list(ids)))
    if subscriber is not None:
        query = query.where(c.subscriber == subscriber)
    result = session.execute(
        query.values(
            status=OutboundStatus.PENDING, attempts=0, next_attempt_at=now, claimed_until=None
        ).returning(c.id)
    )
    return len(result.all())


def counts(session: Session) -> dict[str, dict[str, int]]:
    """Events per subscriber per status: ``{"crm": {"pending": 3, "delivered": 90, ...}}``."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: {str(s): 0 for s in OutboundStatus})
    c = _events.c
    for name, status, n in session.execute(
        select(c.subscriber, c.status, func.count()).group_by(c.subscriber, c.status)
    ):
        found[name][status] = int(n)
    return dict(found)


def listing(
    session: Session, status: str | None = None, *, limit: int = 100, before: int | None = None
) -> list[OutboundEvent]:
    """Events (newest first), of one ``status`` if given; ``before`` an id pages back."""
    query = select(OutboundEvent).order_by(OutboundEvent.id.desc()).limit(limit)
    if status is not None:
        query = query.where(OutboundEvent.status == status)
    if before is not None:
        query = query.where(OutboundEvent.id < before)
    return list(session.scalars(query))


def to_json(row: OutboundEvent) -> dict[str, Any]:
    """One outbox row as the API shows it."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": row.id,
        "event_id": row.uid,
        "subscriber": row.subscriber,
        "type": row.type,
        "status": row.status,
        "attempts": row.attempts,
        "occurred_at": iso(row.occurred_at),
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "pending" else None,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "delivered_at": iso(row.delivered_at),
        "payload": row.payload,
    }
