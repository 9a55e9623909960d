"""Outages: the database or Redis going away for a while, and how long to wait for them.

A worker must outlive a Redis restart and a database blip, and say so in one line rather
than a traceback per second: long-running loops (the RQ worker, the cron scheduler, the
hit flusher) catch :func:`is_outage` errors, log once, and try again after a growing wait.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.exceptions
from sqlalchemy import exc as sa_exc

DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds to wait before each try again; the last one repeats."""


def is_outage(exc: BaseException) -> bool:
    """True for errors that mean the database or Redis could not be reached or dropped the
    connection: nothing about the work itself, worth trying again later."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    if isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.TimeoutError
        | sa_exc.DisconnectionError,
    ):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def first_line(exc: BaseException) -> str:
    """An outage's message in one line, for the one log line it gets."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


@dataclass
class Backoff:
    """Growing waits between tries; a run that went well for ``healthy`` seconds starts the
    count again, so one outage a day always begins with the short wait."""

    delays: Sequence[float] = DELAYS
    healthy: float = 60.0
    failures: int = 0
    _started: float = field(default_factory=time.monotonic)

    def started(self) -> None:
        """A try begins now."""
        self._started = time.monotonic()

    def next_delay(self) -> float:
        """The try failed: how long to wait before the next."""
        if time.monotonic() - self._started >= self.healthy:
            self.failures = 0
        delay = self.delays[min(self.failures, len(self.delays) - 1)]
        self.failures += 1
        return delay

    def succeeded(self) -> None:
        self.failures = 0
