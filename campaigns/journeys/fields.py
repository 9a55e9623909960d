"""The fields a condition can read, owned by the language as plain data.

Account and contact fields with their types, the values a field is known to take, and the
day counts derived from dates. The store's columns carry the same names (a test holds the
two together), so a rule is checked here without loading a model, and the engine maps a
field to its column by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import nodes

from campaigns.journeys.hints import ExprProblem, suggest

NUMBER, STRING, DATE, BOOL = "number", "string", "date", "bool"

ACCOUNT_FIELDS: dict[str, str] = {
    "external_id": STRING,
    "name": STRING,
    "arr": NUMBER,
    "ltv": NUMBER,
    "arr_local": NUMBER,
    "ltv_local": NUMBER,
    "currency": STRING,
    "plan": STRING,
    "contract_status": STRING,
    "contract_start": DATE,
    "renewal_date": DATE,
    "industry": STRING,
    "company_size": NUMBER,
    "owner_email": STRING,
    "health_score": NUMBER,
    "health_band": STRING,
    "health_change_7d": NUMBER,
    "health_change_30d": NUMBER,
    "tier": STRING,
    "days_to_renewal": NUMBER,
    "days_since_start": NUMBER,
}
"""Fields of the account, usable bare (``arr``) or as ``account.arr``."""

IN_BASE_CURRENCY = ("arr", "ltv")
"""Amounts a rule reads in the base currency (:mod:`campaigns.currency`): the stored amount
at its account's rate."""

LOCAL_AMOUNTS: dict[str, str] = {"arr_local": "arr", "ltv_local": "ltv"}
"""Amounts as stored, in the account's own ``currency``, and the column each one reads."""

CONTACT_FIELDS: dict[str, str] = {
    "email": STRING,
    "name": STRING,
    "role": STRING,
    "title": STRING,
    "locale": STRING,
    "time_zone": STRING,
    "subscribed": BOOL,
}
"""Fields of the contact, usable as ``contact.role``."""

PERSONA = "persona"
DERIVED_CONTACT_FIELDS: dict[str, str] = {PERSONA: STRING}
"""Contact fields no column holds: ``contact.persona``, the first persona of
``segments.yaml`` whose rule the contact meets (None when none does), worked out when read."""

CONTRACT_STATUSES = ("trial", "active", "renewing", "churned", "cancelled")
"""The values of ``contract_status``, as the store's ``ContractStatus`` spells them."""

HEALTH_BANDS = ("red", "yellow", "green")
"""The values of ``health_band``, worst first, as the store's ``HealthBand`` spells them."""

KNOWN_VALUES: dict[str, tuple[str, ...]] = {
    "contract_status": CONTRACT_STATUSES,
    "health_band": HEALTH_BANDS,
}

DAY_COUNTS: dict[str, str] = {
    "days_to_renewal": "renewal_date",
    "days_since_start": "contract_start",
}
"""Account fields counted in days from today, and the date each is counted from."""


@dataclass(frozen=True)
class Ref:
    """A field an expression reads: ``("account", "arr")``, ``("contact_attr", "x")``..."""

    scope: str
    name: str

    @property
    def kind(self) -> str | None:
        if self.scope == "account":
            return ACCOUNT_FIELDS[self.name]
        if self.scope == "contact":
            return CONTACT_FIELDS.get(self.name) or DERIVED_CONTACT_FIELDS[self.name]
        return None  # JSON attributes: any type


def field_ref(node: nodes.Node) -> Ref | ExprProblem | None:
    """Resolve a Name/Getattr/Getitem chain to the field it reads (None if not a field)."""
    parts = _path(node)
    if parts is None:
        return None
    head, rest = parts[0], parts[1:]
    if head == "account" and rest:
        head, rest = rest[0], rest[1:]
    if head == "contact":
        return _contact_ref(rest)
    if head == "attributes":
        if len(rest) != 1:
            return ExprProblem("write attributes.<name>", None, "attributes")
        return Ref("account_attr", rest[0])
    if head in ACCOUNT_FIELDS:
        if rest:
            return ExprProblem(f"'{head}' has no field '{rest[0]}'", None, rest[0])
        return Ref("account", head)
    names = [*ACCOUNT_FIELDS, "contact", "attributes", "account"]
    return ExprProblem(
        f"unknown field '{head}'",
        suggest(head, names) or "see docs/dsl.md#conditions for the fields",
        head,
    )


def _path(node: nodes.Node) -> list[str] | None:
    """``contact.attributes['x']`` as ``["contact", "attributes", "x"]``; None if not a path."""
    parts: list[str] = []
    current: nodes.Node = node
    while True:
        if isinstance(current, nodes.Getattr):
            parts.append(current.attr)
            current = current.node
        elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const):
            parts.append(str(current.arg.value))
            current = current.node
        elif isinstance(current, nodes.Name):
            parts.append(current.name)
            break
        else:
            return None
    parts.reverse()
    return parts


def _contact_ref(rest: list[str]) -> Ref | ExprProblem:
    if not rest:
        return ExprProblem(
            "'contact' alone is not a value", "name a field, e.g. contact.role", "contact"
        )
    if rest[0] == "attributes":
        if len(rest) != 2:
            return ExprProblem("write contact.attributes.<name>", None, "attributes")
        return Ref("contact_attr", rest[1])
    known = [*CONTACT_FIELDS, *DERIVED_CONTACT_FIELDS]
    if rest[0] not in known or len(rest) > 1:
        return ExprProblem(
            f"unknown contact field '{rest[0]}'",
            suggest(rest[0], known) or f"contact fields: {', '.join(known)}",
            rest[0],
        )
    return Ref("contact", rest[0])


def referenced_fields(expr: nodes.Expr) -> list[Ref]:
    """The fields ``expr`` reads (for tier and segment dependency checks)."""
    refs: list[Ref] = []
    for node in expr.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        ref = field_ref(node)
        if isinstance(ref, Ref) and ref not in refs:
            refs.append(ref)
    return refs
