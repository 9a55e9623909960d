"""Start-up checks: the services a process needs answer before it starts working.

:mod:`campaigns.config` checks that every value is well formed; it cannot tell whether the
Redis at ``REDIS_URL`` is running. Without this check ``worker.py`` would fork its scheduler
and flusher and print a traceback from each, over and over, and the web app would take
requests and lose their tracking hits. So each process that needs Redis pings it once, with a
short timeout and no retries, and stops with one line (exit 2) when it does not answer.

:func:`start` is the other half: it turns whatever a process's start-up raises for a reason
the operator can fix (a :class:`~campaigns.exceptions.CampaignsError`, a database that does
not answer) into that one line, for the entry points that are not the CLI (``web.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from campaigns.config import redact_url
from campaigns.exceptions import CampaignsError, ServiceUnavailable

PING_TIMEOUT = 2.0
"""Seconds to wait for Redis to connect and answer PING at start."""

EXIT_ERROR = 2
"""The exit status of a process that could not start (as the CLI's)."""

T = TypeVar("T")


def check_redis(url: str, *, timeout: float = PING_TIMEOUT) -> None:
    """Raise :class:`ServiceUnavailable`, one line naming ``REDIS_URL``, unless the Redis at
    ``url`` (already checked by :mod:`campaigns.config`) answers PING within ``timeout``."""
    from redis import Redis
    from redis import exceptions as errors
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    shown = redact_url(url)
    # redis-py retries a failed connection three times with backoff by default: at start, one
    # try is the answer, and the operator should not wait four timeouts for it.
    client = Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except (errors.AuthenticationError, errors.AuthorizationError, errors.ResponseError) as exc:
        # It is Redis, and it says no: a wrong password, a database out of range.
        raise ServiceUnavailable(
            f"REDIS_URL: Redis at {shown} refused: {_first_line(exc)}"
        ) from None
    except errors.BusyLoadingError:
        raise ServiceUnavailable(
            f"REDIS_URL: Redis at {shown} is still loading its data; start again when it is up"
        ) from None
    except errors.TimeoutError:
        raise ServiceUnavailable(
            f"REDIS_URL: no answer from {shown} (timed out after {timeout:g} s); is Redis running?"
        ) from None
    except errors.ConnectionError as exc:
        raise ServiceUnavailable(
            f"REDIS_URL: no answer from {shown} ({_reason(exc)}); is Redis running?"
        ) from None
    except (
        errors.RedisError
    ) as exc:  # something answered, but not in Redis's protocol (an HTTP port?)
        raise ServiceUnavailable(
            f"REDIS_URL: {shown} does not answer like Redis ({_first_line(exc)}); is it the "
            "right port?"
        ) from None
    finally:
        client.close()


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection ("Connection refused")."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return _first_line(exc).rstrip(".")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def startup_error(exc: BaseException) -> str | None:
    """The one line for a start-up failure the operator can fix, or None for a bug."""
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    if isinstance(exc, CampaignsError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OperationalError) and exc.orig is not None:
        return f"database error: {_first_line(exc.orig)}"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {_first_line(exc)}"
    return None


def fail(program: str, message: str, status: int = EXIT_ERROR) -> NoReturn:
    """Print ``program: message`` on stderr, one line, and exit with ``status``."""
    print(f"{program}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def start(program: str, build: Callable[[], T], *, status: int = EXIT_ERROR) -> T:
    """``build()``, or one line on stderr and exit ``status`` if it fails for a reason the
    operator can fix; a bug keeps its traceback."""
    try:
        return build()
    except Exception as exc:
        message = startup_error(exc)
        if message is None:
            raise
        fail(program, message, status)
