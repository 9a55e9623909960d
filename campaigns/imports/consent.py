"""Consent columns in a contacts file: when a row changes a contact's consent, and the
history entry (``consent_records``) it then adds.

The four columns are one fact, the basis a contact gave for marketing mail, so a row
writes them together: ``consent_basis`` with its ``consent_source`` (``import:<file>``
when empty), ``consent_at`` (the import's time when empty) and ``consent_wording``. A row
whose basis and filled details equal what is stored changes nothing and adds no entry,
so importing the same export again does not grow the history. The PostgreSQL path
(:mod:`campaigns.imports.staging`) applies the same rule in SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from campaigns.store.consent import email_hash
from campaigns.store.enums import ConsentAction

COLUMNS = ("consent_basis", "consent_source", "consent_at", "consent_wording")
DETAILS = COLUMNS[1:]


def source_of(path: str) -> str:
    """The source a row without ``consent_source`` records: ``import:`` and the file's name."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return f"import:{name}"[:255]


def change(
    given: dict[str, Any], stored: dict[str, Any] | None, *, source: str, now: datetime
) -> dict[str, Any] | None:
    """The four consent columns a row writes, or None when it leaves them as stored."""
    basis = given.get("consent_basis")
    if basis is None:
        return None
    if (
        stored is not None
        and stored.get("consent_basis") == basis
        and all(given.get(name) is None or given[name] == stored.get(name) for name in DETAILS)
    ):
        return None
    return {
        "consent_basis": basis,
        "consent_source": given.get("consent_source") or source,
        "consent_at": given.get("consent_at") or now,
        "consent_wording": given.get("consent_wording"),
    }


def record_params(
    email: str, consent: dict[str, Any], *, now: datetime, path: str, line: int
) -> dict[str, Any]:
    """The values of the ``consent_records`` entry for a contact's changed consent."""
    return {
        "email": email,
        "email_hash": email_hash(email),
        "action": str(ConsentAction.GRANTED),
        "basis": consent["consent_basis"],
        "source": consent["consent_source"],
        "wording": consent["consent_wording"],
        "at": consent["consent_at"],
        "recorded_at": now,
        "detail": {"file": path, "line": line},
    }
