"""A contact's consent to marketing mail: the current basis on the contact's row, and every
grant and withdrawal in ``consent_records``, written in the caller's transaction.

Records are keyed by :func:`email_hash` as well as the contact, so that erasing the contact
(which clears ``contact_id``) keeps the proof of consent without the address itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from campaigns.store.enums import ConsentAction, ConsentBasis, MessageStatus
from campaigns.store.models import ConsentRecord, Contact, ErasedAddress, Message

LAST_SENT_AT = "last_sent_at"
"""The key of ``consent_records.detail`` that keeps, once the contact is erased, when mail
last went to the address (ISO 8601, or None if never): the retention purge reads it."""


def email_hash(address: str) -> str:
    """The sha256 (hex) of the address, stripped and lower-cased: how consent records and
    erased addresses name a person without keeping the address."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def record(
    session: Session,
    contact: Contact,
    basis: ConsentBasis | None,
    *,
    at: datetime,
    source: str | None = None,
    wording: str | None = None,
    actor: str | None = None,
    detail: dict[str, Any] | None = None,
) -> ConsentRecord:
    """Set ``contact``'s basis for marketing mail (``None``: withdrawn) and add the history
    entry; the caller commits. The contact must have an id (flushed)."""
    action = ConsentAction.WITHDRAWN if basis is None else ConsentAction.GRANTED
    contact.consent_basis = None if basis is None else str(basis)
    contact.consent_source = None if basis is None else (source or None)
    contact.consent_at = at
    contact.consent_wording = None if basis is None else (wording or None)
    entry = ConsentRecord(
        contact_id=contact.id,
        email_hash=email_hash(contact.email),
        action=str(action),
        basis=None if basis is None else str(basis),
        source=(source or None) and source[:255],
        wording=(wording or None) and wording[:64],
        at=at,
        actor=(actor or None) and actor[:320],
        detail=detail or {},
    )
    session.add(entry)
    return entry


def history(session: Session, contact: Contact) -> list[ConsentRecord]:
    """The contact's consent history, oldest first (the rows of an erased predecessor with
    the same address included: they share the hash)."""
    return list(
        session.scalars(
            select(ConsentRecord)
            .where(
                (ConsentRecord.contact_id == contact.id)
                | (ConsentRecord.email_hash == email_hash(contact.email))
            )
            .order_by(ConsentRecord.at, ConsentRecord.id)
        )
    )


def last_sent_at(session: Session, contact: Contact) -> datetime | None:
    """When mail last went to ``contact`` (any channel's message row marked sent or bounced,
    to the contact or to its address), or None."""
    return session.scalar(
        select(func.max(Message.sent_at)).where(
            (Message.contact_id == contact.id) | (Message.to_address == contact.email.lower()),
            Message.status.in_((MessageStatus.SENT, MessageStatus.BOUNCED)),
        )
    )


def detach(session: Session, contact: Contact) -> int:
    """Before ``contact`` is erased or deleted: keep its consent records under the address's
    hash alone (``contact_id`` cleared) with :data:`LAST_SENT_AT` written into each, so that
    the retention purge can tell when the month after the last send ends once the messages
    are gone. The caller commits (in the erasure's transaction); the number of records."""
    last = last_sent_at(session, contact)
    stamp = last.astimezone(UTC).isoformat() if last is not None else None
    records = session.scalars(
        select(ConsentRecord).where(ConsentRecord.contact_id == contact.id)
    ).all()
    for entry in records:
        entry.detail = {**(entry.detail or {}), LAST_SENT_AT: stamp}
        entry.contact_id = None
    session.flush()
    return len(records)


@dataclass(frozen=True)
class Purged:
    """What :func:`purge` did: records deleted, and records of erased contacts kept (the
    month after the last send is not over, or no time is known to count from)."""

    deleted: int
    kept: int


def purge(session: Session, now: datetime, retention: timedelta) -> Purged:
    """Delete the consent records of contacts that are gone (``contact_id`` NULL) whose
    address was last sent to more than ``retention`` ago. The last send is the latest
    :data:`LAST_SENT_AT` among the address's records; where none was sent (or none written)
    the erasure's time counts instead (nothing goes to an erased address, so that is later
    than any send). An address with neither is kept. Records of a live contact are never
    touched. The caller commits."""
    cutoff = now - retention
    rows = session.execute(
        select(ConsentRecord.id, ConsentRecord.email_hash, ConsentRecord.detail).where(
            ConsentRecord.contact_id.is_(None)
        )
    ).all()
    if not rows:
        return Purged(0, 0)
    groups: dict[str, list[int]] = {}
    last: dict[str, datetime] = {}
    for row_id, hashed, detail in rows:
        groups.setdefault(hashed, []).append(row_id)
        sent = _moment((detail or {}).get(LAST_SENT_AT))
        if sent is not None and (hashed not in last or sent > last[hashed]):
            last[hashed] = sent
    erased = dict(
        session.execute(
            select(ErasedAddress.email_hash, ErasedAddress.erased_at).where(
                ErasedAddress.email_hash.in_(groups)
            )
        ).all()
    )
    doomed: list[int] = []
    kept = 0
    for hashed, ids in groups.items():
        when = last.get(hashed) or erased.get(hashed)
        if when is not None and when < cutoff:
            doomed.extend(ids)
        else:
            kept += len(ids)
    for start in range(0, len(doomed), 1000):
        session.execute(
            delete(ConsentRecord).where(ConsentRecord.id.in_(doomed[start : start + 1000]))
        )
    return Purged(len(doomed), kept)


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
