"""Mail about tasks that no journey step sends: a trigger task's notice, an escalation, a
daily digest. Each is mail to a user on the owner channel (:mod:`campaigns.channels.owner`).

Exactly once, as every email of the engine: a ``messages`` row is written first, keyed by
its step and attempt key (unique for rows with no enrollment, migration 0010):
``task:<id>``/``owner`` for a notice, ``escalation:<id>``/``escalation``,
``digest:<user id>:<day>``/``digest``; the task's ``notified_at`` or ``escalated_at`` is set
in the same commit. :func:`deliver` then takes each row that is due with one
``UPDATE ... WHERE status ...`` (two passes cannot both take it), renders it, marks it
"sending" with its Message-ID, commits, and only then calls the relay. A pass that dies
while sending leaves the row "sending"; it goes again :data:`RESEND_AFTER` later under the
same Message-ID. Temporary refusals are retried with the engine's backoff.

- **Escalation**: an open task past its due time, not escalated yet, goes once to the
  owner's manager: ``users.escalate_to``, else the address of their ``users.team`` in
  ``triggers.yaml``'s ``escalation: {teams: ...}``, else its ``default`` (a task with no
  owner, or an owner with no user row, goes to the default). None of them: no escalation.
  The owner is in Cc.
- **Digest**: a user with ``task_mail: digest`` gets no notice per task; at the first pass
  at or after ``TASK_DIGEST_HOUR`` o'clock in ``TASK_TIME_ZONE`` each day, one email lists
  their open tasks not yet mailed (``notified_at`` empty) and their overdue ones, grouped by
  account, the most pressing priority first, escalations marked. Once it went, the listed
  tasks get ``notified_at`` and the user ``digest_sent_at``. A day with nothing to list
  sends nothing (its row says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.channels import owner as owner_mail
from campaigns.channels.base import Status
from campaigns.channels.owner import Letter, Notice, OwnerMail
from campaigns.content.locale import format_datetime, format_days, format_duration, local_time
from campaigns.content.mime import InvalidAddress, OutgoingEmail
from campaigns.engine import delivery
from campaigns.engine.context import condition_values
from campaigns.journeys.triggers import PRIORITIES, Escalation
from campaigns.store.enums import Channel, MessageStatus, TaskMail, TaskStatus
from campaigns.store.models import Account, Contact, Message, Task, User

log = logging.getLogger("campaigns.taskmail")

RESEND_AFTER = timedelta(minutes=10)
"""A row left "sending" by a pass that died is sent again (same Message-ID) this long after."""

MAX_LETTERS = 500
"""Letters one pass queues of each kind, and sends, at most; the rest go on the next pass."""

NOTICE, ESCALATION, DIGEST = "owner", "escalation", "digest"
"""The attempt keys of the three letters (``owner``: the stats count it ``owner_notified``)."""


@dataclass
class MailCounts:
    notices: int = 0
    escalations: int = 0
    digests: int = 0
    sent: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Built:
    """A letter ready to go, and what to mark once it went (the digest's tasks)."""

    mail: OutgoingEmail
    listed: tuple[int, ...] = ()
    user_id: int | None = None


@dataclass
class Place:
    """The reader's settings for task mail: the team's zone, the digest hour."""

    time_zone: str = "UTC"
    digest_hour: int = 8
    default_locale: str = "en"
    escalation: Escalation = field(default_factory=Escalation)


# ---------------------------------------------------------------------------- queueing


def _row(
    session: Session, key: str, attempt: str, to: str, template: str, locale: str, now: datetime
) -> bool:
    """Write the letter's row (False: it was written before)."""
    message = Message(
        enrollment_id=None,
        contact_id=None,
        journey_id=None,
        step_id=key[:128],
        attempt_key=attempt,
        channel=Channel.OWNER,
        category="transactional",
        template=template,
        locale=locale,
        to_address=to[:320],
        status=MessageStatus.PENDING,
        tries=0,
        links=[],
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        return False
    return True


def _user_join() -> Any:
    return User.email == func.lower(Task.owner_email)


def queue_notices(session: Session, now: datetime, place: Place) -> int:
    """A notice row for each new trigger task whose owner takes each task by mail (or has
    no user row); the task is marked notified in the same commit."""
    rows = session.execute(
        select(Task.id, Task.owner_email, User.locale)
        .outerjoin(User, _user_join())
        .where(
            Task.trigger.is_not(None),
            Task.notified_at.is_(None),
            Task.status == TaskStatus.OPEN,
            Task.owner_email.is_not(None),
            or_(User.id.is_(None), User.task_mail != TaskMail.DIGEST),
        )
        .order_by(Task.id)
        .limit(MAX_LETTERS)
    ).all()
    queued = 0
    for task_id, to, locale in rows:
        if not to:
            continue
        language = owner_mail.language(locale, place.default_locale)
        if _row(session, f"task:{task_id}", NOTICE, to.lower(), owner_mail.TEMPLATE, language, now):
            queued += 1
        session.execute(update(Task).where(Task.id == task_id).values(notified_at=now))
    return queued


def escalate(session: Session, now: datetime, place: Place) -> int:
    """Escalate every open task past its due time, once: its row written and the task marked
    (``escalated_at``, ``escalated_to``) in one commit."""
    rows = session.execute(
        select(Task.id, Task.owner_email, User.escalate_to, User.team, User.locale)
        .outerjoin(User, _user_join())
        .where(
            Task.status == TaskStatus.OPEN,
            Task.due_at.is_not(None),
            Task.due_at < now,
            Task.escalated_at.is_(None),
        )
        .order_by(Task.due_at, Task.id)
        .limit(MAX_LETTERS)
    ).all()
    managers = {
        row.id: place.escalation.address(row.escalate_to, row.team)
        if row.owner_email
        else place.escalation.default
        for row in rows
    }
    wanted = {a for a in managers.values() if a}
    locales = (
        dict(
            session.execute(
                select(User.email, User.locale).where(User.email.in_(sorted(wanted)))
            ).all()
        )
        if wanted
        else {}
    )
    escalated = 0
    for row in rows:
        to = managers[row.id]
        if not to:
            continue  # nowhere to go: it stays overdue in the inbox
        to = to.strip().lower()
        language = owner_mail.language(locales.get(to) or row.locale, place.default_locale)
        _row(
            session,
            f"escalation:{row.id}",
            ESCALATION,
            to,
            owner_mail.ESCALATION_TEMPLATE,
            language,
            now,
        )
        session.execute(
            update(Task)
            .where(Task.id == row.id, Task.escalated_at.is_(None))
            .values(escalated_at=now, escalated_to=to)
        )
        escalated += 1
    return escalated


def digest_day(now: datetime, place: Place) -> date | None:
    """The day whose digest is due at ``now`` (None before the digest hour)."""
    local = local_time(now, place.time_zone)
    return local.date() if local.hour >= place.digest_hour else None


def queue_digests(session: Session, now: datetime, place: Place) -> int:
    """A digest row for each digest user who has none for today yet (at or after the hour)."""
    day = digest_day(now, place)
    if day is None:
        return 0
    users = session.execute(
        select(User.id, User.email, User.locale).where(User.task_mail == TaskMail.DIGEST)
    ).all()
    keys = {u.id: f"digest:{u.id}:{day.isoformat()}" for u in users}
    done = (
        set(
            session.scalars(
                select(Message.step_id).where(
                    Message.enrollment_id.is_(None),
                    Message.attempt_key == DIGEST,
                    Message.step_id.in_(sorted(keys.values())),
                )
            )
        )
        if keys
        else set()
    )
    queued = 0
    for user in users:
        if keys[user.id] in done or queued >= MAX_LETTERS:
            continue
        language = owner_mail.language(user.locale, place.default_locale)
        if _row(
            session, keys[user.id], DIGEST, user.email, owner_mail.DIGEST_TEMPLATE, language, now
        ):
            queued += 1
    return queued


# ---------------------------------------------------------------------------- delivering


def _due(now: datetime) -> Any:
    return and_(
        Message.enrollment_id.is_(None),
        Message.channel == Channel.OWNER,
        or_(
            Message.status == MessageStatus.PENDING,
            and_(
                Message.status.in_([MessageStatus.DEFERRED, MessageStatus.SENDING]),
                Message.not_before <= now,
            ),
        ),
    )


def deliver(
    sessions: sessionmaker[Session], now: datetime, channel: OwnerMail, place: Place
) -> tuple[int, int]:
    """Send the letters that are due (see the module's text): (sent, failed)."""
    with sessions() as session:
        ids = list(
            session.scalars(
                select(Message.id).where(_due(now)).order_by(Message.id).limit(MAX_LETTERS)
            )
        )
    sent = failed = 0
    for message_id in ids:
        with sessions() as session, session.begin():
            taken = session.execute(
                update(Message)
                .where(Message.id == message_id, _due(now))
                .values(
                    status=MessageStatus.SENDING,
                    tries=Message.tries + 1,
                    not_before=now + RESEND_AFTER,
                )
            )
            if not getattr(taken, "rowcount", 0):
                continue  # another pass took it
            message = session.get(Message, message_id)
            assert message is not None
            built, why = _build(session, message, channel, now, place)
            if built is None:
                message.status, message.error = MessageStatus.SUPPRESSED, why
                continue
            message.message_id, message.subject = built.mail.message_id, built.mail.subject
        receipt = channel.push(built.mail)
        with sessions() as session, session.begin():
            message = session.get(Message, message_id)
            assert message is not None
            if receipt.status == Status.SENT:
                message.status, message.sent_at, message.error = MessageStatus.SENT, now, None
                if built.listed:
                    session.execute(
                        update(Task).where(Task.id.in_(built.listed)).values(notified_at=now)
                    )
                if built.user_id is not None:
                    session.execute(
                        update(User).where(User.id == built.user_id).values(digest_sent_at=now)
                    )
                sent += 1
                continue
            wait = delivery.backoff(message.tries) if receipt.status == Status.RETRY else None
            message.error = (receipt.error or receipt.status)[:2000]
            if wait is None:
                message.status = (
                    MessageStatus.BOUNCED
                    if receipt.status == Status.BOUNCED
                    else MessageStatus.FAILED
                )
                failed += 1
            else:
                message.status, message.not_before = MessageStatus.DEFERRED, now + wait
    return sent, failed


def _build(
    session: Session, message: Message, channel: OwnerMail, now: datetime, place: Place
) -> tuple[Built | None, str]:
    """The letter of a row, or (None, why it is not sent)."""
    kind, _, rest = message.step_id.partition(":")
    builder: Callable[..., tuple[Built | None, str]] | None = {
        "task": _notice,
        "escalation": _escalation,
        "digest": _digest,
    }.get(kind)
    if builder is None or not channel.has(message.template or ""):
        return None, f"no template {message.template} in the project"
    try:
        return builder(session, message, rest, channel, now, place)
    except InvalidAddress as exc:
        return None, str(exc)


def _user(session: Session, address: str | None) -> User | None:
    if not address:
        return None
    return session.scalar(select(User).where(User.email == address.strip().lower()))


def _name(user: User | None, address: str | None) -> str | None:
    if user is not None and user.name:
        return user.name
    if not address:
        return None
    return address.split("@", 1)[0].replace(".", " ").title()


def task_facts(
    task: Task, account: Account | None, locale: str, place: Place, now: datetime
) -> dict[str, object]:
    """What a letter says about one task, in the reader's words."""
    due = owner_mail.format_due(task.due_at, locale, place.time_zone)
    escalated_on = (
        owner_mail.format_due(task.escalated_at, locale, place.time_zone)
        if task.escalated_at
        else ""
    )
    return {
        "id": task.id,
        "title": task.title,
        "kind": task.kind,
        "priority": task.priority,
        "trigger": task.trigger,
        "notes": task.notes,
        "due": due,
        "due_at": format_datetime(task.due_at, place.time_zone, locale) if task.due_at else "",
        "overdue": bool(task.status == TaskStatus.OPEN and task.due_at and task.due_at < now),
        "new": task.notified_at is None,
        "escalated_to": task.escalated_to,
        "escalated_on": escalated_on,
        "account": account.name if account else None,
        "url": "",
    }


def _notice(
    session: Session, message: Message, rest: str, channel: OwnerMail, now: datetime, place: Place
) -> tuple[Built | None, str]:
    task = session.get(Task, int(rest)) if rest.isdigit() else None
    if task is None or task.status != TaskStatus.OPEN:
        return None, "the task was closed before its notice went"
    account = session.get(Account, task.account_id) if task.account_id else None
    contact = session.get(Contact, task.contact_id) if task.contact_id else None
    user = _user(session, message.to_address)
    locale = message.locale or place.default_locale
    facts = {
        "title": task.title,
        "kind": task.kind,
        "notes": task.notes,
        "priority": task.priority,
        "trigger": task.trigger,
        "escalated_to": task.escalated_to,
        "escalated_on": owner_mail.format_due(task.escalated_at, locale, place.time_zone)
        if task.escalated_at
        else "",
    }
    context = condition_values(contact, account, now, place.time_zone)
    if contact is None and account is not None:
        first = session.scalar(
            select(Contact).where(Contact.account_id == account.id).order_by(Contact.id).limit(1)
        )
        contact_id = first.id if first is not None else None
    else:
        contact_id = contact.id if contact is not None else None
    mail = channel.compose(
        Notice(
            message=message.id,
            message_id=message.message_id,
            to=str(message.to_address),
            to_name=_name(user, message.to_address),
            locale=locale,
            task=facts,
            due=task.due_at,
            contact_id=contact_id,
            context=context,
            now=now,
            time_zone=place.time_zone,
        )
    )
    return Built(mail), ""


def _escalation(
    session: Session, message: Message, rest: str, channel: OwnerMail, now: datetime, place: Place
) -> tuple[Built | None, str]:
    task = session.get(Task, int(rest)) if rest.isdigit() else None
    if task is None or task.status != TaskStatus.OPEN:
        return None, "the task was closed before its escalation went"
    account = session.get(Account, task.account_id) if task.account_id else None
    manager = _user(session, message.to_address)
    owner = _user(session, task.owner_email)
    locale = message.locale or place.default_locale
    facts = task_facts(task, account, locale, place, now)
    facts["url"] = (
        f"{channel.base_url.rstrip('/')}/tasks?owner={task.owner_email or 'all'}&escalated=1"
    )
    owner_name = _name(owner, task.owner_email)
    contact = session.get(Contact, task.contact_id) if task.contact_id else None
    context = {
        "contact": {"name": contact.name, "email": contact.email} if contact else {},
        "manager": {"email": message.to_address, "name": _name(manager, message.to_address)},
        "owner": {"email": task.owner_email, "name": owner_name},
        "task": facts,
        "account": {"name": account.name if account else None},
        "overdue_for": _overdue_for(task.due_at, now, locale),
    }
    subject = owner_mail.ESCALATION_SUBJECTS.get(locale, owner_mail.ESCALATION_SUBJECTS["en"])
    letter = Letter(
        message=message.id,
        message_id=message.message_id,
        template=owner_mail.ESCALATION_TEMPLATE,
        subject=subject.format(title=task.title, owner=owner_name or task.owner_email or "-"),
        to=str(message.to_address),
        to_name=_name(manager, message.to_address),
        locale=locale,
        context=context,
        now=now,
        time_zone=place.time_zone,
        cc=((task.owner_email.lower(), owner_name),) if task.owner_email else (),
    )
    return Built(channel.compose_letter(letter)), ""


def _overdue_for(due: datetime | None, now: datetime, locale: str) -> str:
    """How long past its due time a task is, in the reader's words: ``2 days``, ``3時間``."""
    if due is None:
        return ""
    late = now - due
    if late >= timedelta(days=1):
        return format_days(late.days, locale)
    minutes = max(1, int(late.total_seconds() // 60))
    step = 60 if minutes >= 60 else 1
    return format_duration(timedelta(minutes=minutes - minutes % step), locale)


PRIORITY_ORDER = {p: i for i, p in enumerate(PRIORITIES)}
NEVER = datetime.max.replace(tzinfo=UTC)


def digest_tasks(session: Session, email: str, now: datetime) -> list[Task]:
    """The owner's open tasks a digest lists: not yet mailed, or overdue."""
    return list(
        session.scalars(
            select(Task).where(
                func.lower(Task.owner_email) == email.lower(),
                Task.status == TaskStatus.OPEN,
                or_(Task.notified_at.is_(None), and_(Task.due_at.is_not(None), Task.due_at < now)),
            )
        )
    )


def group_tasks(
    tasks: Sequence[Task], accounts: dict[int, Account], facts: Callable[[Task], dict[str, object]]
) -> list[dict[str, object]]:
    """Tasks by account: each account's tasks most pressing first (priority, then due), and
    the accounts in the order of their most pressing task."""

    def rank(task: Task) -> tuple[int, datetime, int]:
        return (PRIORITY_ORDER.get(task.priority, 9), task.due_at or NEVER, task.id)

    by_account: dict[int, list[Task]] = {}
    for task in sorted(tasks, key=rank):
        by_account.setdefault(task.account_id or 0, []).append(task)
    groups: list[dict[str, object]] = []
    for account_id, items in by_account.items():  # in the order of their first (best) task
        account = accounts.get(account_id)
        groups.append(
            {
                "account": account.name if account else None,
                "tasks": [facts(t) for t in items],
            }
        )
    return groups


def _digest(
    session: Session, message: Message, rest: str, channel: OwnerMail, now: datetime, place: Place
) -> tuple[Built | None, str]:
    user_id, _, day = rest.partition(":")
    user = session.get(User, int(user_id)) if user_id.isdigit() else None
    if user is None:
        return None, "the user is gone"
    tasks = digest_tasks(session, user.email, now)
    if not tasks:
        return None, "nothing to list"
    locale = message.locale or place.default_locale
    accounts = {
        a.id: a
        for a in session.scalars(
            select(Account).where(Account.id.in_({t.account_id for t in tasks if t.account_id}))
        )
    }
    base = channel.base_url.rstrip("/")

    def facts(task: Task) -> dict[str, object]:
        found = task_facts(task, accounts.get(task.account_id or 0), locale, place, now)
        found["url"] = f"{base}/tasks?owner=me"
        return found

    groups = group_tasks(tasks, accounts, facts)
    new = sum(1 for t in tasks if t.notified_at is None)
    overdue = sum(1 for t in tasks if t.due_at is not None and t.due_at < now)
    shown_day = owner_mail.format_due(date.fromisoformat(day), locale) if day else ""
    context = {
        "owner": {"email": user.email, "name": user.name or _name(None, user.email)},
        "day": shown_day,
        "groups": groups,
        "counts": {"new": new, "overdue": overdue, "total": len(tasks)},
    }
    subject = owner_mail.DIGEST_SUBJECTS.get(locale, owner_mail.DIGEST_SUBJECTS["en"])
    letter = Letter(
        message=message.id,
        message_id=message.message_id,
        template=owner_mail.DIGEST_TEMPLATE,
        subject=subject.format(day=shown_day, new=new, overdue=overdue),
        to=user.email,
        to_name=user.name or None,
        locale=locale,
        context=context,
        now=now,
        time_zone=place.time_zone,
    )
    return Built(channel.compose_letter(letter), tuple(t.id for t in tasks), user.id), ""
