"""Redis and the RQ queues: one place that names them and opens the connection.

With ``REDIS_URL`` set, the real server; unset, an in-process stand-in (fakeredis) that
serves ``campaigns run`` and tests on one machine, where web, worker and scheduler share
one process.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue

from campaigns.config import Config

QUEUE_NAMES = ("campaigns-high", "campaigns", "campaigns-low")
"""Queues in priority order: answers and tasks first, sends next, housekeeping last."""

KEY_PREFIX = "campaigns:"
"""Prefix of every Redis key the engine writes itself (RQ keeps its own ``rq:`` keys)."""


def connect(config: Config) -> Redis:
    """The Redis connection for ``config``: the server at REDIS_URL, or an in-process stand-in."""
    if config.redis_url:
        return Redis.from_url(config.redis_url)
    import fakeredis

    return fakeredis.FakeRedis()


def queues(connection: Redis) -> list[Queue]:
    return [Queue(name, connection=connection) for name in QUEUE_NAMES]


def ping(value: Any = "pong") -> Any:
    """A job that returns its argument: used to check that a worker runs jobs."""
    return value
