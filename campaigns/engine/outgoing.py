"""One email on its way through a send batch: its row, its channel, how to render it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from campaigns.channels.base import Channel
from campaigns.content.mime import OutgoingEmail
from campaigns.store.enums import MessageStatus
from campaigns.store.models import Message


@dataclass
class Outgoing:
    """One email on its way: its row, the channel that carries it (customer email or owner
    mail), how to render it, and (once prepared) the MIME."""

    message: Message
    channel: Channel[OutgoingEmail]
    render: Callable[[], OutgoingEmail]
    marketing: bool
    contact_id: int | None
    rendered: OutgoingEmail | None = None

    def prepare(self) -> None:
        """Render, and mark the row "sending" with its Message-ID (the caller commits)."""
        rendered = self.render()
        message = self.message
        message.message_id = rendered.message_id
        message.subject = rendered.subject
        message.links = list(rendered.links)
        message.status = MessageStatus.SENDING
        message.tries += 1
        self.rendered = rendered

    def unprepare(self) -> None:
        """Never handed to the channel (the batch stopped first): pending again, keeping
        its Message-ID for the next run."""
        self.message.status = MessageStatus.PENDING
        self.message.tries -= 1
