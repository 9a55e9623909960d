"""Unsubscribes by mail: the ``mailto:`` of List-Unsubscribe, read from the raw message.

Every customer email's List-Unsubscribe names ``unsubscribe+TOKEN@domain`` beside the https
link, TOKEN being the https link's own signed token. The relay pipes mail for that address to
``campaigns inbound`` (docs/operations.md, "Unsubscribe by mail"), which finds the token in
the envelope recipient or the message's recipient headers, verifies it, and records the
unsubscribe as the one-click POST does: a hit of kind ``unsubscribe`` on the message
(:mod:`campaigns.tracking.hits`), so it is classified, counted and acted on the same way.
A forged or altered token finds nothing; nothing is sent back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message as RawMessage
from email.utils import getaddresses

from campaigns.tracking.hits import Hit
from campaigns.tracking.tokens import Tokens, mailto_token

MAX_MESSAGE_BYTES = 1_048_576
"""What is read of a message: an unsubscribe mail is a few KB (only its headers matter)."""

RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc")
"""Where the address may be, after the envelope recipient the relay passes."""

USER_AGENT = "campaigns inbound (List-Unsubscribe mailto)"


@dataclass(frozen=True)
class Unsubscribe:
    """A verified unsubscribe mail: the Message row it unsubscribes from, the address it
    came to and who sent it (as the mail says)."""

    message: int
    address: str
    sender: str


def read(raw: bytes, tokens: Tokens, envelope: Iterable[str] = ()) -> Unsubscribe | None:
    """The unsubscribe ``raw`` asks for, verified; None when no recipient carries one of our
    tokens. ``envelope`` are the envelope recipients, tried first (headers can be forged
    more easily, but a token is a token wherever it is found)."""
    parsed: RawMessage = message_from_bytes(raw[:MAX_MESSAGE_BYTES])
    candidates = list(envelope)
    for name in RECIPIENT_HEADERS:
        for value in parsed.get_all(name, []) or []:
            candidates.extend(a for _n, a in getaddresses([str(value)]) if a)
    for address in candidates:
        token = mailto_token(address)
        if token is None:
            continue
        payload = tokens.loads("unsub", token)
        if payload is not None and type(payload.get("m")) is int:
            sender = str(parsed.get("From", "") or "")[:320]
            return Unsubscribe(payload["m"], address.strip()[:320], " ".join(sender.split()))
    return None


def hit(found: Unsubscribe, at: float) -> Hit:
    """The hit the one-click POST would record, from this mail."""
    return Hit(
        kind="unsubscribe", message=found.message, at=at, method="POST", user_agent=USER_AGENT
    )
