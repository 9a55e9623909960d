"""The states and kinds the tables store, as string enums: plain Python, no SQLAlchemy.

The models (:mod:`campaigns.store.models`) keep them in string columns; everything that
reads or writes a state names it through these.
"""

from __future__ import annotations

import enum


class ContractStatus(enum.StrEnum):
    TRIAL = "trial"
    ACTIVE = "active"
    RENEWING = "renewing"
    CHURNED = "churned"
    CANCELLED = "cancelled"


class JourneyStatus(enum.StrEnum):
    """A journey's lifecycle: ``draft`` is stored but runs nothing, ``live`` enrols and sends,
    ``paused`` holds every step (nobody enters, nothing is sent, waits keep their place) and
    ``archived`` is done with: its enrollments end and it leaves the lists."""

    DRAFT = "draft"
    LIVE = "live"
    PAUSED = "paused"
    ARCHIVED = "archived"


class EnrollmentState(enum.StrEnum):
    """Where one contact stands in one journey."""

    ACTIVE = "active"  # due to run its current step at next_run_at
    WAITING = "waiting"  # in a wait_until: woken by an event or its timeout (next_run_at)
    COMPLETED = "completed"  # ran off the end or reached an exit step
    GOAL = "goal"  # the journey's goal was reached
    EXITED = "exited"  # an exit condition held
    FAILED = "failed"  # a step failed for good; the error is kept on the row


class MessageStatus(enum.StrEnum):
    """One attempt to reach a contact through a channel, written before the channel is called."""

    PENDING = "pending"  # written, not yet handed to the transport
    DEFERRED = "deferred"  # held back (frequency cap, sending window, rate limit); retried later
    SENDING = "sending"  # handed to the transport; a crash leaves it in doubt
    SENT = "sent"  # the transport accepted it
    BOUNCED = "bounced"  # hard bounce; the address is suppressed
    FAILED = "failed"  # gave up after retries
    SUPPRESSED = "suppressed"  # not sent: address suppressed or contact unsubscribed


class Channel(enum.StrEnum):
    EMAIL = "email"
    TASK = "task"
    IN_APP = "in_app"
    WEBHOOK = "webhook"
    OWNER = "owner"  # mail to an account owner (a user): untracked, no unsubscribe


class EventKind(enum.StrEnum):
    DELIVERED = "delivered"
    OPEN = "open"
    CLICK = "click"
    ANSWER = "answer"  # survey score
    RSVP = "rsvp"  # invite yes/no
    COMMENT = "comment"  # the free text left on a survey's thank-you page
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    TASK_DONE = "task_done"
    CUSTOM = "custom"  # product events posted to the API: usage_dropped, renewed, login...


class Classification(enum.StrEnum):
    """Who caused a hit: a person, a machine (proxy, scanner, prefetch), or unknown."""

    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class TaskPriority(enum.StrEnum):
    """How soon a task needs a person: it orders the inbox and sets the default SLA."""

    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class TaskMail(enum.StrEnum):
    """How a user hears of their tasks: one email each, or one daily digest."""

    EACH = "each"
    DIGEST = "digest"


class HealthBand(enum.StrEnum):
    """The three bands of a health score, worst first."""

    RED = "red"
    YELLOW = "yellow"
    GREEN = "green"


class SuppressionReason(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"


class UserRole(enum.StrEnum):
    """What a dashboard user may do (:mod:`campaigns.web.roles` has the table):

    - ``admin``: everything, users included;
    - ``marketer``: journeys: edit, deploy, pause, resume, take people out, export;
    - ``csm``: accounts, contacts and their own tasks; reads the journeys' reports;
    - ``viewer``: the reports only, no personal data.
    """

    ADMIN = "admin"
    MARKETER = "marketer"
    CSM = "csm"
    VIEWER = "viewer"


class AuditAction(enum.StrEnum):
    """What the audit log records (:mod:`campaigns.store.audit`)."""

    DEPLOY = "deploy"
    LIVE = "live"  # a draft made live
    EDIT = "edit"  # a new version saved from the browser's editor
    PAUSE = "pause"
    RESUME = "resume"
    ARCHIVE = "archive"
    DRAFT = "draft"  # stored as a draft, or a live journey taken back to draft
    REMOVE = "remove"  # a contact or account taken out of a journey
    EXPORT = "export"  # enrollments exported as CSV
    USER = "user"  # a user added or changed
    CONSENT = "consent"  # a contact's consent recorded or withdrawn by a user or the API
    DATA_EXPORT = "data_export"  # all data about a contact exported (GDPR, APPI)
    ERASE = "erase"  # a contact erased: personal data gone, a hashed suppression kept
    DELETE = "delete"  # an account or contact deleted through the API
    REPLAY = "replay"  # dead outgoing events handed back for delivery


class ConsentBasis(enum.StrEnum):
    """Why a contact may get marketing mail (docs/compliance.md). Japan's law on specified
    electronic mail (特定電子メール法) asks for ``opt_in`` for this kind of mail; the other two
    are its exceptions, which some countries' rules accept."""

    OPT_IN = "opt_in"  # they agreed: with the source, the time and the wording's version
    BUSINESS_RELATIONSHIP = "business_relationship"  # an existing customer relationship
    PUBLISHED_ADDRESS = "published_address"  # an address the business itself publishes


class ConsentAction(enum.StrEnum):
    """One entry of a contact's consent history (``consent_records``)."""

    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class OutboundStatus(enum.StrEnum):
    """Where an outgoing event stands for one subscriber (``outbound_events``)."""

    PENDING = "pending"  # to be posted (again) at next_attempt_at
    DELIVERED = "delivered"  # the subscriber answered 2xx
    DEAD = "dead"  # retries ran out: on the dead-letter list until replayed


class OutboundType(enum.StrEnum):
    """The outgoing event types (docs/api.md "Outgoing events")."""

    MESSAGE_SENT = "message.sent"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_BOUNCED = "message.bounced"
    MESSAGE_OPENED = "message.opened"
    MESSAGE_CLICKED = "message.clicked"
    MESSAGE_ANSWERED = "message.answered"
    CONTACT_UNSUBSCRIBED = "contact.unsubscribed"
    TASK_CREATED = "task.created"
    TASK_DONE = "task.done"
    JOURNEY_ENTERED = "journey.entered"
    JOURNEY_EXITED = "journey.exited"
