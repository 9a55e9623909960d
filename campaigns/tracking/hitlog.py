"""The hit logs: where hits wait between the request path and the events table.

The log is a Redis stream (``XADD``: the hit is in Redis before the response goes out). A
flusher reads the stream as a consumer group in batches, writes the hits as events in one
transaction (:func:`campaigns.tracking.hits.write_hits`), and only then acknowledges and
deletes the entries.

Nothing is lost when a process restarts: an entry that a flusher read but did not
acknowledge stays pending in the group, and the next flusher claims it (``XAUTOCLAIM``)
after :data:`CLAIM_IDLE`. Nothing counts twice: the event of an entry carries its stream id
as its dedupe key, so re-flushing an entry whose transaction committed inserts nothing.

Without Redis (``campaigns run`` on one machine, tests) :class:`DirectHitLog` flushes each
hit at once, in its own transaction: the same code, one hit per batch. Both are a
:class:`~campaigns.tracking.hits.HitLog`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy.orm import Session, sessionmaker

from campaigns.tracking.hits import FlushResult, Hit, write_hits

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("campaigns.hits")

Entry = tuple[bytes | str, dict[bytes, bytes]]
"""A stream entry as redis-py returns it: its id and its fields."""
Claimed = tuple[bytes, list[Entry], list[bytes]] | None
"""``XAUTOCLAIM``'s reply: the next start id, the entries claimed, the ids deleted meanwhile."""
Read = list[tuple[bytes, list[Entry]]] | None
"""``XREADGROUP``'s reply: per stream, its entries."""

STREAM = "campaigns:hits"
"""The Redis stream of hits not yet written to the database."""

GROUP = "flusher"
"""The consumer group the flushers read the stream in."""

BATCH = 2_000
"""Hits a flusher reads and writes per transaction."""

CLAIM_IDLE = timedelta(seconds=30)
"""A hit read by a flusher that has not acknowledged it for this long is taken over."""


class DirectHitLog:
    """No Redis: each hit is written at once in its own transaction (single-machine use)."""

    def __init__(
        self, sessions: sessionmaker[Session], now: Callable[[], datetime] | None = None
    ) -> None:
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
        self, redis: Redis, stream: str = STREAM, group: str = GROUP, consumer: str | None = None
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
            pipe.xadd(self.stream, dict(hit.fields().items()))
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
        now: Callable[[], datetime] | None = None,
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
        # redis-py types its replies for every protocol at once; these are RESP2's.
        claimed = cast(
            Claimed,
            self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(claim_idle.total_seconds() * 1000),
                start_id="0-0",
                count=batch,
            ),
        )
        entries = claimed[1] if claimed else []
        if entries:
            total.add(self._write(sessions, entries, clock()))
        # Then this consumer's own pending entries (a restart under the same name), then new ones.
        for start in ("0", ">"):
            while True:
                response = cast(
                    Read,
                    self.redis.xreadgroup(
                        self.group,
                        self.consumer,
                        {self.stream: start},
                        count=batch,
                        block=block_ms if start == ">" else None,
                    ),
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
        self,
        sessions: sessionmaker[Session],
        entries: list[Entry],
        now: datetime,
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
    log_: RedisHitLog,
    sessions: sessionmaker[Session],
    *,
    block_ms: int = 1_000,
    stop: Callable[[], bool] | None = None,
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
