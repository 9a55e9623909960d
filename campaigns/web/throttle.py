"""A brake on password guessing at the dashboard's sign-in, shared by every web process.

The rule (also in docs/dashboard.md, "Guessing passwords"):

- Every sign-in whose password gets checked counts against two keys: the **pair** (client
  address, email tried) and the **client address** alone, whatever email it tried.
- A key's first attempts go at once (:data:`PAIR_FREE` for a pair, :data:`ADDRESS_FREE` for
  an address). After them, each further attempt must wait 2^k seconds after the key's last
  one, k being the attempts beyond the free ones: 1 s, 2 s, 4 s ... at most :data:`CAP`.
  An attempt made too early is refused (the web answers 429 with ``Retry-After``) before
  the password is looked at, and is not counted.
- A right password forgets its pair and is not counted against its address. A key is
  forgotten :data:`MEMORY` after its last attempt.
- Nothing keys on the email alone, so a stranger's guesses slow down only the stranger's
  own address: the owner, signing in from anywhere else, never waits for them. Unknown
  emails count exactly like known ones (the throttle does not tell which exist).

Check and count are one atomic step, taken *before* the password is checked, so requests
sent in parallel to several processes cannot all pass through the same open moment.

The counts live in Redis when ``REDIS_URL`` is set (:class:`RedisAttempts`: keys under
``campaigns:signin:``, expiring by themselves), else in the database
(:class:`DatabaseAttempts`, table ``sign_in_attempts``); either way every web process (every
gunicorn worker) shares them. Nothing here knows about Flask.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.exceptions import CampaignsError
from campaigns.queue import KEY_PREFIX
from campaigns.store.models import SignInAttempts

PAIR_FREE = 5
"""Attempts for one email from one client address before each next one must wait."""

ADDRESS_FREE = 20
"""Attempts from one client address, over all emails, before each next one must wait:
higher than :data:`PAIR_FREE` because colleagues behind one office address share it."""

CAP = timedelta(minutes=15)
"""The longest wait between two attempts of one key (2^k seconds grows up to it)."""

MEMORY = timedelta(days=1)
"""A key is forgotten this long after its last attempt."""

IPV6_PREFIX = 64
"""IPv6 clients are counted per /64 network: one host is usually given a whole /64 and can
pick a fresh address in it for every request."""

REDIS_PREFIX = f"{KEY_PREFIX}signin:"

_RETRIES = 20
"""Optimistic transactions a Redis check may retry when other requests change its keys."""


class ThrottleUnavailable(CampaignsError):
    """The throttle's store (Redis or the database) could not be reached: sign-in is refused
    rather than let guesses through uncounted."""


@dataclass(frozen=True)
class Count:
    """What a store knows of one key: attempts counted and when the last one was."""

    attempts: int = 0
    last: datetime | None = None


@dataclass(frozen=True)
class Rule:
    """Free attempts, then 2^k seconds between attempts up to ``cap``; forgotten after
    ``memory``."""

    free: int
    cap: timedelta = CAP
    memory: timedelta = MEMORY

    def remembered(self, count: Count, now: datetime) -> int:
        """Attempts still counted at ``now`` (none once :attr:`memory` has passed)."""
        if count.last is None or now - count.last >= self.memory:
            return 0
        return max(count.attempts, 0)

    def delay(self, attempts: int) -> float:
        """Seconds the next attempt must come after the last one, ``attempts`` counted."""
        beyond = attempts - self.free
        if beyond < 0:
            return 0.0
        return min(
            2.0 ** min(beyond, 40), self.cap.total_seconds()
        )  # 2**40 s is past any cap; no overflow

    def wait(self, count: Count, now: datetime) -> float:
        """Seconds until the key may try again (0: now)."""
        delay = self.delay(self.remembered(count, now))
        if not delay or count.last is None:
            return 0.0
        # Never more than the delay itself: a last attempt "in the future" (another host's
        # clock running ahead) must not hold a key longer than the rule says.
        return min(max((count.last - now).total_seconds() + delay, 0.0), delay)


PAIR_RULE = Rule(PAIR_FREE)
ADDRESS_RULE = Rule(ADDRESS_FREE)


def client_key(address: str | None) -> str:
    """The client address as the throttle counts it: IPv4 as is, IPv6 by its /64 network
    (an IPv4-mapped IPv6 address is its IPv4 one), anything else (no address, or a proxy that
    sent a name or a port) by a digest, so a key is short and safe in Redis and SQL."""
    text = (address or "").strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return "x" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def pair_key(client: str, email: str) -> str:
    # The email is kept only as a digest: people type their password into the email field,
    # and what they typed should not sit in Redis or a table for a day.
    return (
        f"pair:{client}:{hashlib.sha256(email.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}"
    )


def address_key(client: str) -> str:
    return f"addr:{client}"


class AttemptStore(Protocol):
    """Where the counts live; shared by every process that signs people in."""

    def take(self, keys: Sequence[tuple[str, Rule]], now: datetime) -> float:
        """Atomically: if a key must still wait, the longest wait (nothing changes); else one
        attempt counted on every key at ``now``, and 0."""
        ...

    def forget(self, key: str) -> None:
        """Drop ``key``'s count."""
        ...

    def uncount(self, key: str) -> None:
        """Take back one attempt counted on ``key`` (it turned out to be a right password)."""
        ...


class SignInThrottle:
    """The rule above over a store: :meth:`attempt` before checking a password,
    :meth:`succeeded` when it was right."""

    def __init__(
        self, store: AttemptStore, pair: Rule = PAIR_RULE, address: Rule = ADDRESS_RULE
    ) -> None:
        self.store = store
        self.pair = pair
        self.address = address

    def attempt(self, client: str, email: str, now: datetime) -> float:
        """Seconds to wait before this attempt may be made (nothing counted), or 0: go ahead,
        the attempt is counted. ``client`` is :func:`client_key`'s, ``email`` normalised."""
        return self.store.take(
            ((pair_key(client, email), self.pair), (address_key(client), self.address)), now
        )

    def succeeded(self, client: str, email: str) -> None:
        self.store.forget(pair_key(client, email))
        # Not forgotten: one right password would wipe an address's failures on every other
        # account, so a guesser with an account of their own could reset their count at will.
        self.store.uncount(address_key(client))


# ---------------------------------------------------------------------------- Redis


class RedisAttempts:
    """Counts in Redis hashes ``campaigns:signin:<key>`` (``n`` attempts, ``t`` the last one's
    Unix time), each expiring :data:`MEMORY` after its last attempt. Check and count run as
    one optimistic transaction (``WATCH``/``MULTI``): when another request changes a key in
    between, the check runs again on the new counts."""

    def __init__(self, redis: Any, prefix: str = REDIS_PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix

    def take(self, keys: Sequence[tuple[str, Rule]], now: datetime) -> float:
        from redis.exceptions import RedisError, WatchError

        names = [self.prefix + key for key, _ in keys]
        try:
            with self.redis.pipeline() as pipe:
                for _ in range(_RETRIES):
                    try:
                        pipe.watch(*names)
                        counts = [_redis_count(pipe.hmget(name, "n", "t")) for name in names]
                        wait = max(
                            rule.wait(count, now)
                            for (_, rule), count in zip(keys, counts, strict=True)
                        )
                        if wait > 0:
                            pipe.unwatch()
                            return wait
                        pipe.multi()
                        for name, (_, rule), count in zip(names, keys, counts, strict=True):
                            pipe.hset(
                                name,
                                mapping={
                                    "n": rule.remembered(count, now) + 1,
                                    "t": repr(now.timestamp()),
                                },
                            )
                            pipe.expire(name, math.ceil(rule.memory.total_seconds()))
                        pipe.execute()
                        return 0.0
                    except WatchError:
                        continue
        except RedisError as exc:
            raise ThrottleUnavailable(f"the sign-in throttle cannot reach Redis: {exc}") from exc
        return (
            1.0  # keys changing under us twenty times in a row: a flood; let it wait, fail closed
        )

    def forget(self, key: str) -> None:
        from redis.exceptions import RedisError

        try:
            self.redis.delete(self.prefix + key)
        except RedisError as exc:
            raise ThrottleUnavailable(f"the sign-in throttle cannot reach Redis: {exc}") from exc

    def uncount(self, key: str) -> None:
        from redis.exceptions import RedisError, WatchError

        name = self.prefix + key
        try:
            with self.redis.pipeline() as pipe:
                for _ in range(_RETRIES):
                    try:
                        pipe.watch(name)
                        attempts = _redis_count(pipe.hmget(name, "n", "t")).attempts
                        if attempts <= 0:  # expired meanwhile: nothing to take back
                            pipe.unwatch()
                            return
                        pipe.multi()
                        pipe.hset(name, "n", attempts - 1)
                        pipe.execute()
                        return
                    except WatchError:
                        continue
        except RedisError as exc:
            raise ThrottleUnavailable(f"the sign-in throttle cannot reach Redis: {exc}") from exc


def _redis_count(values: Sequence[bytes | str | None]) -> Count:
    attempts, last = values
    if attempts is None or last is None:
        return Count()
    return Count(int(attempts), datetime.fromtimestamp(float(last), UTC))


# ---------------------------------------------------------------------------- the database


class DatabaseAttempts:
    """Counts in the ``sign_in_attempts`` table. Check and count hold the keys' rows locked
    (made first if missing, then ``SELECT ... FOR UPDATE`` in key order, so two requests never
    wait on each other in a circle; SQLite has one writer at a time anyway). Rows forgotten
    for :data:`MEMORY` are deleted after each counted attempt."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def take(self, keys: Sequence[tuple[str, Rule]], now: datetime) -> float:
        rules = dict(keys)
        names = sorted(rules)
        try:
            with self.sessions() as session:
                with session.begin():
                    insert = (
                        pg_insert
                        if session.get_bind().dialect.name == "postgresql"
                        else sqlite_insert
                    )
                    # On SQLite this write also takes the database's write lock before the read
                    # below.
                    session.execute(
                        insert(SignInAttempts)
                        .values([{"key": k, "attempts": 0, "last_at": now} for k in names])
                        .on_conflict_do_nothing(index_elements=["key"])
                    )
                    rows = session.scalars(
                        select(SignInAttempts)
                        .where(SignInAttempts.key.in_(names))
                        .order_by(SignInAttempts.key)
                        .with_for_update()
                    ).all()
                    counts = {row.key: Count(row.attempts, row.last_at) for row in rows}
                    wait = max(rules[k].wait(counts.get(k, Count()), now) for k in names)
                    if wait > 0:
                        return wait
                    for row in rows:
                        row.attempts = rules[row.key].remembered(counts[row.key], now) + 1
                        row.last_at = now
                with session.begin():
                    self._prune(session, now - max(rule.memory for rule in rules.values()))
        except SQLAlchemyError as exc:
            raise ThrottleUnavailable(
                f"the sign-in throttle cannot use the database: {exc}"
            ) from exc
        return 0.0

    @staticmethod
    def _prune(session: Session, before: datetime) -> None:
        stale = select(SignInAttempts.key).where(SignInAttempts.last_at < before)
        if session.get_bind().dialect.name == "postgresql":
            # Rows another request holds are left for a later prune: waiting for them while
            # holding the rows deleted so far could close a circle of waits.
            stale = stale.with_for_update(skip_locked=True)
        session.execute(delete(SignInAttempts).where(SignInAttempts.key.in_(stale)))

    def forget(self, key: str) -> None:
        try:
            with self.sessions() as session, session.begin():
                session.execute(delete(SignInAttempts).where(SignInAttempts.key == key))
        except SQLAlchemyError as exc:
            raise ThrottleUnavailable(
                f"the sign-in throttle cannot use the database: {exc}"
            ) from exc

    def uncount(self, key: str) -> None:
        try:
            with self.sessions() as session, session.begin():
                session.execute(
                    update(SignInAttempts)
                    .where(SignInAttempts.key == key, SignInAttempts.attempts > 0)
                    .values(attempts=SignInAttempts.attempts - 1)
                )
        except SQLAlchemyError as exc:
            raise ThrottleUnavailable(
                f"the sign-in throttle cannot use the database: {exc}"
            ) from exc
