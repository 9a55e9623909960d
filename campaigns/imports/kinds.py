"""What each kind of CSV file holds: its table, natural key, columns and their parsers.

An import of accounts and one of contacts run the same pipeline; everything that differs
between them is a :class:`FileKind` in :data:`KINDS`: the columns it knows, the ones it
ignores and why, the checks across columns, and the column that names an account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

from sqlalchemy import Table

from campaigns import defaults
from campaigns.currency import Currencies
from campaigns.imports.fields import (
    SIGN_CURRENCIES,
    Parser,
    money_sign,
    parse_boolean,
    parse_consent_basis,
    parse_country,
    parse_currency,
    parse_currency_in,
    parse_date,
    parse_datetime,
    parse_email,
    parse_integer,
    parse_locale,
    parse_money,
    parse_status,
    parse_tags,
    parse_text,
    parse_time_zone,
    short,
)
from campaigns.store.enums import ConsentBasis, ContractStatus
from campaigns.store.models import Account, Contact

Kind = Literal["accounts", "contacts"]


@dataclass(frozen=True)
class Field:
    name: str
    parse: Parser
    required: bool = False
    default: Any = None  # for a NOT NULL column: what a new row gets from an empty cell


@dataclass(slots=True)
class Row:
    """A checked row of a file: its line, key, typed values (by column) and attributes."""

    line: int
    key: str
    values: dict[str, Any]
    attributes: dict[str, str]
    repeat: bool = False  # the key was already written from an earlier line of this file


@dataclass(frozen=True)
class FileKind:
    name: str
    table: Table
    key: str
    fields: tuple[Field, ...]
    ignored: dict[str, str]  # column -> why it is not imported
    check: Callable[[dict[str, Any], dict[str, str]], list[str]]  # problems across columns
    reference: str | None = None  # a column naming an account, resolved per batch
    consent: bool = False  # rows that set consent_basis add to consent_records

    @property
    def written(self) -> tuple[str, ...]:
        """The table's columns an import writes (besides the key and ``attributes``): its
        fields', and ``account_id`` for the column naming an account. The others (a
        contact's ``opt_out``, an account's health) are never touched by an import."""
        names = [f.name for f in self.fields if f.name not in (self.key, self.reference)]
        return tuple(names + (["account_id"] if self.reference else []))

    @property
    def defaulted(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.default is not None)


def _check_account(
    values: dict[str, Any], cells: dict[str, str], *, base: str = defaults.BASE_CURRENCY
) -> list[str]:
    problems = []
    start, renewal = values.get("contract_start"), values.get("renewal_date")
    if start and renewal and renewal < start:
        problems.append(f"renewal_date {renewal} is before contract_start {start}")
    for column in ("arr", "ltv"):
        cell = cells.get(column, "")
        sign = None if cell.isascii() and cell.isdigit() else money_sign(cell)
        currency = values.get("currency")
        if sign and (currency or base) not in SIGN_CURRENCIES[sign]:
            named = currency or f"not given ({base} by default)"
            problems.append(
                f"{column} '{short(cells[column])}' is in {sign} but currency is {named}"
            )
    return problems


CONSENT_DETAILS = ("consent_source", "consent_at", "consent_wording")


_BASES = ", ".join(b.value for b in ConsentBasis)


def _check_contact(values: dict[str, Any], cells: dict[str, str]) -> list[str]:
    if "consent_basis" in values:
        return []
    for name in CONSENT_DETAILS:
        if name in values:
            return [f"{name} without consent_basis; say which basis ({_BASES}) the consent is"]
    return []


_ACCOUNTS_T: Table = Account.__table__  # type: ignore[assignment]
_CONTACTS_T: Table = Contact.__table__  # type: ignore[assignment]
_SYSTEM = {
    "id": "set by the database",
    "created_at": "set by the database",
    "updated_at": "set by the database",
    "attributes": "other columns become attributes",
}


def for_currencies(kind: FileKind, currencies: Currencies) -> FileKind:
    """``kind`` as an import with the rate table ``currencies`` reads it: a ``currency`` must
    have a rate, and an empty one is the base currency (for a new row)."""
    if not any(f.name == "currency" for f in kind.fields):
        return kind
    parse = parse_currency_in(currencies.codes)
    fields = tuple(
        replace(f, parse=parse, default=currencies.base) if f.name == "currency" else f
        for f in kind.fields
    )
    return replace(kind, fields=fields, check=partial(_check_account, base=currencies.base))


KINDS: dict[str, FileKind] = {
    "accounts": FileKind(
        name="accounts",
        table=_ACCOUNTS_T,
        key="external_id",
        fields=(
            Field("external_id", parse_text(_ACCOUNTS_T, "external_id"), required=True),
            Field("name", parse_text(_ACCOUNTS_T, "name"), required=True),
            Field("arr", parse_money),
            Field("ltv", parse_money),
            Field("currency", parse_currency, default="JPY"),
            Field("plan", parse_text(_ACCOUNTS_T, "plan")),
            Field("contract_status", parse_status, default=ContractStatus.ACTIVE.value),
            Field("contract_start", parse_date),
            Field("renewal_date", parse_date),
            Field("industry", parse_text(_ACCOUNTS_T, "industry")),
            Field("company_size", parse_integer(0, 2**31 - 1)),
            Field("owner_email", parse_email),
            Field("health_score", parse_integer(0, 100)),
            Field("country", parse_country),
        ),
        ignored={
            **_SYSTEM,
            "tier": "computed from the segments file",
            **{
                name: "computed from the scorecards (journeys/scorecards.yaml)"
                for name in (
                    "health_band",
                    "health_change_7d",
                    "health_change_30d",
                    "health_scored_on",
                )
            },
        },
        check=_check_account,
    ),
    "contacts": FileKind(
        name="contacts",
        table=_CONTACTS_T,
        key="email",
        fields=(
            Field("email", parse_email, required=True),
            Field("account_external_id", parse_text(_ACCOUNTS_T, "external_id")),
            Field("name", parse_text(_CONTACTS_T, "name")),
            Field("role", parse_text(_CONTACTS_T, "role")),
            Field("title", parse_text(_CONTACTS_T, "title")),
            Field("locale", parse_locale, default=defaults.DEFAULT_LOCALE),
            Field("time_zone", parse_time_zone, default=defaults.DEFAULT_TIME_ZONE),
            Field("subscribed", parse_boolean, default=True),
            Field("tags", parse_tags, default=[]),
            Field("country", parse_country),
            Field("consent_basis", parse_consent_basis),
            Field("consent_source", parse_text(_CONTACTS_T, "consent_source")),
            Field("consent_at", parse_datetime),
            Field("consent_wording", parse_text(_CONTACTS_T, "consent_wording")),
        ),
        ignored={**_SYSTEM, "account_id": "use account_external_id"},
        check=_check_contact,
        reference="account_external_id",
        consent=True,
    ),
}
