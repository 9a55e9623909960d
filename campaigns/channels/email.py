"""The customer email channel: a journey's email, survey or invite to a contact.

The message is personalised and assembled by the :class:`~campaigns.content.render.Renderer`
(tracked links, an open pixel, List-Unsubscribe with the RFC 8058 one-click POST) and handed
to the transport ``MAIL_URL`` names (:mod:`campaigns.channels.transports`). Whether and when
it may go (suppression, preferences, cap, window, rate limit) is the engine's decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from campaigns.channels.base import Receipt
from campaigns.channels.transports import Transport, push_mail
from campaigns.content.mime import OutgoingEmail
from campaigns.content.render import InviteSpec, Origin, Renderer, SurveySpec


@dataclass(frozen=True)
class Draft:
    """One customer email before rendering: its Message row (id and, on a retry, its
    Message-ID), the recipient, and the Jinja strings and context of the template."""

    message: int
    message_id: str | None
    to: str
    to_name: str | None
    template: str
    locale: str
    subject: str
    preheader: str | None
    context: Mapping[str, object]
    now: datetime
    survey: SurveySpec | None = None
    invite: InviteSpec | None = None
    origin: Origin | None = None  # the brand, the account owner, the journey and step


class EmailChannel:
    """Customer email over one transport (one connection per worker)."""

    name = "email"

    def __init__(self, renderer: Renderer, transport: Transport) -> None:
        self.renderer = renderer
        self.transport = transport

    def compose(self, draft: Draft) -> OutgoingEmail:
        return self.renderer.render(
            message=draft.message,
            message_id=draft.message_id,
            to=draft.to,
            to_name=draft.to_name,
            template=draft.template,
            locale=draft.locale,
            subject=draft.subject,
            preheader=draft.preheader,
            context=draft.context,
            survey=draft.survey,
            invite=draft.invite,
            now=draft.now,
            origin=draft.origin,
        )

    def push(self, item: OutgoingEmail) -> Receipt:
        return push_mail(self.transport, item)

    def close(self) -> None:
        self.transport.close()
