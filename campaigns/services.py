"""The composition root: the one place the parts are built from the configuration.

:func:`build` takes the settings and a clock and returns :class:`Services`: the database and
its sessions (which carry the outgoing events' subscribers: :mod:`campaigns.store.outbox`), the
project folder, the tokens, the renderer, the email transport, the deliverer of those events,
the hit log, the domain rate limiter, the cache of parsed journeys and the engine over them. The web
app (:func:`campaigns.web.create_app`), every CLI command, ``worker.py`` and its RQ jobs, the
dashboard's preview and ``campaigns simulate`` call it; nothing else builds these. Tests pass
their own clock, transport, hit log or sessions in the same call.

It also owns the schema rule (:func:`require_schema`): a process opens a database only at
the newest migration; ``campaigns migrate`` is the one thing that changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cached_property

from redis import Redis
from sqlalchemy import Engine as Database
from sqlalchemy.orm import Session, sessionmaker

from campaigns import config as settings
from campaigns.channels.transports import RecordingTransport, Transport, transport_from_url
from campaigns.clock import Clock, SystemClock
from campaigns.content.dkim import Signer
from campaigns.content.mime import Sender
from campaigns.content.project import Project
from campaigns.content.render import Renderer
from campaigns.engine.core import Engine, EngineSettings
from campaigns.engine.hooks import Deliverer
from campaigns.engine.hooks import Settings as HookSettings
from campaigns.engine.ratelimit import DomainRateLimiter
from campaigns.exceptions import CampaignsError
from campaigns.store.db import make_engine, make_sessionmaker, schema_problem
from campaigns.store.outbox import Outbox, attach
from campaigns.store.versions import ParsedJourneys
from campaigns.tracking.hitlog import DirectHitLog, RedisHitLog
from campaigns.tracking.hits import HitLog
from campaigns.tracking.tokens import Tokens


class SchemaBehind(CampaignsError):
    """The database is not at the newest migration: ``campaigns migrate`` brings it there."""


def sender(cfg: settings.Config) -> Sender:
    """The sender of journey emails: ``MAIL_FROM``, as :mod:`campaigns.config` checked it."""
    return Sender(address=cfg.mail_from.address, name=cfg.mail_from.name)


def require_schema(database: Database) -> None:
    """Raise :class:`SchemaBehind`, one line naming the command to run, unless ``database``
    is at the newest migration."""
    problem = schema_problem(database)
    if problem is not None:
        raise SchemaBehind(f"{problem}; run `campaigns migrate`")


def check_schema(config: settings.Config) -> None:
    """Open ``DATABASE_URL`` once and :func:`require_schema` it: a process's start-up check
    (``worker.py``), before it forks children that would each fail on their own."""
    database = make_engine(config.database_url)
    try:
        require_schema(database)
    finally:
        database.dispose()


class Services:
    """What a process runs on, built once by :func:`build`. The transport and the engine are
    made on first use: a web process that never previews or sends never opens the relay."""

    def __init__(
        self,
        config: settings.Config,
        clock: Clock,
        sessions: sessionmaker[Session],
        database: Database | None,
        redis: Redis | None,
        hits: HitLog,
        *,
        transport: Transport | None,
        dispatch: Callable[[int], int] | None,
        dry_run: bool,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sessions = sessions
        self.database = database
        self.redis = redis
        self.hits = hits
        self.project = Project(config)
        self.tokens = Tokens(config.secret_key, config.base_url)
        origin = sender(config)
        # templates/sender.yaml: From, Reply-To and the legal footer per brand and locale.
        self.senders = self.project.senders()
        self.renderer = Renderer(
            self.project.templates,
            self.tokens,
            origin,
            domain=origin.address.rsplit("@", 1)[-1],
            senders=self.senders,
            signer=Signer(config.dkim) if config.dkim is not None else None,
        )
        self.links = self.project.links()
        self.journeys = ParsedJourneys()
        # A dry run counts against no one's limits (and writes no Redis key): its sends are
        # not real.
        self.rate_limiter = None if dry_run else _rate_limiter(config, redis)
        self._transport = transport
        self._dispatch = dispatch
        self._dry_run = dry_run

    @cached_property
    def transport(self) -> Transport:
        """Where email goes: the transport given to :func:`build`, else ``MAIL_URL``'s (in a
        dry run, a :class:`RecordingTransport`: nothing leaves the process)."""
        if self._transport is not None:
            return self._transport
        if self._dry_run:
            return RecordingTransport()
        return transport_from_url(self.config.mail_url)

    @cached_property
    def deliverer(self) -> Deliverer:
        """Posts the outbox's events to ``EVENT_SUBSCRIBERS`` (:mod:`campaigns.engine.hooks`)."""
        return Deliverer(
            self.sessions,
            self.config.event_subscribers,
            self.clock,
            HookSettings.from_config(self.config),
        )

    @cached_property
    def engine(self) -> Engine:
        cfg = self.config
        return Engine(
            self.sessions,
            self.clock,
            self.project.segments,
            self.renderer,
            self.transport,
            EngineSettings(
                frequency_cap=cfg.frequency_cap,
                frequency_period=timedelta(days=cfg.frequency_days),
                webhook_secret=cfg.secret_key,
                currencies=cfg.currencies,
                global_control=cfg.global_control_percent / 100,
                task_time_zone=cfg.task_time_zone,
                task_digest_hour=cfg.task_digest_hour,
                consent_rules=cfg.consent_rules,
                send_batch=cfg.send_batch,
                lease=timedelta(seconds=cfg.lease_seconds),
                # Simulated time jumps hours at a time and its sessions share one connection.
                heartbeat=not self._dry_run,
                dry_run=self._dry_run,
            ),
            self._dispatch,
            self.links,
            self.rate_limiter,
            journeys=self.journeys,
            triggers=self.project.triggers,
            scorecards=self.project.scorecards,
        )

    def close(self) -> None:
        """Close the transport (if it was opened) and the database's pool."""
        if "transport" in self.__dict__:
            self.transport.close()
        if self.database is not None:
            self.database.dispose()


def build(
    config: settings.Config,
    clock: Clock | None = None,
    *,
    database_url: str | None = None,
    sessions: sessionmaker[Session] | None = None,
    redis: Redis | None = None,
    transport: Transport | None = None,
    hits: HitLog | None = None,
    dispatch: Callable[[int], int] | None = None,
    dry_run: bool = False,
    check_schema: bool = True,
) -> Services:
    """Build the services for ``config`` (the database at ``database_url`` if given).

    ``sessions`` replaces the database (``campaigns simulate`` runs on a throw-away copy);
    ``redis`` replaces the client made from ``REDIS_URL``; ``transport`` and ``hits`` replace
    the email transport and the hit log; ``dispatch`` is how the engine asks for jobs (the
    worker's).

    ``dry_run`` (``campaigns simulate``) builds services whose only effect is on their
    ``sessions``: email goes to a :class:`RecordingTransport` (``MAIL_URL`` is not opened),
    webhooks to a recording stand-in, and ``REDIS_URL`` is never connected to (hits go to
    the sessions' database; there is no rate limiter); the lease heartbeat is off.
    Raises :class:`SchemaBehind` when the database is not at the newest migration, unless
    ``check_schema`` is false (``campaigns migrate`` itself)."""
    if dry_run and dispatch is not None:
        raise ValueError("a dry run does its work in its own ticks: it takes no dispatch")
    clock = clock or SystemClock()
    database = None
    if sessions is None:
        database = make_engine(database_url or config.database_url)
        if check_schema:
            try:
                require_schema(database)
            except BaseException:
                database.dispose()
                raise
        sessions = make_sessionmaker(database)
    # Every session carries the subscribers, so each change can write its events in its own
    # transaction (campaigns.store.outbox); a dry run's changes are not real and announce none.
    sessions = attach(sessions, Outbox(() if dry_run else config.event_subscribers))
    if redis is None and config.redis_url and not dry_run:
        redis = Redis.from_url(config.redis_url)
    if hits is None:
        hits = RedisHitLog(redis) if redis is not None else DirectHitLog(sessions, now=clock.now)
    return Services(
        config,
        clock,
        sessions,
        database,
        redis,
        hits,
        transport=transport,
        dispatch=dispatch,
        dry_run=dry_run,
    )


def _rate_limiter(cfg: settings.Config, redis: Redis | None) -> DomainRateLimiter | None:
    limits = settings.parse_limits(cfg.domain_rate_limits)
    if not limits:
        return None
    return DomainRateLimiter(limits, redis)
