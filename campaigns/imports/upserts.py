"""Upserts of accounts and contacts from JSON objects (the API's), by the CSV importer's rules.

Each object goes through the importer's own fields (:data:`campaigns.imports.kinds.KINDS`):
the same parsers, the same checks across columns (a renewal before its contract's start, an
amount whose sign disagrees with the currency), the same rate table for currencies. What JSON
adds to a CSV cell:

- A field left out keeps its stored value; ``null`` clears a field that may be empty, and
  puts a field with a default (``currency``, ``contract_status``, ``locale``, ``time_zone``,
  ``subscribed``, ``tags``) back to that default. The key and an account's ``name`` cannot be
  cleared.
- Numbers are taken where the importer would parse their text (``"arr": 5000000``), and
  true/false where it parses yes/no (``subscribed``). ``tags`` is an array of strings (or the
  CSV's ``a;b``), and replaces the stored list.
- ``attributes`` is an object merged key by key into the stored one, as the importer merges
  extra columns; a key set to ``null`` is removed.
- ``country`` is an ISO 3166-1 alpha-2 code (``jp`` is ``JP``).

:func:`apply` writes in the caller's transaction, one SELECT for the stored rows and one for
the accounts contacts name; it checks every object before it changes anything, so a caller
that refuses the batch on any problem (all or nothing) can simply not commit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.currency import Currencies
from campaigns.imports import consent as import_consent
from campaigns.imports.fields import CellError, parse_boolean, parse_tags, short
from campaigns.imports.kinds import KINDS, Field, FileKind, Kind, for_currencies
from campaigns.store import consent as consent_store
from campaigns.store.enums import ConsentBasis
from campaigns.store.models import Account, Contact

MAX_ATTRIBUTES = 100
"""Keys in one object's ``attributes``."""

MAX_TAGS = 100
"""Tags in one object's ``tags``."""

MAX_ATTRIBUTE_TEXT = 1000
"""Characters of one attribute's value (or key: 64)."""

Status = Literal["created", "updated", "unchanged"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""A field the object left out (as opposed to ``null``)."""


_TEXT_ONLY = {"email", "tags"}  # fields a number cannot stand for


def parse_country(value: str, name: str) -> str:
    code = unicodedata.normalize("NFKC", value).upper()
    if len(code) == 2 and code.isascii() and code.isalpha():
        return code
    raise CellError(f"{name} '{short(value)}' is not a two-letter ISO 3166-1 code such as JP or US")


@dataclass(frozen=True)
class Consent:
    """A contact's basis for marketing mail as the API gives it; see
    :func:`campaigns.store.consent.record`."""

    basis: ConsentBasis
    at: datetime | None = None  # None: now, unless the contact has this consent already
    source: str | None = None
    wording: str | None = None


@dataclass
class Change:
    """One object, checked: what it sets (``None`` clears), what it merges into the
    attributes (``None`` removes a key), and its consent (``MISSING``: left alone; ``None``:
    withdrawn)."""

    index: int
    key: str
    values: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)  # the texts given, for kind.check
    attributes: dict[str, Any] | None = None
    consent: Any = MISSING


@dataclass
class Outcome:
    index: int
    key: str
    status: Status
    id: int


@dataclass
class Applied:
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[tuple[int, str, str]] = field(default_factory=list)  # index, field, message

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def kind_for(name: Kind, currencies: Currencies) -> FileKind:
    return for_currencies(KINDS[name], currencies)


CONSENT_COLUMNS = frozenset(import_consent.COLUMNS)
"""The importer's consent columns: an object gives its consent as one ``consent`` object,
which records a history entry, never as loose fields."""


def fields_of(kind: FileKind) -> dict[str, Field]:
    """The fields an object of ``kind`` may set: the importer's but its consent columns, and
    ``country``."""
    fields = {f.name: f for f in kind.fields if f.name not in CONSENT_COLUMNS}
    fields.setdefault("country", Field("country", parse_country))
    return fields


def _text(value: Any, spec: Field) -> str:
    """A JSON value as the cell the importer would read; CellError if JSON cannot say it."""
    if isinstance(value, bool):
        if spec.parse is parse_boolean:
            return "true" if value else "false"
        raise CellError(f"{spec.name}: expected a string, got true/false")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e18 else repr(value)
    if isinstance(value, str):
        return value.strip()
    what = "an object" if isinstance(value, dict) else "an array"
    raise CellError(f"{spec.name}: expected a string or a number, got {what}")


def read(
    kind: FileKind,
    obj: dict[str, Any],
    index: int,
    where: str,
    *,
    key: str | None = None,
    extra: Sequence[str] = (),
) -> tuple[Change | None, list[tuple[str, str]]]:
    """The object ``obj`` (the ``index``-th of a request, found at ``where``) as a
    :class:`Change`, or None and its problems as (field, message). ``key``: the key the URL
    names (then the object may leave it out, or must repeat it). ``extra``: fields the caller
    reads itself (``consent``)."""
    problems: list[tuple[str, str]] = []
    fields = fields_of(kind)

    def place(name: str) -> str:
        return f"{where}.{name}" if where else name

    allowed = set(fields) | {"attributes", *extra}
    for name in sorted(obj.keys() - allowed):
        if name in CONSENT_COLUMNS:
            problems.append(
                (
                    place(name),
                    "not a field here: give consent as consent: {basis, source, at, wording}",
                )
            )
        elif name in kind.ignored:
            problems.append((place(name), f"not accepted: {kind.ignored[name]}"))
        else:
            problems.append((place(name), "unknown field; put fields of your own in attributes"))
    change = Change(index, "")
    for name, spec in fields.items():
        value = obj.get(name, MISSING)
        if value is MISSING:
            continue
        if value is None:
            if spec.required:
                problems.append((place(name), f"{name} cannot be cleared (null)"))
            else:
                change.values[name] = None  # the caller puts a default back
            continue
        if name in _TEXT_ONLY and not isinstance(value, str | list if name == "tags" else str):
            what = "an array of strings or a string" if name == "tags" else "a string"
            problems.append((place(name), f"{name}: expected {what}"))
            continue
        if name == "tags" and isinstance(value, list):
            if len(value) > MAX_TAGS:
                problems.append((place(name), f"expected at most {MAX_TAGS} tags"))
                continue
            tags: list[str] = []
            for i, tag in enumerate(value):
                if not isinstance(tag, str):
                    problems.append((place(f"tags[{i}]"), "expected a string"))
                    continue
                try:
                    tags.extend(t for t in parse_tags(tag, name) if t not in tags)
                except CellError as exc:
                    problems.append((place(f"tags[{i}]"), str(exc)))
            change.values[name] = tags
            continue
        try:
            cell = _text(value, spec)
            if not cell:
                raise CellError(
                    f"empty {name}; leave the field out to keep it, or send null to clear it"
                )
            change.raw[name] = cell
            change.values[name] = spec.parse(cell, name)
        except CellError as exc:
            problems.append((place(name), str(exc)))
    given = change.values.pop(kind.key, None)
    if key is not None:
        if given is not None and given != key:
            problems.append(
                (place(kind.key), f"{kind.key} {short(str(given))} differs from the URL's {key}")
            )
        change.key = key
    elif given is None:
        if kind.key not in obj:
            problems.append((place(kind.key), "required"))
    else:
        change.key = given
    if "attributes" in obj:
        change.attributes = _attributes(obj["attributes"], place("attributes"), problems)
    return (None if problems else change), problems


def _attributes(value: Any, where: str, problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append((where, "expected an object of your own fields"))
        return None
    if len(value) > MAX_ATTRIBUTES:
        problems.append((where, f"{len(value)} keys; at most {MAX_ATTRIBUTES}"))
        return None
    merged: dict[str, Any] = {}
    for name, item in value.items():
        if not name.strip() or len(name) > 64:
            problems.append((f"{where}.{name[:64]}", "a key of 1 to 64 characters"))
        elif isinstance(item, dict | list):
            problems.append((f"{where}.{name}", "expected a string, a number or true/false"))
        elif isinstance(item, str) and len(item) > MAX_ATTRIBUTE_TEXT:
            problems.append((f"{where}.{name}", f"longer than {MAX_ATTRIBUTE_TEXT} characters"))
        else:
            merged[name] = item
    return merged


def _current(row: Any, name: str) -> Any:
    return getattr(row, name) if row is not None else None


def apply(
    session: Session,
    kind: FileKind,
    changes: Sequence[Change],
    *,
    actor: str,
    now: datetime,
    where: str,
) -> Applied:
    """Check ``changes`` against the stored rows (an account's ``name`` on creation, the
    checks across columns with the stored values, the accounts that contacts name) and write
    the good ones in the caller's transaction. A bad change is reported and not written;
    nothing is written for it before it is found bad."""
    model: type[Account] | type[Contact] = Account if kind.name == "accounts" else Contact
    column = getattr(model, kind.key)
    keys = sorted({c.key for c in changes})
    stored: dict[str, Any] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        stored.update(
            (getattr(row, kind.key), row)
            for row in session.scalars(select(model).where(column.in_(chunk)))
        )
    accounts: dict[str, int] = {}
    if kind.reference:
        wanted = {
            c.values[kind.reference] for c in changes if c.values.get(kind.reference) is not None
        }
        if wanted:
            query = select(Account.external_id, Account.id).where(
                Account.external_id.in_(sorted(wanted))
            )
            accounts = {external: id_ for external, id_ in session.execute(query)}
    fields = fields_of(kind)
    result = Applied()
    for change in changes:
        place = f"{where}[{change.index}]"
        row: Any = stored.get(change.key)
        bad = _check(kind, change, row, accounts, place)
        if bad:
            result.problems.extend((change.index, f, m) for f, m in bad)
            continue
        created = row is None
        if created:
            row = model(**{kind.key: change.key})
            for spec in fields.values():
                if spec.default is not None:
                    setattr(row, spec.name, _fresh(spec.default))
            row.attributes = {}
            session.add(row)
            stored[change.key] = row
        changed = _set(kind, fields, row, change, accounts)
        if created or changed:
            row.updated_at = now
        session.flush()
        if change.consent is not MISSING and isinstance(row, Contact):
            changed = _consent(session, row, change.consent, actor, now) or changed
        status: Status = "created" if created else "updated" if changed else "unchanged"
        result.outcomes.append(Outcome(change.index, change.key, status, row.id))
    return result


def _fresh(default: Any) -> Any:
    return list(default) if isinstance(default, list) else default


def _check(
    kind: FileKind, change: Change, row: Any, accounts: dict[str, int], place: str
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if row is None:
        for spec in kind.fields:
            if spec.required and spec.name != kind.key and change.values.get(spec.name) is None:
                problems.append((f"{place}.{spec.name}", "required for a new " + kind.name[:-1]))
    ref = change.values.get(kind.reference) if kind.reference else None
    if kind.reference and ref is not None and ref not in accounts:
        problems.append(
            (f"{place}.{kind.reference}", f"no account with external_id {short(ref)!r}")
        )
    merged = {
        spec.name: _current(row, spec.name)
        for spec in kind.fields
        if spec.name != kind.key and spec.name != kind.reference
    } | change.values
    for message in kind.check(merged, change.raw):
        problems.append((place, message))
    return problems


def _set(
    kind: FileKind, fields: dict[str, Field], row: Any, change: Change, accounts: dict[str, int]
) -> bool:
    changed = False
    for name, value in change.values.items():
        if name == kind.reference:
            name, value = "account_id", (None if value is None else accounts[value])
        elif value is None and fields[name].default is not None:
            value = _fresh(fields[name].default)
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if change.attributes is not None:
        merged = dict(row.attributes or {})
        for name, value in change.attributes.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        if merged != (row.attributes or {}):
            row.attributes = merged
            changed = True
    return changed


def _consent(
    session: Session, contact: Contact, given: Consent | None, actor: str, now: datetime
) -> bool:
    """Record the consent if it differs from the contact's current one: sending the same
    body again adds no history entry (without an ``at``, the same basis, source and wording
    are the same consent)."""
    if given is None:
        if contact.consent_basis is None:
            return False
        consent_store.record(session, contact, None, at=now, actor=actor, source="api")
        return True
    same = (contact.consent_basis, contact.consent_source, contact.consent_wording) == (
        str(given.basis),
        given.source,
        given.wording,
    )
    if same and (given.at is None or given.at == contact.consent_at):
        return False
    consent_store.record(
        session,
        contact,
        given.basis,
        at=given.at or now,
        source=given.source,
        wording=given.wording,
        actor=actor,
    )
    return True
