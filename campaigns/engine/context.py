"""What a step executor is given and what it may say happens next.

An executor takes a :class:`StepContext` (the enrollment, its contact and account, the
journey, the time, the send batch, and the :class:`Tools` the engine lends it: channels,
settings, tuner) and returns an :class:`Outcome`: go on, wait until a time, finish, or pause
until the batch has delivered the email the step queued. Nothing here refers back to the
:class:`~campaigns.engine.core.Engine`: executors depend on this module, the engine on them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from campaigns.channels.registry import Channels
from campaigns.content import filters
from campaigns.content.locale import Reader, local_date
from campaigns.currency import DEFAULT as DEFAULT_CURRENCIES
from campaigns.currency import Currencies
from campaigns.engine.outgoing import Outgoing
from campaigns.engine.ratelimit import RateLimiter
from campaigns.engine.results import AdvanceResult
from campaigns.engine.settings import EngineSettings
from campaigns.insight import sendtime, tuning
from campaigns.journeys.fields import ACCOUNT_FIELDS, DAY_COUNTS, IN_BASE_CURRENCY, LOCAL_AMOUNTS
from campaigns.journeys.model import Journey, Text, text_for
from campaigns.journeys.segments import SegmentSet
from campaigns.store.enums import Channel, Classification, EventKind, MessageStatus, TaskStatus
from campaigns.store.models import Account, Contact, Enrollment, Event, Message, Task

_TEXT_ENV = filters.install(SandboxedEnvironment(autoescape=False))

Value = object
"""A value of a condition or template field (a number, a string, a date, a dict of them)."""


@lru_cache(maxsize=2048)
def _compiled(text: str) -> Template:
    """Journey texts (subjects, titles) are compiled once per process, not per recipient."""
    return _TEXT_ENV.from_string(text)


@dataclass(frozen=True)
class Outcome:
    """What happens after a step: ``goto`` a step (None: the next one), wait, or finish."""

    goto: str | None = None
    wait_until: datetime | None = None
    waiting: bool = False  # a wait_until: woken early by a signal
    finish: str | None = None  # a reason: the enrollment ends
    paused: bool = False  # the step's message is queued in the batch: run it again after delivery


NEXT = Outcome()
PAUSE = Outcome(paused=True)


@dataclass(frozen=True)
class Tools:
    """What the engine lends its executors: the channels, its settings, the named links of
    the templates, the tuner and send-time chooser, and the per-domain rate limiter."""

    channels: Channels
    settings: EngineSettings
    links: Mapping[str, str]
    tuner: tuning.Tuner
    send_times: sendtime.SendTimes
    rate_limiter: RateLimiter | None = None
    segments: SegmentSet | None = None  # the personas' rules (contact.persona) come from here


class Batch(Protocol):
    """The send batch a step runs in (:class:`campaigns.engine.batch.SendBatch`): the rows
    it loaded for all its enrollments at once, and its outbox."""

    counts: AdvanceResult

    def message(self, key: tuple[int, str, str], values: dict[str, object]) -> Message: ...

    def variant(self, enrollment_id: int, step_id: str, attempt_key: str = "1") -> str | None: ...

    def written(self, key: tuple[int, str, str]) -> Message | None: ...

    def suppressed(self, address: str) -> bool: ...

    def erased(self, address: str) -> bool: ...

    def recent_sends(self, contact_id: int) -> Sequence[datetime]: ...

    def queue(self, outgoing: Outgoing) -> None: ...

    def may_send(self) -> bool: ...


@dataclass
class StepContext:
    """One enrollment as its steps see it. A contact journey's has its ``contact``; an
    account journey's has none, and ``members`` (the account's contacts) instead: its
    message steps address some of them, each through :meth:`for_recipient`."""

    tools: Tools
    session: Session
    enrollment: Enrollment
    contact: Contact | None
    account: Account | None
    journey: Journey
    now: datetime
    batch: Batch | None = None  # None where nothing is sent (a preview)
    members: Sequence[Contact] = ()
    segments: SegmentSet | None = None  # None: the tools' (a preview has no tools)
    _values: dict[str, Value] | None = field(default=None, repr=False)

    def for_recipient(self, contact: Contact) -> StepContext:
        """This account enrollment as seen when addressing ``contact``: texts render for
        them, and the delivery policy (preferences, window, cap) is theirs."""
        return replace(self, contact=contact, _values=None)

    @property
    def person(self) -> Contact:
        """The contact a step addresses: the enrolled one, or the recipient being addressed."""
        if self.contact is None:
            raise LookupError("an account journey's step addresses its contacts one by one")
        return self.contact

    @property
    def locale(self) -> str:
        """The language of the enrollment's texts: the contact's; for an account, the one
        most of its contacts read (the journey's when it has none)."""
        if self.contact is not None:
            return self.contact.locale.split("-")[0]
        common = Counter(c.locale.split("-")[0] for c in self.members).most_common(1)
        return common[0][0] if common else self.journey.locale

    @property
    def time_zone(self) -> str:
        """The enrollment's time zone: the contact's; for an account, its contacts' most
        common one (UTC when it has none)."""
        if self.contact is not None:
            return self.contact.time_zone or "UTC"
        common = Counter(c.time_zone or "UTC" for c in self.members).most_common(1)
        return common[0][0] if common else "UTC"

    @property
    def sending(self) -> Batch:
        """The batch, where a step sends (every run of the engine has one)."""
        if self.batch is None:
            raise LookupError("this step context has no send batch")
        return self.batch

    # -- data for conditions and templates

    @property
    def segset(self) -> SegmentSet | None:
        """The segments file whose persona rules say who the contact is."""
        return self.segments or getattr(self.tools, "segments", None)

    def values(self) -> dict[str, Value]:
        """Account fields (bare and as ``account``), ``contact`` and ``attributes``; for a
        contact, their persona (``contact.persona``, and ``persona`` and ``persona_label``
        for templates)."""
        if self._values is None:
            # A context lent no tools (a text rendered on its own) converts at the embedded rates.
            settings = getattr(self.tools, "settings", None)
            self._values = condition_values(
                self.contact,
                self.account,
                self.now,
                time_zone=self.time_zone,
                currencies=settings.currencies if settings is not None else DEFAULT_CURRENCIES,
            )
            self._values["owner"] = {
                "email": self.account.owner_email if self.account else None,
                "name": owner_name(self.account),
            }
            self._values["journey"] = {"key": self.journey.key, "name": self.journey.name}
            self._add_persona(self._values)
        return self._values

    def _add_persona(self, values: dict[str, Value]) -> None:
        segset, person = self.segset, values.get("contact")
        persona = segset.persona_for(values) if segset and isinstance(person, dict) else None
        if isinstance(person, dict):
            person["persona"] = persona
        values["persona"] = persona
        values["persona_label"] = (
            segset.persona(persona).label_for(self.locale) if segset and persona else None
        )

    @property
    def persona(self) -> str | None:
        """The persona of the contact addressed (None: none holds, or no contact)."""
        persona = self.values().get("persona")
        return persona if isinstance(persona, str) else None

    def forget_values(self) -> None:
        """The contact or account changed (an update step): read the values again."""
        self._values = None

    def functions(self) -> dict[str, Callable[..., Value]]:
        open_, click, answer = EventKind.OPEN, EventKind.CLICK, EventKind.ANSWER
        return {
            "opened": lambda step: self.engaged(step, open_),
            "clicked": lambda step: self.engaged(step, click),
            "answered": lambda step: self.answer(step) is not None,
            "answer": self.answer,
            "task_done": self.task_done,
            "event": self.event_since_entry,
            "opened_all": lambda step: self.share(step, open_) == 1.0,
            "clicked_all": lambda step: self.share(step, click) == 1.0,
            "answered_all": lambda step: self.share(step, answer) == 1.0,
            "opened_share": lambda step: self.share(step, open_),
            "clicked_share": lambda step: self.share(step, click),
            "answered_share": lambda step: self.share(step, answer),
        }

    def reader(self) -> Reader:
        """Whose words and zone dates and numbers print in: the contact's; for an account
        enrollment's own texts (its task), its contacts' most common ones."""
        if self.contact is not None:
            return Reader(self.contact.locale or "en", self.time_zone)
        return Reader(self.locale, self.time_zone)

    def render(self, text: str | None, reader: Reader | None = None) -> str:
        if not text:
            return ""
        found = {filters.READER: reader or self.reader()}
        return _compiled(text).render(**self.values(), **self.functions(), **found)

    def text(self, value: Text | None) -> str:
        """A journey text in the enrollment's language (else the journey's), its dates and
        numbers in the words of the language it is written in."""
        chosen = text_for(value, self.locale, self.journey.locale)
        return self.render(chosen, self.reader().reading(text_language(value, chosen)))

    # -- engagement with earlier steps (human signals only)

    def engaged(self, step: str, kind: EventKind) -> bool:
        query = select(Event.id).where(
            Event.enrollment_id == self.enrollment.id,
            Event.step_id == step,
            Event.kind.in_([kind, EventKind.CLICK] if kind == EventKind.OPEN else [kind]),
            # human signals only: not machines, not unknowns
            Event.classification == Classification.HUMAN,
        )
        return self.session.scalar(query.limit(1)) is not None

    def share(self, step: str, kind: EventKind) -> float:
        """The share (0 to 1) of the contacts ``step`` reached (its sent emails) who gave a
        human ``kind`` signal; an answer counts answers and RSVPs, an open counts clicks."""
        reached = self.session.scalar(
            select(func.count(func.distinct(Message.contact_id))).where(
                Message.enrollment_id == self.enrollment.id,
                Message.step_id == step,
                Message.status == MessageStatus.SENT,
                Message.channel == Channel.EMAIL,
            )
        )
        if not reached:
            return 0.0
        kinds = {
            EventKind.OPEN: [EventKind.OPEN, EventKind.CLICK],
            EventKind.ANSWER: [EventKind.ANSWER, EventKind.RSVP],
        }.get(kind, [kind])
        human = (
            Event.classification != Classification.MACHINE
            if kind == EventKind.ANSWER
            else Event.classification == Classification.HUMAN
        )
        responded = self.session.scalar(
            select(func.count(func.distinct(Event.contact_id))).where(
                Event.enrollment_id == self.enrollment.id,
                Event.step_id == step,
                Event.kind.in_(kinds),
                human,
            )
        )
        return min(1.0, (responded or 0) / reached)

    def answer(self, step: str) -> int | str | None:
        value = self.session.scalar(
            select(Event.value)
            .where(
                Event.enrollment_id == self.enrollment.id,
                Event.step_id == step,
                Event.kind.in_([EventKind.ANSWER, EventKind.RSVP]),
                Event.classification != Classification.MACHINE,
            )
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(1)
        )
        if value is None:
            return None
        return int(value) if value.lstrip("-").isdigit() else value

    def task_done(self, step: str) -> bool:
        """The step's task is done: the one it opened, or the account's open one it joined
        (a contact journey's task opens one per account and step)."""
        joined = self.enrollment.context.get("tasks", {}).get(step)
        mine = Task.id == joined if joined else Task.enrollment_id == self.enrollment.id
        status = self.session.scalar(select(Task.status).where(mine, Task.step_id == step))
        return status == TaskStatus.DONE

    def event_since_entry(
        self, name: str, since: datetime | None = None, until: datetime | None = None
    ) -> bool:
        """A product event for the contact, or for its account (an account journey: for the
        account or any of its contacts), since entry (or ``since``), and no later than
        ``until`` if given."""
        since = since or self.enrollment.entered_at
        who: ColumnElement[bool]
        if self.contact is None:
            members = select(Contact.id).where(Contact.account_id == self.enrollment.account_id)
            who = (Event.account_id == self.enrollment.account_id) | Event.contact_id.in_(members)
        else:
            who = Event.contact_id == self.contact.id
        if self.contact is not None and self.account is not None:
            who = who | ((Event.contact_id.is_(None)) & (Event.account_id == self.account.id))
        query = select(Event.id).where(
            Event.kind == EventKind.CUSTOM, Event.name == name, Event.occurred_at >= since, who
        )
        if until is not None:
            query = query.where(Event.occurred_at <= until)
        return self.session.scalar(query.limit(1)) is not None


def text_language(value: Text | None, chosen: str | None) -> str | None:
    """The language of the text :func:`text_for` chose from ``value`` (None: a plain string)."""
    if not isinstance(value, Mapping):
        return None
    return next((lang for lang, text in value.items() if text == chosen), None)


def owner_name(account: Account | None) -> str | None:
    """A name for the account owner from their address, where no user row says better."""
    if account is None or not account.owner_email:
        return None
    local = account.owner_email.split("@", 1)[0]
    return local.replace(".", " ").replace("csm ", "").title()


def condition_values(
    contact: Contact | None,
    account: Account | None,
    now: datetime,
    time_zone: str | None = None,
    currencies: Currencies = DEFAULT_CURRENCIES,
) -> dict[str, Value]:
    """The fields conditions and texts read: the account's (bare and as ``account``) and,
    when there is one contact, ``contact``. Day counts (``days_to_renewal``) are counted from
    today in ``time_zone`` (by default the contact's), at the time of the render. Amounts
    are read as the SQL of the segment rules reads them
    (:class:`campaigns.engine.audience.RuleCompiler`): ``arr`` and ``ltv`` in the base
    currency of ``currencies``, ``arr_local`` and ``ltv_local`` as stored."""
    today = local_date(now, time_zone or (contact.time_zone if contact is not None else None))
    fields: dict[str, Value] = {}
    if account is not None:
        for name in (n for n in ACCOUNT_FIELDS if n not in DAY_COUNTS):
            if name in IN_BASE_CURRENCY:
                value = currencies.to_base(getattr(account, name), account.currency)
            else:
                value = getattr(account, LOCAL_AMOUNTS.get(name, name))
            amount = name in IN_BASE_CURRENCY or name in LOCAL_AMOUNTS
            fields[name] = float(value) if amount and value is not None else value
        fields["days_to_renewal"] = (
            (account.renewal_date - today).days if account.renewal_date else None
        )
        fields["days_since_start"] = (
            (today - account.contract_start).days if account.contract_start else None
        )
        fields["attributes"] = dict(account.attributes or {})
    else:
        fields["attributes"] = {}
    account_view = dict(fields)
    if account is not None:
        account_view["renewal_date"] = account.renewal_date
    if contact is None:
        return {**fields, "account": account_view}
    contact_values = {
        "email": contact.email,
        "name": contact.name,
        "role": contact.role,
        "title": contact.title,
        "locale": contact.locale,
        "time_zone": contact.time_zone,
        "subscribed": contact.subscribed,
        "tags": list(contact.tags or []),
        "attributes": dict(contact.attributes or {}),
    }
    return {**fields, "account": account_view, "contact": contact_values}
