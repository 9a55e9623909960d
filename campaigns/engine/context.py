"""What a step executor is given and what it may say happens next.

An executor takes a :class:`StepContext` (the enrollment, its contact and account, the
journey, the time, the send batch, and the :class:`Tools` the engine lends it: channels,
settings, tuner) and returns an :class:`Outcome`: go on, wait until a time, finish, or pause
until the batch has delivered the email the step queued. Nothing here refers back to the
:class:`~campaigns.engine.core.Engine`: executors depend on this module, the engine on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.channels.registry import Channels
from campaigns.currency import DEFAULT as DEFAULT_CURRENCIES
from campaigns.currency import Currencies
from campaigns.engine.outgoing import Outgoing
from campaigns.engine.ratelimit import RateLimiter
from campaigns.engine.results import AdvanceResult
from campaigns.engine.settings import EngineSettings
from campaigns.insight import sendtime, tuning
from campaigns.journeys.fields import ACCOUNT_FIELDS, DAY_COUNTS, IN_BASE_CURRENCY, LOCAL_AMOUNTS
from campaigns.journeys.model import Journey, Text, text_for
from campaigns.store.enums import Classification, EventKind, TaskStatus
from campaigns.store.models import Account, Contact, Enrollment, Event, Message, Task

_TEXT_ENV = SandboxedEnvironment(autoescape=False)

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


class Batch(Protocol):
    """The send batch a step runs in (:class:`campaigns.engine.batch.SendBatch`): the rows
    it loaded for all its enrollments at once, and its outbox."""

    counts: AdvanceResult

    def message(self, key: tuple[int, str, str], values: dict[str, object]) -> Message: ...

    def variant(self, enrollment_id: int, step_id: str) -> str | None: ...

    def suppressed(self, address: str) -> bool: ...

    def recent_sends(self, contact_id: int) -> Sequence[datetime]: ...

    def queue(self, outgoing: Outgoing) -> None: ...

    def may_send(self) -> bool: ...


@dataclass
class StepContext:
    tools: Tools
    session: Session
    enrollment: Enrollment
    contact: Contact
    account: Account | None
    journey: Journey
    now: datetime
    batch: Batch | None = None  # None where nothing is sent (a preview)
    _values: dict[str, Value] | None = field(default=None, repr=False)

    @property
    def sending(self) -> Batch:
        """The batch, where a step sends (every run of the engine has one)."""
        if self.batch is None:
            raise LookupError("this step context has no send batch")
        return self.batch

    # -- data for conditions and templates

    def values(self) -> dict[str, Value]:
        """Account fields (bare and as ``account``), ``contact`` and ``attributes``."""
        if self._values is None:
            self._values = condition_values(
                self.contact, self.account, self.now, self.tools.settings.currencies
            )
            self._values["owner"] = {
                "email": self.account.owner_email if self.account else None,
                "name": owner_name(self.account),
            }
            self._values["journey"] = {"key": self.journey.key, "name": self.journey.name}
        return self._values

    def forget_values(self) -> None:
        """The contact or account changed (an update step): read the values again."""
        self._values = None

    def functions(self) -> dict[str, Callable[..., Value]]:
        return {
            "opened": lambda step: self.engaged(step, EventKind.OPEN),
            "clicked": lambda step: self.engaged(step, EventKind.CLICK),
            "answered": lambda step: self.answer(step) is not None,
            "answer": self.answer,
            "task_done": self.task_done,
            "event": self.event_since_entry,
        }

    def render(self, text: str | None) -> str:
        if not text:
            return ""
        return _compiled(text).render(**self.values(), **self.functions())

    def text(self, value: Text | None) -> str:
        return self.render(text_for(value, self.contact.locale.split("-")[0], self.journey.locale))

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
        status = self.session.scalar(
            select(Task.status).where(
                Task.enrollment_id == self.enrollment.id, Task.step_id == step
            )
        )
        return status == TaskStatus.DONE

    def event_since_entry(self, name: str, since: datetime | None = None) -> bool:
        since = since or self.enrollment.entered_at
        who = Event.contact_id == self.contact.id
        if self.account is not None:
            who = who | ((Event.contact_id.is_(None)) & (Event.account_id == self.account.id))
        query = select(Event.id).where(
            Event.kind == EventKind.CUSTOM, Event.name == name, Event.occurred_at >= since, who
        )
        return self.session.scalar(query.limit(1)) is not None


def owner_name(account: Account | None) -> str | None:
    """A name for the account owner from their address, where no user row says better."""
    if account is None or not account.owner_email:
        return None
    local = account.owner_email.split("@", 1)[0]
    return local.replace(".", " ").replace("csm ", "").title()


def condition_values(
    contact: Contact,
    account: Account | None,
    now: datetime,
    currencies: Currencies = DEFAULT_CURRENCIES,
) -> dict[str, Value]:
    """The fields a condition or a template reads, as the SQL of the segment rules reads them
    (:class:`campaigns.engine.audience.RuleCompiler`): ``arr`` and ``ltv`` in the base
    currency of ``currencies``, ``arr_local`` and ``ltv_local`` as stored, day counts from
    ``now``'s date."""
    today = now.date()
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
    contact_values = {
        "email": contact.email,
        "name": contact.name,
        "role": contact.role,
        "locale": contact.locale,
        "time_zone": contact.time_zone,
        "subscribed": contact.subscribed,
        "tags": list(contact.tags or []),
        "attributes": dict(contact.attributes or {}),
    }
    account_view = dict(fields)
    if account is not None:
        account_view["renewal_date"] = account.renewal_date
    return {**fields, "account": account_view, "contact": contact_values}
