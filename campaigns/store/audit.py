"""The audit log: who deployed, edited, paused, resumed, archived, took someone out of a
journey or exported its people, and when.

:func:`record` adds an entry in the caller's transaction, so the entry lands exactly when
the change does. The dashboard names the signed-in user's email as the actor; the CLI names
``cli:<os user>`` (:func:`cli_actor`). Nothing here knows about Flask or click.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.store.enums import AuditAction
from campaigns.store.models import AuditEntry

JOURNEY = "journey"
USER = "user"


def record(
    session: Session,
    actor: str,
    action: AuditAction,
    target: str,
    *,
    kind: str = JOURNEY,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Add one entry; the caller commits (with the change it records)."""
    entry = AuditEntry(
        actor=actor[:320],
        action=str(action),
        target_kind=kind,
        target=target[:320],
        detail=detail or {},
    )
    if at is not None:
        entry.at = at
    session.add(entry)
    session.flush()
    return entry


def entries(
    session: Session,
    *,
    kind: str | None = None,
    target: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> Sequence[AuditEntry]:
    """The newest entries first, optionally of one target; ``before`` an id pages back."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(AuditEntry.target_kind == kind)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return session.scalars(query).all()


def cli_actor() -> str:
    """``cli:<os user>``: the actor of a change made from the command line."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        name = "unknown"
    return f"cli:{name}"
