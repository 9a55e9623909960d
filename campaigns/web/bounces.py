"""Reading the bounce and complaint notifications the mail relay posts to the API.

Two formats: our own plain JSON (:func:`generic`), and Amazon SES notifications
(:func:`ses`), which arrive wrapped in Amazon SNS envelopes that the route unwraps. Each
becomes one :class:`~campaigns.tracking.bounces.Notice` per recipient, with a dedupe key when the
notification can be told apart from a repeat; what is wrong is added to the request's
problems. ``campaigns.tracking.bounces`` stores the notices.
"""

from __future__ import annotations

import hashlib
from email.utils import parseaddr
from typing import Any

from campaigns.store.enums import EventKind
from campaigns.tracking.bounces import Notice
from campaigns.web import api_input
from campaigns.web.api_input import Problems

GENERIC_FIELDS = {"type", "email", "message_id", "bounce_type", "diagnostic"}


def generic(obj: dict[str, Any], index: int, where: str, problems: Problems) -> list[Notice]:
    """Our own format, one recipient per object: ``{"type": "bounce", "email": ..., "bounce_type":
    "hard", ...}``, ``{"type": "complaint", ...}`` or ``{"type": "delivery", ...}`` (the
    receiving server accepted it); no notice when the object has a problem."""
    before = len(problems.items)
    api_input.object_(obj, where, GENERIC_FIELDS, {"type", "email"}, problems, index)
    kind = obj.get("type")
    if "type" in obj and kind not in ("bounce", "complaint", "delivery"):
        problems.add(
            index,
            api_input.join(where, "type"),
            f"expected 'bounce', 'complaint' or 'delivery', got {str(kind)[:20]!r}",
        )
    email = (
        api_input.address(obj.get("email"), api_input.join(where, "email"), problems, index)
        if "email" in obj
        else None
    )
    message_id = api_input.text(obj, "message_id", where, problems, index, max_len=255)
    bounce_type = obj.get("bounce_type")
    if kind == "bounce" and bounce_type not in ("hard", "soft"):
        problems.add(
            index,
            api_input.join(where, "bounce_type"),
            f"expected 'hard' or 'soft' for a bounce, got {str(bounce_type)[:20]!r}",
        )
    if kind in ("complaint", "delivery") and "bounce_type" in obj:
        problems.add(index, api_input.join(where, "bounce_type"), "only for bounces")
    diagnostic = api_input.text(obj, "diagnostic", where, problems, index, max_len=2000)
    if len(problems.items) > before or email is None:
        return []
    event_kind = {
        "bounce": EventKind.BOUNCE,
        "complaint": EventKind.COMPLAINT,
        "delivery": EventKind.DELIVERED,
    }[str(kind)]
    key = (
        f"webhook:{_digest(event_kind, str(bounce_type), email, message_id.strip().strip('<>'))}"
        if message_id
        else None
    )
    detail = (
        {"source": "webhook", "bounce_type": bounce_type, "diagnostic": diagnostic}
        if kind == "bounce"
        else {"source": "webhook"}
    )
    return [
        Notice(
            index,
            event_kind,
            email,
            bounce_type == "hard",
            (message_id,) if message_id else (),
            diagnostic,
            "webhook",
            key,
            None,
            detail,
        )
    ]


def ses(obj: dict[str, Any], index: int, where: str, problems: Problems) -> list[Notice] | None:
    """An Amazon SES notification (``notificationType``, or ``eventType`` from event publishing):
    a bounce, a complaint or a delivery; None for the other kinds (Send, Reject, ...)."""
    for key in ("notificationType", "eventType"):
        if key in obj and not isinstance(obj[key], str):
            # A kind we do not know is ignored (SES adds kinds), but one that is not even a name is
            # a broken sender.
            problems.add(
                index,
                api_input.join(where, key),
                f"expected a string such as 'Bounce', got {api_input.kind(obj[key])}",
            )
            return []
    kind = obj.get("notificationType", obj.get("eventType"))
    if kind not in ("Bounce", "Complaint", "Delivery"):
        return None
    mail = obj.get("mail", {})
    if not isinstance(mail, dict):
        problems.add(
            index, api_input.join(where, "mail"), f"expected an object, got {api_input.kind(mail)}"
        )
        return []
    ids = _ses_message_ids(mail)
    part = obj.get(kind.lower())
    place = api_input.join(where, kind.lower())
    if not isinstance(part, dict):
        problems.add(index, place, f"expected an object, got {api_input.kind(part)}")
        return []
    if kind == "Delivery":
        return _ses_delivery(part, ids, index, place, problems)
    list_name = "bouncedRecipients" if kind == "Bounce" else "complainedRecipients"
    recipients = part.get(list_name)
    if not isinstance(recipients, list) or not recipients:
        problems.add(
            index,
            api_input.join(place, list_name),
            f"expected a non-empty array, got {api_input.kind(recipients)}",
        )
        return []
    feedback_id = part.get("feedbackId") if isinstance(part.get("feedbackId"), str) else None
    when = api_input.timestamp(
        part.get("timestamp"), "timestamp", Problems(), index
    )  # a bad one is no reason to lose the bounce
    bounce_type = part.get("bounceType")
    if kind == "Bounce" and not isinstance(bounce_type, str):
        problems.add(
            index,
            api_input.join(place, "bounceType"),
            f"expected Permanent, Transient or Undetermined, got {api_input.kind(bounce_type)}",
        )
    feedback_type = (
        part.get("complaintFeedbackType")
        if isinstance(part.get("complaintFeedbackType"), str)
        else None
    )
    if feedback_type == "not-spam":
        return None  # the recipient said it is not spam: nothing to act on
    notices = []
    for i, recipient in enumerate(recipients):
        spot = f"{api_input.join(place, list_name)}[{i}]"
        if not isinstance(recipient, dict):
            problems.add(index, spot, f"expected an object, got {api_input.kind(recipient)}")
            continue
        raw = recipient.get("emailAddress")
        if isinstance(raw, str) and "<" in raw and not api_input.is_address(raw):
            raw = parseaddr(raw)[
                1
            ]  # "Taro <taro@example.co.jp>"; a plain address may hold a "<" itself
        email = api_input.address(raw, api_input.join(spot, "emailAddress"), problems, index)
        diagnostic = (
            recipient.get("diagnosticCode")
            if isinstance(recipient.get("diagnosticCode"), str)
            else None
        )
        if email is None:
            continue
        if kind == "Bounce":
            detail = {
                "source": "ses",
                "bounce_type": bounce_type,
                "bounce_subtype": part.get("bounceSubType"),
                "diagnostic": diagnostic,
                "feedback_id": feedback_id,
            }
            notice = Notice(
                index,
                EventKind.BOUNCE,
                email,
                bounce_type == "Permanent",
                ids,
                diagnostic,
                "ses",
                None,
                when,
                detail,
            )
        else:
            detail = {"source": "ses", "feedback_type": feedback_type, "feedback_id": feedback_id}
            notice = Notice(
                index,
                EventKind.COMPLAINT,
                email,
                False,
                ids,
                feedback_type,
                "ses",
                None,
                when,
                detail,
            )
        notice.key = (
            f"ses:{_digest(feedback_id, email)}"
            if feedback_id
            else (f"ses:{_digest(kind, str(bounce_type), email, *ids)}" if ids else None)
        )
        notices.append(notice)
    return notices


def _ses_delivery(
    part: dict[str, Any], ids: tuple[str, ...], index: int, place: str, problems: Problems
) -> list[Notice]:
    """An SES Delivery notification: the receiving server accepted the message for each of
    ``delivery.recipients`` (plain addresses)."""
    recipients = part.get("recipients")
    where = api_input.join(place, "recipients")
    if not isinstance(recipients, list) or not recipients:
        problems.add(index, where, f"expected a non-empty array, got {api_input.kind(recipients)}")
        return []
    when = api_input.timestamp(part.get("timestamp"), "timestamp", Problems(), index)
    notices = []
    for i, raw in enumerate(recipients):
        if isinstance(raw, str) and "<" in raw and not api_input.is_address(raw):
            raw = parseaddr(raw)[1]
        email = api_input.address(raw, f"{where}[{i}]", problems, index)
        if email is None:
            continue
        smtp = part.get("smtpResponse") if isinstance(part.get("smtpResponse"), str) else None
        notices.append(
            Notice(
                index,
                EventKind.DELIVERED,
                email,
                False,
                ids,
                smtp[:2000] if smtp else None,
                "ses",
                f"ses:{_digest('Delivery', email, *ids)}" if ids else None,
                when,
                {"source": "ses", "smtp_response": smtp},
            )
        )
    return notices


def _ses_message_ids(mail: dict[str, Any]) -> tuple[str, ...]:
    """Our Message-ID header as SES reports it (it sends under an id of its own,
    ``mail.messageId``)."""
    ids = []
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        ids.append(common["messageId"])
    headers = mail.get("headers")
    if isinstance(headers, list):
        ids += [
            h["value"]
            for h in headers
            if isinstance(h, dict)
            and str(h.get("name", "")).lower() == "message-id"
            and isinstance(h.get("value"), str)
        ]
    if isinstance(mail.get("messageId"), str):
        ids.append(mail["messageId"])
    return tuple(dict.fromkeys(i for i in ids if i.strip() and len(i) <= 255))


def _digest(*parts: str | None) -> str:
    """A short hash of the parts that tell a notice from another, for its dedupe key."""
    return hashlib.sha256("\n".join(p or "" for p in parts).encode()).hexdigest()[:40]
