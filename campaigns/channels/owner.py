"""Mail to account owners: the notice a CSM gets when a journey or a trigger point opens a
task for them, the escalation their manager gets when it is overdue (the owner in Cc), and
the daily digest of new and overdue tasks a user may take instead of one notice each.

It is mail to one of our own users, not marketing to a customer, so it is its own channel:
addressed to the user (their name, in their language: ``users.locale``; dates and numbers
in that language too, through the same filters as every template), with no
List-Unsubscribe, no preference link, no tracking pixel and no tracked links (a click in it
must not count as the customer's, and an unsubscribe in it must not unsubscribe the
customer it is about). It says ``Auto-Submitted: auto-generated`` (RFC 3834) so that
out-of-office replies stay away, and its links go to the dashboard under ``BASE_URL``: the
owner's task inbox and the customer's page (where the account's details and open tasks are).
Exactly-once is the engine's, as for every email: the Message row is written first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from campaigns.channels.base import Receipt
from campaigns.channels.transports import Transport, push_mail
from campaigns.content.filters import READER
from campaigns.content.locale import Reader, format_date, local_date
from campaigns.content.mime import OutgoingEmail, address_field, check_address, make_message_id
from campaigns.content.render import Personalised, Renderer

TEMPLATE = "owner_task_notification"
ESCALATION_TEMPLATE = "owner_task_escalation"
DIGEST_TEMPLATE = "owner_task_digest"
TEMPLATES = (TEMPLATE, ESCALATION_TEMPLATE, DIGEST_TEMPLATE)

SUBJECTS = {"en": "[Task] {title}", "ja": "[タスク] {title}"}
"""The notice's subject per language (the language of the owner, not of the customer)."""

ESCALATION_SUBJECTS = {
    "en": "[Overdue] {title} ({owner})",
    "ja": "[期限超過] {title}（担当：{owner}）",
}
"""The escalation's subject, in the manager's language."""

DIGEST_SUBJECTS = {
    "en": "Your tasks, {day}: {new} new, {overdue} overdue",
    "ja": "タスクのお知らせ（{day}）：新規{new}件・期限超過{overdue}件",
}
"""The daily digest's subject, in the owner's language."""

HEADERS = ("Auto-Submitted: auto-generated", "X-Auto-Response-Suppress: All")
"""RFC 3834, and what Exchange reads instead: no automatic replies to a notice."""


def language(locale: str | None, default: str) -> str:
    """The owner's language for templates and subjects (``ja-JP`` -> ``ja``); ``default``
    (the journey's) when the user has none or one we have no words for."""
    for candidate in (locale, default):
        short = (candidate or "").split("-")[0].lower()
        if short in SUBJECTS:
            return short
    return "en"


def format_due(due: date | datetime | None, language: str, time_zone: str = "UTC") -> str:
    """The task's due date in the owner's words: ``2027年1月22日（金）``, ``January 22, 2027``;
    a due moment is read as its day in ``time_zone``."""
    if due is None:
        return ""
    day = local_date(due, time_zone) if isinstance(due, datetime) else due
    return format_date(day, language)


def dashboard_links(base_url: str, contact_id: int | None) -> dict[str, str]:
    """The notice's links: the owner's task inbox, and the customer's page in the dashboard
    (their account, open tasks and timeline; the inbox when the account has no contact).
    Both need the owner to be signed in."""
    base = base_url.rstrip("/")
    customer = f"{base}/contacts/{int(contact_id)}" if contact_id else f"{base}/tasks?owner=me"
    return {
        "url": f"{base}/tasks?owner=me",
        "account_url": customer,
        "inbox_url": f"{base}/tasks",
    }


@dataclass(frozen=True)
class Notice:
    """One notice to an owner: the Message row (id, and on a retry its Message-ID), the
    owner as a user (address, name, language), the task, the contact it is about, and the
    rest of the template's context (the account and contact fields, the journey).
    ``time_zone`` is the zone the owner's dates are read in (users have none of their own:
    the engine passes the zone of the contact the task is about, or of the account's contacts)."""

    message: int
    message_id: str | None
    to: str
    to_name: str | None
    locale: str
    task: Mapping[str, object]
    due: date | datetime | None
    contact_id: int | None
    context: Mapping[str, object]
    now: datetime
    time_zone: str = "UTC"


@dataclass(frozen=True)
class Letter:
    """Any other mail to a user: a template, a subject already written (literal text), the
    context the template reads, and copies (``cc``: the owner of an escalated task)."""

    message: int
    message_id: str | None
    template: str
    subject: str
    to: str
    to_name: str | None
    locale: str
    context: Mapping[str, object]
    now: datetime
    time_zone: str = "UTC"
    cc: tuple[tuple[str, str | None], ...] = ()  # (address, name)


class OwnerMail:
    """Mail to account owners, rendered without tracking, over the email transport; its
    links point into the dashboard at ``base_url``."""

    name = "owner"

    def __init__(self, renderer: Renderer, transport: Transport, base_url: str) -> None:
        self.renderer = renderer
        self.transport = transport
        self.base_url = base_url

    def available(self) -> bool:
        """Whether the project has the notice's template (a project may leave it out)."""
        return self.renderer.store.exists(TEMPLATE)

    def compose(self, notice: Notice) -> OutgoingEmail:
        renderer = self.renderer
        task = {
            **notice.task,
            "due": format_due(notice.due, notice.locale, notice.time_zone),
            **dashboard_links(self.base_url, notice.contact_id),
        }
        context = {
            **notice.context,
            "owner": {"email": notice.to, "name": notice.to_name},
            "task": task,
            # The owner reads the notice: their language, not the customer's.
            READER: Reader(notice.locale, notice.time_zone),
        }
        title = str(task.get("title", ""))
        # The title was rendered once already (a journey text): a brace in it is literal.
        subject = SUBJECTS.get(notice.locale, SUBJECTS["en"]).format(title=title)
        parts = renderer.personalise(
            message=notice.message,
            template=TEMPLATE,
            locale=notice.locale,
            subject=subject.replace("{", "{{ '{' }}"),
            preheader=None,
            context=context,
        )
        message_id = notice.message_id or make_message_id(notice.message, renderer.domain)
        return self._assemble(
            notice.message, message_id, notice.to, notice.to_name, parts, notice.now, ()
        )

    def has(self, template: str) -> bool:
        """Whether the project has ``template`` (escalations and digests need theirs)."""
        return self.renderer.store.exists(template)

    def compose_letter(self, letter: Letter) -> OutgoingEmail:
        """An escalation or a digest: rendered in the reader's language and zone, untracked,
        ``Auto-Submitted``, with its copies in Cc and in the envelope."""
        renderer = self.renderer
        context = {
            **letter.context,
            "inbox_url": f"{self.base_url.rstrip('/')}/tasks",
            READER: Reader(letter.locale, letter.time_zone),
        }
        parts = renderer.personalise(
            message=letter.message,
            template=letter.template,
            locale=letter.locale,
            subject=letter.subject.replace("{", "{{ '{' }}"),
            preheader=None,
            context=context,
        )
        message_id = letter.message_id or make_message_id(letter.message, renderer.domain)
        copies = tuple((check_address(a), n) for a, n in letter.cc if a.lower() != letter.to)
        return self._assemble(
            letter.message, message_id, letter.to, letter.to_name, parts, letter.now, copies
        )

    def _assemble(
        self,
        message: int,
        message_id: str,
        to: str,
        to_name: str | None,
        parts: Personalised,
        now: datetime,
        copies: tuple[tuple[str, str | None], ...],
    ) -> OutgoingEmail:
        """The MIME message of a notice or letter: untracked, no unsubscribe, ``Auto-Submitted``,
        its ``copies`` in Cc and in the envelope."""
        headers: tuple[str, ...] = HEADERS
        if copies:
            cc = ", ".join(address_field("Cc", name, address) for address, name in copies)
            headers = (*HEADERS, f"Cc: {cc}")
        raw = self.renderer.assemble(
            message=message,
            message_id=message_id,
            to=to,
            to_name=to_name,
            subject=parts.subject,
            html=parts.html,
            text=parts.text,
            unsubscribe_url=None,
            now=now,
            headers=headers,
        )
        return OutgoingEmail(
            message_id=message_id,
            to=to,
            mail_from=self.renderer.sender.address,
            subject=parts.subject,
            raw=raw,
            links=(),
            cc=tuple(address for address, _ in copies),
        )

    def push(self, item: OutgoingEmail) -> Receipt:
        return push_mail(self.transport, item)

    def close(self) -> None:
        self.transport.close()
