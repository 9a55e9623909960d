"""One executor per step type, and what an executor may say happens next.

An executor takes the :class:`StepContext` (the enrollment, its contact and account, the
journey, the engine's services) and the step, does the step's work idempotently (every row
it writes is keyed by enrollment and step, so a re-run writes nothing twice) and returns an
:class:`Outcome`: go on, wait until a time, or finish.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.insight import stats
from campaigns.journeys.expressions import Condition
from campaigns.journeys.model import (
    BranchStep,
    ExitStep,
    InAppStep,
    Journey,
    Step,
    StepType,
    TaskStep,
    UpdateStep,
    WaitStep,
    WaitUntilStep,
    WebhookStep,
    text_for,
)
from campaigns.store.models import (
    Account,
    Classification,
    Contact,
    Enrollment,
    Event,
    EventKind,
    InAppMessage,
    Message,
    MessageStatus,
    Task,
    TaskStatus,
)

if TYPE_CHECKING:
    from campaigns.engine.core import Engine

_TEXT_ENV = SandboxedEnvironment(autoescape=False)


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
    paused: bool = (
        False  # the step's message is queued in the batch: run the step again after delivery
    )


NEXT = Outcome()
PAUSE = Outcome(paused=True)


@dataclass
class StepContext:
    engine: Engine
    session: Session
    enrollment: Enrollment
    contact: Contact
    account: Account | None
    journey: Journey
    now: datetime
    batch: Any = None  # the engine's send batch, or None: send at once
    _values: dict[str, Any] | None = field(default=None, repr=False)

    # -- data for conditions and templates

    def values(self) -> dict[str, Any]:
        """Account fields (bare and as ``account``), ``contact`` and ``attributes``."""
        if self._values is None:
            self._values = condition_values(self.contact, self.account, self.now)
            self._values["owner"] = {
                "email": self.account.owner_email if self.account else None,
                "name": owner_name(self.account),
            }
            self._values["journey"] = {"key": self.journey.key, "name": self.journey.name}
        return self._values

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {
            "opened": lambda step: self._engaged(step, EventKind.OPEN),
            "clicked": lambda step: self._engaged(step, EventKind.CLICK),
            "answered": lambda step: self.answer(step) is not None,
            "answer": self.answer,
            "task_done": self.task_done,
            "event": self.event_since_entry,
        }

    def render(self, text: str | None) -> str:
        if not text:
            return ""
        return _compiled(text).render(**self.values(), **self.functions())

    def text(self, value: Any) -> str:
        return self.render(text_for(value, self.contact.locale.split("-")[0], self.journey.locale))

    # -- engagement with earlier steps (human signals only)

    def _engaged(self, step: str, kind: EventKind) -> bool:
        query = select(Event.id).where(
            Event.enrollment_id == self.enrollment.id,
            Event.step_id == step,
            Event.kind.in_([kind, EventKind.CLICK] if kind == EventKind.OPEN else [kind]),
            Event.classification
            == Classification.HUMAN,  # human signals only: not machines, not unknowns
        )
        return self.session.scalar(query.limit(1)) is not None

    def answer(self, step: str) -> Any:
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
    if account is None or not account.owner_email:
        return None
    local = account.owner_email.split("@", 1)[0]
    return local.replace(".", " ").replace("csm ", "").title()


def condition_values(contact: Contact, account: Account | None, now: datetime) -> dict[str, Any]:
    today = now.date()
    fields: dict[str, Any] = {}
    if account is not None:
        for name in (
            "external_id",
            "name",
            "arr",
            "ltv",
            "currency",
            "plan",
            "contract_status",
            "contract_start",
            "renewal_date",
            "industry",
            "company_size",
            "owner_email",
            "health_score",
            "tier",
        ):
            value = getattr(account, name)
            fields[name] = float(value) if name in ("arr", "ltv") and value is not None else value
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


# ---------------------------------------------------------------------------- executors

Executor = Callable[[StepContext, Step], Outcome]
EXECUTORS: dict[StepType, Executor] = {}


def executor(step_type: StepType) -> Callable[[Executor], Executor]:
    def register(fn: Executor) -> Executor:
        EXECUTORS[step_type] = fn
        return fn

    return register


@executor(StepType.EMAIL)
@executor(StepType.SURVEY)
@executor(StepType.INVITE)
def run_message(ctx: StepContext, step: Step) -> Outcome:
    """Email, survey and invite steps; a ``best_of`` step picks its channel first."""
    channel = step.type.value
    if step.best_of:
        channel = ctx.engine.choose_channel(ctx, step)
    if channel == "task":
        return run_task(ctx, step, step.blocks["task"])  # type: ignore[arg-type]
    if channel == "in_app":
        return run_in_app(ctx, step, step.blocks["in_app"])  # type: ignore[arg-type]
    return ctx.engine.deliver_step_email(ctx, step, step.blocks[channel])


@executor(StepType.WAIT)
def run_wait(ctx: StepContext, step: Step) -> Outcome:
    """Stay on this step until its time is up, so that waking the enrollment early (to
    check a goal or an exit) never cuts a wait short."""
    config = step.config
    assert isinstance(config, WaitStep)
    deadline = _deadline(ctx, step, config.duration)
    if ctx.now >= deadline:
        return NEXT
    return Outcome(goto=step.id, wait_until=deadline)


def _deadline(ctx: StepContext, step: Step, duration: timedelta) -> datetime:
    """When a wait that started the first time this step ran ends (kept in the context)."""
    waits: dict[str, str] = dict(ctx.enrollment.context.get("waits", {}))
    if step.id not in waits:
        waits[step.id] = (ctx.now + duration).isoformat()
        ctx.enrollment.context = {
            **ctx.enrollment.context,
            "waits": waits,
            f"since:{step.id}": ctx.now.isoformat(),
        }
    return datetime.fromisoformat(waits[step.id])


@executor(StepType.WAIT_UNTIL)
def run_wait_until(ctx: StepContext, step: Step) -> Outcome:
    config = step.config
    assert isinstance(config, WaitUntilStep)
    deadline = _deadline(ctx, step, config.timeout)
    since = datetime.fromisoformat(
        ctx.enrollment.context.get(f"since:{step.id}", ctx.now.isoformat())
    )
    signal = {
        "answered": lambda: ctx.answer(config.target) is not None,
        "opened": lambda: ctx._engaged(config.target, EventKind.OPEN),
        "clicked": lambda: ctx._engaged(config.target, EventKind.CLICK),
        "task_done": lambda: ctx.task_done(config.target),
        "event": lambda: ctx.event_since_entry(config.target, since),
    }[config.signal]
    if signal() or ctx.now >= deadline:
        return NEXT
    return Outcome(goto=step.id, wait_until=deadline, waiting=True)


@executor(StepType.BRANCH)
def run_branch(ctx: StepContext, step: Step) -> Outcome:
    config = step.config
    assert isinstance(config, BranchStep)
    values, functions = ctx.values(), ctx.functions()
    for arm in config.arms:
        if Condition(arm.condition)(values, functions):
            return Outcome(goto=arm.goto)
    return Outcome(goto=config.otherwise)


@executor(StepType.TASK)
def run_task_step(ctx: StepContext, step: Step) -> Outcome:
    return run_task(ctx, step, step.config)  # type: ignore[arg-type]


def run_task(ctx: StepContext, step: Step, config: TaskStep) -> Outcome:
    """Create the task for the account owner (once) and tell the owner by email."""
    owner = (
        ctx.account.owner_email if config.assignee == "owner" and ctx.account else config.assignee
    )
    if config.assignee == "owner" and not owner:
        owner = None  # no owner: the task waits in the unassigned inbox
    task = ctx.session.scalar(
        select(Task).where(Task.enrollment_id == ctx.enrollment.id, Task.step_id == step.id)
    )
    if task is None:
        task = Task(
            enrollment_id=ctx.enrollment.id,
            journey_id=ctx.enrollment.journey_id,
            step_id=step.id,
            account_id=ctx.account.id if ctx.account else None,
            contact_id=ctx.contact.id,
            owner_email=owner,
            kind=config.kind,
            title=ctx.text(config.title)[:512] or step.id,
            notes=ctx.text(config.notes) or None,
            due_at=ctx.now + config.due,
            created_at=ctx.now,
        )
        ctx.session.add(task)
        ctx.session.flush()
    if owner and ctx.engine.notify_owner(ctx, step, task).paused:
        return PAUSE  # the notice is queued in the send batch: come back once it went
    return NEXT


@executor(StepType.IN_APP)
def run_in_app_step(ctx: StepContext, step: Step) -> Outcome:
    return run_in_app(ctx, step, step.config)  # type: ignore[arg-type]


def run_in_app(ctx: StepContext, step: Step, config: InAppStep) -> Outcome:
    exists = ctx.session.scalar(
        select(InAppMessage.id).where(
            InAppMessage.enrollment_id == ctx.enrollment.id, InAppMessage.step_id == step.id
        )
    )
    if exists is None:
        item = InAppMessage(
            enrollment_id=ctx.enrollment.id,
            journey_id=ctx.enrollment.journey_id,
            step_id=step.id,
            contact_id=ctx.contact.id,
            title=ctx.text(config.title)[:512],
            body=ctx.text(config.body),
            url=ctx.render(config.url) if config.url else None,
            created_at=ctx.now,
            expires_at=ctx.now + config.expires if config.expires else None,
        )
        ctx.session.add(item)
        ctx.session.flush()
        # Counted in the inserting transaction: the row is unique per enrollment and step,
        # and its count commits or rolls back with it.
        stats.count_in_app(ctx.session, item, "in_app_created", ctx.now)
    return NEXT


@executor(StepType.WEBHOOK)
def run_webhook(ctx: StepContext, step: Step) -> Outcome:
    config = step.config
    assert isinstance(config, WebhookStep)
    return ctx.engine.deliver_webhook(ctx, step, config)


@executor(StepType.UPDATE)
def run_update(ctx: StepContext, step: Step) -> Outcome:
    config = step.config
    assert isinstance(config, UpdateStep)
    contact_attrs = dict(ctx.contact.attributes or {})
    account_attrs = dict(ctx.account.attributes or {}) if ctx.account else {}
    for key, raw in config.set.items():
        value = ctx.render(raw) if isinstance(raw, str) else raw
        if key.startswith("contact.attributes."):
            contact_attrs[key.split(".", 2)[2]] = value
        elif key.startswith("attributes.") and ctx.account:
            account_attrs[key.split(".", 1)[1]] = value
        elif key == "contact.locale" and isinstance(value, str) and value:
            ctx.contact.locale = value
        elif key == "health_score" and ctx.account:
            try:
                ctx.account.health_score = max(0, min(100, int(value)))
            except (TypeError, ValueError):
                ctx.enrollment.error = f"update {step.id}: health_score {value!r} is not a number"
    tags = [t for t in (ctx.contact.tags or []) if t not in config.remove_tags]
    tags += [t for t in config.add_tags if t not in tags]
    ctx.contact.attributes, ctx.contact.tags = contact_attrs, tags
    if ctx.account:
        ctx.account.attributes = account_attrs
    ctx._values = None
    return NEXT


@executor(StepType.EXIT)
def run_exit(ctx: StepContext, step: Step) -> Outcome:
    config = step.config
    assert isinstance(config, ExitStep)
    return Outcome(finish=config.reason)


def _next_id(journey: Journey, step: Step) -> str | None:
    ids = [s.id for s in journey.steps]
    index = ids.index(step.id)
    return ids[index + 1] if index + 1 < len(ids) else None


def next_step(journey: Journey, step_id: str) -> str | None:
    return _next_id(journey, journey.step(step_id))


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`` (the Stripe-style scheme)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def post_json(url: str, body: bytes, signature: str, timeout: float = 10.0) -> int:
    """POST ``body``; return the HTTP status (0 when the server could not be reached)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "campaigns-webhook/1",
            "X-Campaigns-Signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, TimeoutError, OSError):
        return 0


def webhook_payload(ctx: StepContext, step: Step, config: WebhookStep) -> bytes:
    def render(value: Any) -> Any:
        if isinstance(value, str):
            return ctx.render(value)
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v) for v in value]
        return value

    document = {
        "journey": ctx.journey.key,
        "step": step.id,
        "enrollment": ctx.enrollment.id,
        "contact": {"email": ctx.contact.email, "name": ctx.contact.name},
        "account": {"external_id": ctx.account.external_id, "name": ctx.account.name}
        if ctx.account
        else None,
        "sent_at": ctx.now.isoformat(),
        "data": render(dict(config.payload)),
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")


def backoff_message(
    session: Session, message: Message, error: str, now: datetime, wait: timedelta | None
) -> None:
    """A temporary failure: retry after ``wait``, or fail for good when there is none."""
    message.error = error[:2000]
    if wait is None:
        message.status = MessageStatus.FAILED
        message.not_before = None
    else:
        message.status = MessageStatus.DEFERRED
        message.not_before = now + wait


@dataclass(frozen=True)
class EmailParts:
    """What an email, survey or invite step sends one contact: the template, subject and
    preheader (Jinja strings in the contact's language) and the survey or invite blocks."""

    template: str
    locale: str
    subject: str
    preheader: str | None
    survey: Any = None  # render.SurveySpec
    invite: Any = None  # render.InviteSpec


def email_parts(ctx: StepContext, config: Any, variant: str | None = None) -> EmailParts:
    """The parts of ``config``'s email for ``ctx``'s contact, with ``variant`` (one of the
    step's variant ids) applied; the engine sends these, the dashboard previews them."""
    from campaigns.content.render import InviteSpec, SurveySpec
    from campaigns.journeys.model import EmailStep, InviteStep, SurveyStep

    locale = ctx.contact.locale.split("-")[0]
    template, subject, preheader = (
        config.template,
        config.subject,
        getattr(config, "preheader", None),
    )
    if isinstance(config, EmailStep) and variant is not None:
        chosen = next(v for v in config.variants if v.id == variant)
        template = chosen.template or template
        subject = chosen.subject or subject
        preheader = chosen.preheader or preheader
    survey = (
        SurveySpec(config.scale, ctx.text(config.question) or None)
        if isinstance(config, SurveyStep)
        else None
    )
    invite = (
        InviteSpec(
            ctx.text(config.event_name),
            config.starts_at,
            config.duration,
            config.url,
            ctx.contact.time_zone,
        )
        if isinstance(config, InviteStep)
        else None
    )
    return EmailParts(
        template,
        locale,
        text_for(subject, locale, ctx.journey.locale) or "",
        text_for(preheader, locale, ctx.journey.locale),
        survey,
        invite,
    )
