"""The data model: SQLAlchemy 2.x typed tables for accounts, contacts, journeys and what
running them leaves behind (enrollments, messages, events, tasks, suppressions).

The database is the truth for every piece of journey state; Redis only carries work.
Every state a row can be in is an explicit :class:`enum.StrEnum`, stored as its string.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from campaigns.store.enums import (
    Channel,
    Classification,
    ConsentAction,
    ContractStatus,
    EnrollmentState,
    JourneyStatus,
    MessageStatus,
    OutboundStatus,
    TaskMail,
    TaskPriority,
    TaskStatus,
    UserRole,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored as UTC and always come back timezone-aware.

    SQLite has no time zones; PostgreSQL has ``timestamptz``. This type gives the engine
    the same aware ``datetime`` from both, so comparisons never mix naive and aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
Money = Numeric(18, 2)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, list[str]: JSONType}


class Account(Base):
    """A customer company: its value decides its touch tier."""

    __tablename__ = "accounts"
    __table_args__ = (
        # An owner's accounts ("My accounts"). Not with the health columns: the day's scoring
        # rewrites them for every account, and an index on none of them lets PostgreSQL
        # update the rows in place (HOT), with the room ``fillfactor`` leaves on each page.
        Index("ix_accounts_owner_email", "owner_email"),
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    arr: Mapped[Decimal | None] = mapped_column(Money)
    ltv: Mapped[Decimal | None] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="JPY")
    plan: Mapped[str | None] = mapped_column(String(64), index=True)
    contract_status: Mapped[str] = mapped_column(String(32), default=ContractStatus.ACTIVE)
    contract_start: Mapped[date | None] = mapped_column(Date)
    renewal_date: Mapped[date | None] = mapped_column(Date, index=True)
    industry: Mapped[str | None] = mapped_column(String(64), index=True)
    company_size: Mapped[int | None] = mapped_column(Integer)
    owner_email: Mapped[str | None] = mapped_column(String(320))
    health_score: Mapped[int | None] = mapped_column(Integer)
    # The latest health (:mod:`campaigns.insight.health`): its band and how far the score
    # moved over 7 and 30 days; ``health_scored_on`` is the day it was worked out.
    health_band: Mapped[str | None] = mapped_column(String(16))
    health_change_7d: Mapped[float | None] = mapped_column(Float)
    health_change_30d: Mapped[float | None] = mapped_column(Float)
    health_scored_on: Mapped[date | None] = mapped_column(Date)
    tier: Mapped[str | None] = mapped_column(String(64), index=True)
    country: Mapped[str | None] = mapped_column(String(2))  # ISO 3166-1 alpha-2, upper case
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    contacts: Mapped[list[Contact]] = relationship(back_populates="account")


class Contact(Base):
    """A person at an account who receives messages."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(255))  # job title, for personas
    locale: Mapped[str] = mapped_column(String(16), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    opt_out: Mapped[list[str]] = mapped_column(
        default=list
    )  # message categories they chose not to get
    paused_until: Mapped[datetime | None] = mapped_column()  # no marketing email before this
    tags: Mapped[list[str]] = mapped_column(default=list)
    # The country whose rule on marketing mail applies (ISO 3166-1 alpha-2); None: the
    # account's, else CONSENT_DEFAULT_COUNTRY.
    country: Mapped[str | None] = mapped_column(String(2))
    # The current basis for marketing mail (a ConsentBasis; None: none recorded) and, for an
    # opt-in, where and when it was given and which wording was shown. The history, withdrawals
    # included, is in consent_records.
    consent_basis: Mapped[str | None] = mapped_column(String(24))
    consent_source: Mapped[str | None] = mapped_column(String(255))
    consent_at: Mapped[datetime | None] = mapped_column()
    consent_wording: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account: Mapped[Account | None] = relationship(back_populates="contacts")


class Journey(Base):
    """A named journey; its versions hold the source. ``key`` is the file's ``journey:`` id."""

    __tablename__ = "journeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=JourneyStatus.LIVE)
    # Since when the journey is paused (None unless paused): resuming knows how long it held.
    paused_at: Mapped[datetime | None] = mapped_column()
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("journey_versions.id", use_alter=True)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    versions: Mapped[list[JourneyVersion]] = relationship(
        back_populates="journey",
        foreign_keys="JourneyVersion.journey_id",
        order_by="JourneyVersion.number",
    )
    current_version: Mapped[JourneyVersion | None] = relationship(
        foreign_keys=[current_version_id], post_update=True
    )


class JourneyVersion(Base):
    """One deployed text of a journey. Enrollments stay on the version they started on."""

    __tablename__ = "journey_versions"
    __table_args__ = (
        UniqueConstraint("journey_id", "number"),
        UniqueConstraint("journey_id", "source_hash", name="uq_journey_versions_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    source_path: Mapped[str] = mapped_column(String(1024))
    source_text: Mapped[str] = mapped_column(Text)
    source_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    journey: Mapped[Journey] = relationship(back_populates="versions", foreign_keys=[journey_id])


class Enrollment(Base):
    """One contact's passage through one journey version.

    ``entry_key`` tells entries apart for the re-entry policy (``segment``, an event id, a
    renewal date); a contact enters a journey at most once per key. ``claimed_by``,
    ``lease_token`` and ``claimed_until`` are the lease a worker holds while it runs the row
    (see :mod:`campaigns.engine.leases`): every write checks the token, and a dead worker's rows are
    claimed again once the lease runs out.
    """

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("journey_id", "contact_id", "entry_key", name="uq_enrollments_entry"),
        # An account journey's enrollments have no contact: one per account and entry key.
        Index(
            "uq_enrollments_account_entry",
            "journey_id",
            "account_id",
            "entry_key",
            unique=True,
            sqlite_where=text("contact_id IS NULL"),
            postgresql_where=text("contact_id IS NULL"),
        ),
        Index("ix_enrollments_due", "state", "next_run_at"),
        # Who is where in a journey (campaigns.insight.flow), read from the index alone.
        Index("ix_enrollments_flow", "journey_id", "state", "current_step", "holdout"),
        Index(
            "ix_enrollments_uncounted",
            "id",
            sqlite_where=text("counted < 3"),
            postgresql_where=text("counted < 3"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # No index of their own: (journey, ...) leads the unique keys, and versions are read by
    # id. No foreign key either: journeys and their versions are never deleted (a version is
    # immutable; enrollments stay on theirs), and on PostgreSQL the two checks were 40% of the
    # time of enrolling a million contacts (bench/enrol.py).
    journey_id: Mapped[int] = mapped_column(Integer)
    journey_version_id: Mapped[int] = mapped_column(Integer)
    # A contact journey's enrollment has its contact (its account is the contact's); an account
    # journey's has the account only, and its steps address the account's contacts.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    entry_key: Mapped[str] = mapped_column(String(128), default="segment")
    segment: Mapped[str | None] = mapped_column(String(64))
    tier: Mapped[str | None] = mapped_column(String(64))
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=EnrollmentState.ACTIVE)
    current_step: Mapped[str | None] = mapped_column(String(128))
    next_run_at: Mapped[datetime | None] = mapped_column()
    claimed_until: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_token: Mapped[int | None] = mapped_column(
        BigInteger
    )  # fencing token of the current claim
    unfinished_runs: Mapped[int] = mapped_column(
        SmallInteger, default=0, server_default="0"
    )  # runs in a row whose holder died, hung or lost its lease
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    exit_reason: Mapped[str | None] = mapped_column(String(255))
    counted: Mapped[int] = mapped_column(
        SmallInteger, default=0, server_default="0"
    )  # stats: 1 entry counted, 2 end counted

    contact: Mapped[Contact | None] = relationship()
    version: Mapped[JourneyVersion] = relationship(
        primaryjoin="foreign(Enrollment.journey_version_id) == JourneyVersion.id"
    )


class Message(Base):
    """One attempt at one step for one enrollment, on one channel.

    The row is written before the channel is called; the unique key
    (enrollment, step, attempt_key) is what makes a re-run job send nothing twice.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id", "attempt_key", name="uq_messages_attempt"),
        Index("ix_messages_contact_created", "contact_id", "created_at"),
        Index("ix_messages_status", "status"),
        Index("ix_messages_flow", "journey_id", "status", "step_id"),  # sent and held per step
        Index(
            "ix_messages_uncounted",
            "id",
            sqlite_where=text("counted = 0"),
            postgresql_where=text("NOT counted"),
        ),
        # Owner mail about no enrollment (an escalation, a digest, a trigger task's notice) is keyed
        # by its step and attempt key alone: ``escalation:<task>``, ``digest:<user>:<day>``.
        Index(
            "uq_messages_unenrolled",
            "step_id",
            "attempt_key",
            unique=True,
            sqlite_where=text("enrollment_id IS NULL AND channel = 'owner'"),
            postgresql_where=text("enrollment_id IS NULL AND channel = 'owner'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    # The customer it went to or is about; none for an account journey's mail to its owner.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(128))
    attempt_key: Mapped[str] = mapped_column(String(64), default="1")
    channel: Mapped[str] = mapped_column(String(16), default=Channel.EMAIL)
    category: Mapped[str | None] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(64))
    persona: Mapped[str | None] = mapped_column(String(64))  # the persona content was chosen for
    template: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(16))
    to_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.PENDING)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    links: Mapped[list[str]] = mapped_column(default=list)
    not_before: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    # The first human open, click and answer: rates count each message once (unique).
    opened_at: Mapped[datetime | None] = mapped_column()
    clicked_at: Mapped[datetime | None] = mapped_column()
    answered_at: Mapped[datetime | None] = mapped_column()
    counted: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )  # in the stats


class Event(Base):
    """Something that happened: a hit on a tracking link, an answer, a bounce, a product event.

    Raw hits are kept with their classification (human, machine, unknown) and the reason;
    rates count human signals only. ``dedupe_key`` makes replays of the same hit count once.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_contact_kind", "contact_id", "kind", "occurred_at"),
        Index("ix_events_message_kind", "message_id", "kind"),
        Index("ix_events_name", "name", "occurred_at"),
        # An account's own events (no contact): the account page's timeline.
        Index(
            "ix_events_account_occurred",
            "account_id",
            "occurred_at",
            sqlite_where=text("contact_id IS NULL"),
            postgresql_where=text("contact_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(128))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"))
    step_id: Mapped[str | None] = mapped_column(String(128))
    value: Mapped[str | None] = mapped_column(String(2048))
    classification: Mapped[str] = mapped_column(String(16), default=Classification.HUMAN)
    reason: Mapped[str | None] = mapped_column(String(255))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    dedupe_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(Base):
    """A human step: a call or meeting for the account owner, due at a time."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id", name="uq_tasks_step"),
        Index("ix_tasks_owner_status", "owner_email", "status", "due_at"),
        Index("ix_tasks_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"))
    step_id: Mapped[str | None] = mapped_column(String(128))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    owner_email: Mapped[str | None] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(32), default="call")
    priority: Mapped[str] = mapped_column(
        String(8), default=TaskPriority.NORMAL, server_default=TaskPriority.NORMAL.value
    )
    trigger: Mapped[str | None] = mapped_column(String(64))  # the trigger point that opened it
    title: Mapped[str] = mapped_column(String(512))
    notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.OPEN)
    outcome: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()
    # Overdue and escalated: when, and to whom (the owner's manager or team lead).
    escalated_at: Mapped[datetime | None] = mapped_column()
    escalated_to: Mapped[str | None] = mapped_column(String(320))
    notified_at: Mapped[datetime | None] = mapped_column()  # mailed to its owner (or digested)
    counted: Mapped[int] = mapped_column(
        SmallInteger, default=0, server_default="0"
    )  # stats: 1 creation counted, 2 completion counted
    # While the task is open, "journey:step:account" for a task step that opens one task per
    # account (the default): a second contact of the account finds it instead of a twin.
    open_key: Mapped[str | None] = mapped_column(String(160), unique=True)


class InAppMessage(Base):
    """A message the product fetches for a contact and shows in context."""

    __tablename__ = "in_app_messages"
    __table_args__ = (
        # One per recipient: an account journey shows it to each contact it addresses.
        UniqueConstraint("enrollment_id", "step_id", "contact_id", name="uq_in_app_messages_step"),
        Index("ix_in_app_contact", "contact_id", "seen_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"))
    step_id: Mapped[str | None] = mapped_column(String(128))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    title: Mapped[str] = mapped_column(String(512))
    body: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    seen_at: Mapped[datetime | None] = mapped_column()
    clicked_at: Mapped[datetime | None] = mapped_column()


class Suppression(Base):
    """An address that gets no marketing mail, and why."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Allocation(Base):
    """How the tuner split a step's new sends among its arms (variants or channels) for a
    segment from ``at`` on, and why: each arm's trials, successes and probability of being
    best. One row per arm per refresh; see :mod:`campaigns.insight.tuning`."""

    __tablename__ = "allocations"
    __table_args__ = (Index("ix_allocations_step", "journey_id", "step_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    journey_id: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(128))
    segment: Mapped[str] = mapped_column(String(64), default="")
    dimension: Mapped[str] = mapped_column(String(16))  # variant | channel
    arm: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column()
    trials: Mapped[int] = mapped_column(Integer, default=0)
    successes: Mapped[int] = mapped_column(Integer, default=0)
    share: Mapped[float] = mapped_column(Float, default=0.0)
    p_best: Mapped[float] = mapped_column(Float, default=0.0)


class Stat(Base):
    """A pre-aggregated count: how many times ``metric`` happened for a journey's step,
    channel, variant, segment and tier on a day (UTC). Reports sum these rows instead of
    scanning raw events; see :mod:`campaigns.insight.stats`. Empty strings stand for "none"."""

    __tablename__ = "stats"
    __table_args__ = (
        UniqueConstraint(
            "journey_id",
            "step_id",
            "channel",
            "variant",
            "segment",
            "tier",
            "day",
            "metric",
            name="uq_stats_key",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    journey_id: Mapped[int] = mapped_column(Integer, default=0)
    step_id: Mapped[str] = mapped_column(String(128), default="")
    channel: Mapped[str] = mapped_column(String(16), default="")
    variant: Mapped[str] = mapped_column(String(64), default="")
    segment: Mapped[str] = mapped_column(String(64), default="")
    tier: Mapped[str] = mapped_column(String(64), default="")
    day: Mapped[date] = mapped_column(Date)
    metric: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)


class User(Base):
    """A person who signs in to the dashboard. The email is stored lower-cased (unique);
    the password only as a salted scrypt hash (:mod:`campaigns.store.users`)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    # The language of mail to this user (task notices); None: the journey's.
    locale: Mapped[str | None] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=UserRole.CSM)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()
    # Copied into the signed session cookie at sign-in and compared on every request: adding
    # one (sign-out, a new password) ends every session of this user at once, on every worker.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Task mail: ``each`` task by its own email, or one ``digest`` a day of new and overdue.
    task_mail: Mapped[str] = mapped_column(
        String(16), default=TaskMail.EACH, server_default=TaskMail.EACH.value
    )
    escalate_to: Mapped[str | None] = mapped_column(String(320))  # this user's manager
    team: Mapped[str | None] = mapped_column(String(64))
    digest_sent_at: Mapped[datetime | None] = mapped_column()


class SignInAttempts(Base):
    """How many password checks a throttle key had lately (:mod:`campaigns.web.throttle`): a
    client address with an email tried, or a client address alone. Used when ``REDIS_URL``
    is unset, so that every web process shares the counts; rows are forgotten a day after
    their last attempt."""

    __tablename__ = "sign_in_attempts"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime] = mapped_column(index=True)


class UsageMetric(Base):
    """One day of one product usage metric for an account (active users, logins, key-feature
    use...), posted by the product (``POST /api/usage``); scorecards read them over a window."""

    __tablename__ = "usage_metrics"
    __table_args__ = (Index("ix_usage_metrics_day", "day"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class HealthScore(Base):
    """An account's health on a day: the score (0-100), its band (red, yellow, green), the
    scorecard that gave it and each measure's value, score, weight and contribution."""

    __tablename__ = "health_scores"
    __table_args__ = (Index("ix_health_scores_day_band", "day", "band"),)

    # No foreign key: accounts are not deleted, and checking 250k rows a day cost 2.5 s of
    # the day's scoring on PostgreSQL (bench/health.py).
    account_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    scorecard: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    band: Mapped[str | None] = mapped_column(String(16))
    measures: Mapped[dict[str, Any]] = mapped_column(default=dict)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class TriggerMark(Base):
    """The last event a trigger point has read (:mod:`campaigns.engine.triggers`): each pass
    reads only the events after it, so a rerun opens nothing twice."""

    __tablename__ = "trigger_marks"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what to what, and when (:mod:`campaigns.store.audit`): deploys, edits, pauses,
    resumes, archives, people taken out of journeys, exports, user changes. Written in the
    same transaction as the change it records; never updated."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target_kind", "target", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))  # a user's email, or "cli:<os user>"
    action: Mapped[str] = mapped_column(String(16))  # an AuditAction
    target_kind: Mapped[str] = mapped_column(String(16))  # journey, user
    target: Mapped[str] = mapped_column(String(320))  # the journey's key, the user's email
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ConsentRecord(Base):
    """One entry of a contact's consent history: granted (with its basis, source, time and
    the wording's version) or withdrawn. Never updated. Kept at least a month after the last
    send to the address (特定電子メール法); erasing the contact clears ``contact_id`` and keeps
    the row under ``email_hash`` alone (:mod:`campaigns.store.consent`)."""

    __tablename__ = "consent_records"
    __table_args__ = (Index("ix_consent_records_contact", "contact_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    email_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the address
    action: Mapped[str] = mapped_column(String(16), default=ConsentAction.GRANTED)
    basis: Mapped[str | None] = mapped_column(String(24))  # a ConsentBasis
    source: Mapped[str | None] = mapped_column(String(255))  # import:<file>, api, preferences
    wording: Mapped[str | None] = mapped_column(String(64))  # the version of the words shown
    at: Mapped[datetime] = mapped_column()  # when it was given or withdrawn
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(320))  # a user, an API key's role, cli:<user>
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ErasedAddress(Base):
    """The hashed suppression an erased contact leaves: the sha256 of the address (lower
    case), so that it is never mailed again, with no personal data kept."""

    __tablename__ = "erased_addresses"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboundEvent(Base):
    """One outgoing event for one subscriber (:mod:`campaigns.store.outbox`): written in the
    transaction of the change it reports, posted by the worker, retried with backoff until
    the subscriber answers 2xx, then ``delivered``; ``dead`` once retries run out, until
    replayed. ``uid`` is the event's id, the same for every subscriber: receivers deduplicate
    on it (delivery is at least once)."""

    __tablename__ = "outbound_events"
    __table_args__ = (
        UniqueConstraint("uid", "subscriber", name="uq_outbound_events_uid"),
        Index("ix_outbound_events_due", "status", "next_attempt_at"),
        Index("ix_outbound_events_contact", "contact_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    uid: Mapped[str] = mapped_column(String(36))
    subscriber: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))  # an OutboundType
    occurred_at: Mapped[datetime] = mapped_column()
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    contact_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: erasure scrubs
    status: Mapped[str] = mapped_column(String(12), default=OutboundStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column()  # a deliverer's lease
    last_status: Mapped[int | None] = mapped_column(Integer)  # the last HTTP status, if any
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
