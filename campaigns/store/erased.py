"""Erased addresses: the sha256 an erased contact leaves in ``erased_addresses``, and the
tombstone address its row keeps.

An erased contact's row stays (messages, enrollments and events point at it, and the reports
count them), but holds no personal data: its address becomes ``erased-<id>@erased.invalid``
(``.invalid`` is reserved by RFC 2606 and is never delivered). The real address survives only
as its hash, which the send-time gate looks up, so the address is never mailed again, even
when it is imported or upserted anew.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.store.consent import email_hash
from campaigns.store.models import ErasedAddress

ERASED_DOMAIN = "erased.invalid"
"""The domain of a tombstone's address (RFC 2606: never resolves, never delivered)."""

_CHUNK = 500  # hashes per IN (...): well under SQLite's and PostgreSQL's bound-parameter limits


def tombstone_address(contact_id: int) -> str:
    """The address an erased contact's row keeps: unique, and no one's."""
    return f"erased-{contact_id}@{ERASED_DOMAIN}"


def is_tombstone(address: str) -> bool:
    return address.strip().lower().endswith("@" + ERASED_DOMAIN)


def erased_among(session: Session, addresses: Iterable[str]) -> set[str]:
    """Those of ``addresses`` (lower-cased) that were erased or are tombstones, in one query
    per 500 addresses: the batch's preload, so the gate costs no query per message."""
    by_hash: dict[str, str] = {}
    found: set[str] = set()
    for address in addresses:
        address = address.strip().lower()
        if is_tombstone(address):
            found.add(address)
        else:
            by_hash[email_hash(address)] = address
    hashes = list(by_hash)
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[start : start + _CHUNK]
        query = select(ErasedAddress.email_hash).where(ErasedAddress.email_hash.in_(chunk))
        found.update(by_hash[h] for h in session.scalars(query))
    return found


def is_erased(session: Session, address: str) -> bool:
    """Whether ``address`` belongs to an erased contact (by its hash) or is a tombstone."""
    return bool(erased_among(session, [address]))
