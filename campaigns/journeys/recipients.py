"""Account journeys in the DSL: ``enrol: account``, whom their message steps address
(``recipients``), and what cannot stand in them.

An account journey enrols each account (company) once; its email, survey and invite steps
address the account's contacts chosen by ``recipients`` (the journey's default, or the
step's own): ``all``, the ``primary`` contact, a list of roles, or ``{roles: [...], when:
<condition over contact fields>}``. Its conditions read the account only: there is no one
contact whose fields they could mean. So a task, webhook or update step of an account
journey may not name ``contact`` in its texts, and an in-app step (shown to one person in the
product) has no place in one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from campaigns.journeys.expressions import Scope
from campaigns.journeys.hints import suggest
from campaigns.journeys.model import Recipients, Unit
from campaigns.journeys.reading import Context, check_keys, read_choice, read_condition
from campaigns.journeys.segments import DEFAULT_ROLES
from campaigns.journeys.vocabulary import RECIPIENT_KEYS, RECIPIENT_WORDS, UNITS
from campaigns.journeys.yamlsource import Map, Pos, Seq, describe

RECIPIENT_STEPS = ("email", "survey", "invite", "in_app")
"""The step types that address an account's contacts in an account journey."""

_NAMES_CONTACT = re.compile(r"(\{\{|\{%)[^}]*\bcontact\b")
_RECIPIENTS_HINT = (
    "recipients: all | primary | [billing, executive] | {roles: [...], when: <condition>}"
)


def read_unit(ctx: Context, doc: Map) -> Unit:
    """``enrol: contact`` (the default) or ``enrol: account``."""
    if "enrol" not in doc:
        return Unit.CONTACT
    chosen = read_choice(ctx, doc, "enrol", UNITS)
    return Unit(chosen) if chosen else Unit.CONTACT


def read_recipients(ctx: Context, m: Map, where: str) -> Recipients | None:
    """The ``recipients`` of ``m`` (a journey or a step), or None when it has none or it
    is wrong (reported)."""
    if "recipients" not in m:
        return None
    value, pos = m["recipients"], m.at("recipients")
    if isinstance(value, str) and value in RECIPIENT_WORDS:
        return Recipients(pick=value)
    if isinstance(value, str | Seq):
        named = _roles(ctx, value, pos)
        return Recipients(pick="roles", roles=named) if named is not None else None
    if not isinstance(value, Map):
        ctx.report(pos, f"'recipients' of {where} cannot be {describe(value)}", _RECIPIENTS_HINT)
        return None
    check_keys(ctx, value, RECIPIENT_KEYS, (), f"the recipients of {where}")
    roles: tuple[str, ...] | None = ()
    if "roles" in value:
        roles = _roles(ctx, value["roles"], value.at("roles"))
    condition = None
    if "when" in value:
        # Over the contact's own fields and its account's (compiled for each contact).
        scope = Scope(
            engagement=False,
            personas=ctx.segments.persona_names if ctx.segments is not None else None,
        )
        condition = read_condition(ctx, value["when"], value.at("when"), scope, "when")
        if condition is None:
            return None
    if roles is None:
        return None
    return Recipients(pick="roles", roles=roles, condition=condition)


def _roles(ctx: Context, value: object, pos: Pos) -> tuple[str, ...] | None:
    items: list[tuple[object, Pos]]
    if isinstance(value, Seq):
        items = list(zip(value, value.item_pos, strict=True))
    else:
        items = [(value, pos)]
    if not items:
        ctx.report(pos, "the list of roles is empty", _RECIPIENTS_HINT)
        return None
    known = ctx.segments.roles if ctx.segments is not None else DEFAULT_ROLES
    roles: list[str] = []
    ok = True
    for item, at in items:
        if not isinstance(item, str):
            ctx.report(at, f"a role must be text, not {describe(item)}", _RECIPIENTS_HINT)
            ok = False
        elif item not in known:
            hint = suggest(item, (*known, *RECIPIENT_WORDS))
            ctx.report(
                at,
                f"unknown role '{item}'",
                hint or f"roles (segments.yaml 'roles:'): {', '.join(known)}",
            )
            ok = False
        else:
            roles.append(item)
    return tuple(roles) if ok else None


def check_step(ctx: Context, m: Map, step_id: str, types: list[str], unit: Unit) -> None:
    """What an account journey's step may not hold, and ``recipients`` where it has no
    meaning."""
    if "recipients" in m:
        if unit != Unit.ACCOUNT:
            ctx.report(
                m.key_at("recipients"),
                f"step '{step_id}': 'recipients' needs an account journey",
                "add enrol: account at the top, or remove it: a contact journey's steps "
                "address the enrolled contact",
            )
        elif not set(types) & set(RECIPIENT_STEPS):
            ctx.report(
                m.key_at("recipients"),
                f"step '{step_id}': 'recipients' belongs on a step that sends (email, survey,"
                " invite, in_app)",
                "tasks go to the account's owner; remove it here",
            )
    if unit != Unit.ACCOUNT:
        return
    wait = m.get("wait_until_date")
    if isinstance(wait, Map) and str(wait.get("date", "")).startswith("contact."):
        ctx.report(
            wait.at("date"),
            f"step '{step_id}': an account journey waits for the account's dates",
            "use renewal_date, contract_start or attributes.<name> (the account's)",
        )
    for block in ("task", "webhook", "update"):
        if block in types:
            for text, at in _strings(m[block], m.at(block)):
                if _NAMES_CONTACT.search(text):
                    ctx.report(
                        at,
                        f"step '{step_id}': an account journey's {block} has no one contact",
                        "use account fields ({{ account.name }}); contacts are addressed by "
                        "email steps with recipients",
                    )
    if "update" in types and isinstance(m["update"], Map):
        changes = m["update"].get("set")
        if isinstance(changes, Map):
            for key in changes:
                if key.startswith("contact."):
                    ctx.report(
                        changes.key_at(key),
                        f"step '{step_id}': an account journey cannot set {key}",
                        "set account fields (attributes.<name>, health_score) here",
                    )


def _strings(value: object, pos: Pos) -> Iterator[tuple[str, Pos]]:
    if isinstance(value, str):
        yield value, pos
    elif isinstance(value, Map):
        for key, item in value.items():
            yield from _strings(item, value.at(key))
    elif isinstance(value, Seq):
        for item, at in zip(value, value.item_pos, strict=True):
            yield from _strings(item, at)
