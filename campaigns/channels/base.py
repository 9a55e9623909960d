"""The one small interface every channel implements, and what a channel says back.

Modelled on listmonk's Messenger: a channel has a name, takes one item at a time
(:meth:`Channel.push`) and can be closed. It knows nothing of journeys, enrollments or
delivery policy: the engine decides whether and when an item goes (suppression, cap,
window, rate limit, retries) and hands the channel only what it needs to carry it.
A :class:`Receipt` is the channel's answer, in words the engine can act on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

Item = TypeVar("Item", contravariant=True)


class Status(enum.StrEnum):
    SENT = "sent"  # carried (accepted by the relay, posted, stored)
    RETRY = "retry"  # not this time: try again later
    FAILED = "failed"  # refused for good
    BOUNCED = "bounced"  # an email the relay refused for good (a bounce)


@dataclass(frozen=True)
class Receipt:
    """What became of one pushed item. ``bad_address``: the recipient's address itself was
    refused (only that should suppress it); ``source`` says which reply said so; ``ref``
    is the id of the row a channel stored (a task, an in-app message)."""

    status: Status
    error: str | None = None
    bad_address: bool = False
    source: str = ""
    ref: int | None = None


SENT = Receipt(Status.SENT)


@runtime_checkable
class Channel(Protocol[Item]):
    """A way to reach someone: customer email, mail to an account owner, in-app, webhook,
    task. ``push`` carries one item and never raises for a refusal (it says so in the
    receipt); an abort (a job timeout, the database gone) does propagate."""

    name: str

    def push(self, item: Item) -> Receipt: ...

    def close(self) -> None: ...
