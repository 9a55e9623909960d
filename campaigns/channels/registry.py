"""Every channel by name: what the engine builds at start and the docs must describe.

Adding a channel (say, Slack for account owners) is its module under ``campaigns/channels/``
(a class with ``name``, ``push`` and ``close``: :class:`~campaigns.channels.base.Channel`),
a field here, and a line in ``build``; the engine reaches it as ``channels.<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Never

from campaigns.channels.base import Channel
from campaigns.channels.email import EmailChannel
from campaigns.channels.in_app import InAppChannel
from campaigns.channels.owner import OwnerMail
from campaigns.channels.task import TaskChannel
from campaigns.channels.transports import Transport
from campaigns.channels.webhook import RecordingWebhook, WebhookChannel
from campaigns.content.render import Renderer


@dataclass(frozen=True)
class Channels:
    """One instance of each channel, for one engine (one worker process)."""

    email: EmailChannel
    owner: OwnerMail
    in_app: InAppChannel
    webhook: WebhookChannel
    task: TaskChannel

    def by_name(self) -> dict[str, Channel[Never]]:
        """Each channel under its ``name`` (the registry's field names are the same)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def close(self) -> None:
        for channel in self.by_name().values():
            channel.close()


NAMES = tuple(f.name for f in fields(Channels))
"""The channels there are, by name (``docs/channels.md`` describes each)."""


def build(
    renderer: Renderer, transport: Transport, *, webhook_secret: str, dry_run: bool = False
) -> Channels:
    """The channels, given what they need: the renderer and the email transport (shared by
    customer email and owner mail: one connection per worker; owner mail links to the
    dashboard at the renderer's ``BASE_URL``) and the webhook secret.

    ``dry_run``: every channel with an effect outside the database is a recording stand-in
    (the webhook here; the email channels are as dry as the transport they are given, a
    :class:`~campaigns.channels.transports.RecordingTransport` in a dry run). In-app
    messages and tasks are rows of the database the dry run writes to, its private copy."""
    webhook = RecordingWebhook(webhook_secret) if dry_run else WebhookChannel(webhook_secret)
    return Channels(
        email=EmailChannel(renderer, transport),
        owner=OwnerMail(renderer, transport, renderer.tokens.base_url),
        in_app=InAppChannel(),
        webhook=webhook,
        task=TaskChannel(),
    )
