"""The API's routes for keeping accounts and contacts in step with a CRM, and for data rights.

- ``PUT /accounts/<external_id>`` and ``PUT /contacts/<email>`` upsert one;
  ``POST /accounts`` and ``POST /contacts`` up to :data:`MAX_ITEMS` at once.
  Idempotent by ``external_id`` and email; a field left out keeps its stored value; the CSV
  importer's rules (:mod:`campaigns.imports.upserts`). A batch is all or nothing (422, nothing
  written) unless ``?partial=true``: then the good objects are written and the bad reported.
- ``DELETE /accounts/<external_id>`` (``?contacts=detach|erase`` when it still has contacts)
  and ``DELETE /contacts/<email>`` (erasure); ``GET /contacts/<email>/export`` (all data about
  the contact). The data rights themselves are :mod:`campaigns.engine.rights`.

Every problem is reported with its object's index and place (``contacts[3].renewal_date``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from campaigns.engine import rights
from campaigns.imports import upserts
from campaigns.imports.fields import CellError
from campaigns.imports.kinds import FileKind, Kind
from campaigns.store.enums import ConsentBasis
from campaigns.web import api_base as base
from campaigns.web import api_input
from campaigns.web.api_base import bp
from campaigns.web.api_input import MAX_ITEMS, ApiError, Problems
from campaigns.web.roles import INGEST, READ_PEOPLE, needs

CONSENT_FIELDS = {"basis", "source", "at", "wording"}

SHAPE = re.compile(
    r"^(?:unknown field|required$|expected |not accepted|a key of|longer than|no UTC offset"
    r"|\d+ keys; at most|[a-z_]+: expected|[a-z_]+ cannot be cleared|.* characters long; the most"
    r"|tag '.*' in tags is longer)"
)
"""A problem the OpenAPI document states too (an unknown field, a wrong type, a missing key, a
value too long): the object is not of the documented shape, which ``?partial=true`` does not
excuse; the rest are the CSV importer's rules."""
BASES = tuple(b.value for b in ConsentBasis)


def _kind(name: Kind) -> FileKind:
    return upserts.kind_for(name, current_app.config["CAMPAIGNS"].currencies)


def _consent(obj: dict[str, Any], where: str, index: int, problems: Problems) -> Any:
    """The object's ``consent`` as an :class:`upserts.Consent`, None (withdrawn) or MISSING."""
    if "consent" not in obj:
        return upserts.MISSING
    value, place = obj["consent"], f"{where}.consent" if where else "consent"
    if value is None:
        return None
    if not api_input.object_(value, place, CONSENT_FIELDS, {"basis"}, problems, index):
        return upserts.MISSING
    basis = value.get("basis")
    good = True
    if "basis" in value and basis not in BASES:
        problems.add(index, f"{place}.basis", f"expected one of {', '.join(BASES)}")
        good = False
    source = wording = None
    if "source" in value and value["source"] is not None:
        source = api_input.text(value, "source", place, problems, index, max_len=255)
        good = good and source is not None
    if "wording" in value and value["wording"] is not None:
        wording = api_input.text(value, "wording", place, problems, index, max_len=64)
        good = good and wording is not None
    at = None
    if "at" in value and value["at"] is not None:
        at = api_input.timestamp(value["at"], f"{place}.at", problems, index, base.now())
        good = good and at is not None
    if not good or "basis" not in value:
        return upserts.MISSING
    return upserts.Consent(ConsentBasis(basis), at, source or "api", wording)


def _read(
    kind: FileKind, obj: Any, index: int, where: str, problems: Problems, key: str | None = None
) -> upserts.Change | None:
    if not isinstance(obj, dict):
        problems.add(index, where or "(body)", f"expected an object, got {api_input.kind(obj)}")
        return None
    extra = ("consent",) if kind.name == "contacts" else ()
    change, found = upserts.read(kind, obj, index, where, key=key, extra=extra)
    for place, message in found:
        problems.add(index, place, message)
    consent = _consent(obj, where, index, problems) if extra else upserts.MISSING
    if change is not None:
        change.consent = consent
    return change if change is not None and not found else None


def _path_key(kind: FileKind, value: str) -> str:
    spec = next(f for f in kind.fields if f.name == kind.key)
    try:
        key = spec.parse(value.strip(), kind.key)
    except CellError as exc:  # the CSV importer's rules, which the document's pattern cannot say
        raise ApiError(
            422,
            f"{kind.key} in the URL is invalid; nothing was stored",
            items=[{"index": 0, "field": kind.key, "message": str(exc)}],
        ) from None
    return str(key)


def _outcome(kind: FileKind, outcome: upserts.Outcome) -> dict[str, Any]:
    return {
        "index": outcome.index,
        "status": outcome.status,
        "id": outcome.id,
        kind.key: outcome.key,
    }


def _upsert_one(name: Kind, raw_key: str) -> ResponseReturnValue:
    base.only_params(set())
    kind = _kind(name)
    key = _path_key(kind, raw_key)
    obj = api_input.body()
    problems = Problems()
    change = _read(kind, obj, 0, "", problems, key=key)
    problems.raise_if_any(1, name)
    assert change is not None

    def store(session: Session) -> upserts.Outcome:
        applied = upserts.apply(
            session, kind, [change], actor=base.actor(), now=base.now(), where=name
        )
        found = Problems()
        for index, place, message in applied.problems:
            found.add(index, place.removeprefix(f"{name}[0]").lstrip(".") or "(body)", message)
        found.raise_if_any(1, name)
        return applied.outcomes[0]

    outcome = base.transaction(store)
    response = jsonify(_outcome(kind, outcome))
    response.status_code = 201 if outcome.status == "created" else 200
    return response


def _upsert_batch(name: Kind) -> ResponseReturnValue:
    base.only_params({"partial"})
    partial = api_input.flag("partial")
    kind = _kind(name)
    body = api_input.body()
    if not isinstance(body, dict):
        raise ApiError(400, f'body: expected {{"{name}": [...]}}, got {api_input.kind(body)}')
    extra = sorted(body.keys() - {name})
    if extra:
        raise ApiError(400, f'{extra[0]}: unknown field; send {{"{name}": [...]}}')
    items = body.get(name)
    if not isinstance(items, list):
        raise ApiError(400, f"{name}: required, an array of objects")
    if len(items) > MAX_ITEMS:
        raise ApiError(413, f"{name}: {len(items)} objects; send at most {MAX_ITEMS} per request")
    if not items:
        raise ApiError(400, f"{name}: empty; send 1 to {MAX_ITEMS} objects")
    problems = Problems()
    changes = [
        c
        for i, item in enumerate(items)
        if (c := _read(kind, item, i, f"{name}[{i}]", problems)) is not None
    ]

    def store(session: Session) -> tuple[upserts.Applied, Problems]:
        found = problems.copy()  # all problems, those found against stored rows too
        applied = upserts.apply(
            session, kind, changes, actor=base.actor(), now=base.now(), where=name
        )
        for index, place, message in applied.problems:
            found.add(index, place, message)
        if not partial or any(SHAPE.match(p["message"]) for p in found.items):
            found.raise_if_any(len(items), name)  # ?partial=true excuses the importer's rules only
        return applied, found

    applied, found = base.transaction(store)
    bad = sorted({p["index"] for p in found.items})
    return jsonify(
        created=applied.count("created"),
        updated=applied.count("updated"),
        unchanged=applied.count("unchanged"),
        failed=len(bad),
        results=[_outcome(kind, o) for o in applied.outcomes],
        errors=found.items[: api_input.MAX_REPORTED],
    )


@bp.put("/accounts/<external_id>")
@needs(INGEST)
def put_account(external_id: str) -> ResponseReturnValue:
    """Create or update one account by its external_id (201 created, 200 otherwise)."""
    return _upsert_one("accounts", external_id)


@bp.put("/contacts/<email>")
@needs(INGEST)
def put_contact(email: str) -> ResponseReturnValue:
    """Create or update one contact by its email (201 created, 200 otherwise)."""
    return _upsert_one("contacts", email)


@bp.post("/accounts")
@needs(INGEST)
def post_accounts() -> ResponseReturnValue:
    """Upsert 1 to 1000 accounts: ``{"accounts": [...]}``; ``?partial=true`` keeps the good."""
    return _upsert_batch("accounts")


@bp.post("/contacts")
@needs(INGEST)
def post_contacts() -> ResponseReturnValue:
    """Upsert 1 to 1000 contacts: ``{"contacts": [...]}``; ``?partial=true`` keeps the good."""
    return _upsert_batch("contacts")


@bp.delete("/accounts/<external_id>")
@needs(INGEST)
def delete_account(external_id: str) -> ResponseReturnValue:
    """Delete an account; with contacts left, ``?contacts=detach`` or ``?contacts=erase``
    says what becomes of them (409 without it)."""
    base.only_params({"contacts"})
    choice = request.args.get("contacts")
    if choice is not None and choice not in ("detach", "erase"):
        raise ApiError(400, "contacts: expected detach or erase")
    how: Literal["detach", "erase"] | None = (
        "erase" if choice == "erase" else ("detach" if choice == "detach" else None)
    )
    key = _path_key(_kind("accounts"), external_id)

    def work(session: Session) -> dict[str, Any] | None:
        try:
            return rights.delete_account(session, key, base.actor(), now=base.now(), contacts=how)
        except rights.AccountHasContacts as exc:
            raise ApiError(
                409,
                f"the account still has {exc.count} contacts; send ?contacts=detach to keep"
                " them without an account, or ?contacts=erase to erase them",
            ) from None

    detail = base.transaction(work)
    if detail is None:
        raise ApiError(404, f"no account with external_id {key!r}")
    return jsonify(deleted=key, **detail)


@bp.delete("/contacts/<email>")
@needs(INGEST)
def erase_contact(email: str) -> ResponseReturnValue:
    """Erase a contact: their personal data goes from every table, the address's hash stays
    so that it is never mailed again. Also for an address we hold no contact for."""
    base.only_params(set())
    address = api_input.path_email(email)
    result = base.transaction(
        lambda session: rights.erase(session, address, base.actor(), now=base.now())
    )
    return jsonify(erased=True, **result.to_json())


@bp.get("/contacts/<email>/export")
@needs(READ_PEOPLE)
def export_contact(email: str) -> ResponseReturnValue:
    """All data about a contact, as JSON (audited)."""
    base.only_params(set())
    address = api_input.path_email(email)

    def work(session: Session) -> dict[str, Any]:
        try:
            return rights.export(session, address, actor=base.actor(), now=base.now())
        except rights.NoSuchContact:
            raise ApiError(404, f"no contact with email {address}") from None

    return jsonify(base.transaction(work))
