"""A contact's consent to marketing mail: the current basis on the contact's row, and every
grant and withdrawal in ``consent_records``, written in the caller's transaction.

Records are keyed by :func:`email_hash` as well as the contact, so that erasing the contact
(which clears ``contact_id``) keeps the proof of consent without the address itself.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from campaigns.store.enums import ConsentAction, ConsentBasis
from campaigns.store.models import ConsentRecord, Contact


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
