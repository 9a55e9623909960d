"""Wiring: build an :class:`~campaigns.engine.core.Engine` from the configuration.

The CLI, ``worker.py`` and the RQ jobs call :func:`build_engine`; tests build engines by
hand with their own clock, transport and database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from campaigns import config as settings
from campaigns.channels.email import transport_from_url
from campaigns.clock import Clock, SystemClock
from campaigns.content.mime import Sender
from campaigns.content.project import Project
from campaigns.content.render import Renderer
from campaigns.engine.core import Engine, EngineSettings
from campaigns.engine.ratelimit import DomainRateLimiter, parse_limits
from campaigns.store.db import make_engine, make_sessionmaker, migrate
from campaigns.tracking.tokens import Tokens


def sender(cfg: settings.Config) -> Sender:
    """The sender of journey emails: ``MAIL_FROM``, parsed and checked by :mod:`campaigns.config`."""
    return Sender(address=cfg.mail_from.address, name=cfg.mail_from.name)


def build_engine(
    cfg: settings.Config,
    *,
    clock: Clock | None = None,
    dispatch: Callable[[int], int] | None = None,
    transport: object | None = None,
) -> Engine:
    database = make_engine(cfg.database_url)
    migrate(database)
    project = Project(cfg)
    tokens = Tokens(cfg.secret_key, cfg.base_url)
    renderer = Renderer(
        project.templates, tokens, sender(cfg), domain=sender(cfg).address.rsplit("@", 1)[-1]
    )
    return Engine(
        make_sessionmaker(database),
        clock or SystemClock(),
        project.segments,
        renderer,
        transport or transport_from_url(cfg.mail_url),
        EngineSettings(
            frequency_cap=cfg.frequency_cap,
            frequency_period=timedelta(days=cfg.frequency_days),
            webhook_secret=cfg.secret_key,
            send_batch=cfg.send_batch,
            lease=timedelta(seconds=cfg.lease_seconds),
        ),
        dispatch,
        project.links(),
        _rate_limiter(cfg),
    )


def _rate_limiter(cfg: settings.Config) -> DomainRateLimiter | None:
    limits = parse_limits(cfg.domain_rate_limits)
    if not limits:
        return None
    from campaigns.queue import connect

    return DomainRateLimiter(limits, connect(cfg) if cfg.redis_url else None)
