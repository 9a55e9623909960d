"""Who each contact is: their persona, by the persona rules of ``segments.yaml``.

The personas are tried in the file's order and the first whose rule holds names the
contact's persona (None when none holds). Two forms give the same answer: this module
evaluates the rules in Python, as journey conditions are evaluated (the fields of
:func:`campaigns.engine.context.condition_values`), for the contacts a step addresses or a
page shows; :meth:`campaigns.engine.audience.RuleCompiler.persona_case` spells them as one
SQL ``CASE`` for counts over every contact. Nothing is stored: a persona follows its
contact's fields (a new title is a new persona at the next send).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.engine.context import condition_values
from campaigns.journeys.segments import SegmentSet
from campaigns.store.models import Account, Contact

_CHUNK = 500
"""Ids per ``IN (...)`` when contacts or accounts are loaded by id."""


def persona_of(
    segset: SegmentSet, contact: Contact, account: Account | None, now: datetime
) -> str | None:
    """``contact``'s persona (``account``: theirs, or None), as of ``now``: the first persona
    of ``segset`` whose rule holds. Day counts (``days_to_renewal``) count in the contact's
    time zone, as their journey conditions do."""
    if not segset.personas:
        return None
    return segset.persona_for(condition_values(contact, account, now, currencies=segset.currencies))


def personas_for(
    session: Session, segset: SegmentSet, contacts: Iterable[Contact | int], now: datetime
) -> dict[int, str | None]:
    """Contact id -> persona (None: no persona's rule holds) for ``contacts`` (rows, or
    ids; an id of no contact is left out). Their accounts are read in one query per few
    hundred, not one per contact."""
    rows: list[Contact] = []
    ids: list[int] = []
    for item in contacts:
        if isinstance(item, Contact):
            rows.append(item)
        else:
            ids.append(int(item))
    for chunk in _chunks(list(dict.fromkeys(ids))):
        rows.extend(session.scalars(select(Contact).where(Contact.id.in_(chunk))))
    account_ids = list(dict.fromkeys(c.account_id for c in rows if c.account_id is not None))
    accounts: dict[int, Account] = {}
    for chunk in _chunks(account_ids):
        accounts.update(
            (a.id, a) for a in session.scalars(select(Account).where(Account.id.in_(chunk)))
        )
    return {
        c.id: persona_of(
            segset, c, accounts.get(c.account_id) if c.account_id is not None else None, now
        )
        for c in rows
    }


def _chunks(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
