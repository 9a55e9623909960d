"""Per-recipient-domain rate limits, shared by every worker through Redis.

``DOMAIN_RATE_LIMITS="gmail.com=600/60s,*=3000/60s"``: at most 600 messages a minute to
gmail.com addresses and 3000 a minute to any other one domain. A fixed window per domain is
counted with one ``INCR`` (and an ``EXPIRE``) in a pipeline; a send over the limit is held
until the window ends, never dropped. Without Redis (one process) the counts are kept in
memory. The setting is parsed with the others (:func:`campaigns.config.parse_limits`).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from campaigns.config import Limit
from campaigns.queue import KEY_PREFIX

if TYPE_CHECKING:
    from redis import Redis


class RateLimiter(Protocol):
    """What the engine asks before each email: may one go to this address now?"""

    def acquire(self, address: str, now: datetime) -> datetime | None: ...


class DomainRateLimiter:
    """A :class:`RateLimiter` by the address's domain, counted in Redis (or here)."""

    def __init__(self, limits: dict[str, Limit], redis: Redis | None = None) -> None:
        self.limits = limits
        self.redis = redis
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def acquire(self, address: str, now: datetime) -> datetime | None:
        """Take one send to ``address``'s domain: None if it may go now, else when it may."""
        domain = address.rsplit("@", 1)[-1].lower()
        limit = self.limits.get(domain) or self.limits.get("*")
        if limit is None:
            return None
        epoch = int(now.timestamp())
        window = epoch - epoch % limit.seconds
        if self.redis is not None:
            key = f"{KEY_PREFIX}rate:{domain}:{window}"
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, limit.seconds * 2)
            count = int(pipe.execute()[0])
        else:
            with self._lock:
                count = self._counts[(domain, window)] = self._counts.get((domain, window), 0) + 1
                for stale in [k for k in self._counts if k[1] < window]:
                    del self._counts[stale]
        if count <= limit.count:
            return None
        return datetime.fromtimestamp(window + limit.seconds, UTC) + timedelta(milliseconds=1)
