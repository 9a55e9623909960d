"""Conditions: Jinja expression syntax, checked statically and compiled safely.

One language serves segment rules (compiled to a SQL ``WHERE`` clause by
:mod:`campaigns.journeys.segments`) and journey conditions (``branch`` arms, ``audience``,
``exit_when``), evaluated in Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment`; nothing
is ever passed to ``eval``. :func:`parse` returns the AST and :func:`check` lists every
problem (unknown field, wrong type, step named before it runs) with a hint.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from campaigns.store.models import ContractStatus

NUMBER, STRING, DATE, BOOL = "number", "string", "date", "bool"

ACCOUNT_FIELDS: dict[str, str] = {
    "external_id": STRING,
    "name": STRING,
    "arr": NUMBER,
    "ltv": NUMBER,
    "currency": STRING,
    "plan": STRING,
    "contract_status": STRING,
    "contract_start": DATE,
    "renewal_date": DATE,
    "industry": STRING,
    "company_size": NUMBER,
    "owner_email": STRING,
    "health_score": NUMBER,
    "tier": STRING,
    "days_to_renewal": NUMBER,
    "days_since_start": NUMBER,
}
"""Fields of the account, usable bare (``arr``) or as ``account.arr``."""

CONTACT_FIELDS: dict[str, str] = {
    "email": STRING,
    "name": STRING,
    "role": STRING,
    "locale": STRING,
    "time_zone": STRING,
    "subscribed": BOOL,
}
"""Fields of the contact, usable as ``contact.role``."""

KNOWN_VALUES: dict[str, tuple[str, ...]] = {
    "contract_status": tuple(s.value for s in ContractStatus),
}

ENGAGEMENT = {
    "opened": "email",
    "clicked": "email",
    "answered": "answer",
    "answer": "answer",
    "task_done": "task",
}
"""Functions over an earlier step, and the kind of step each needs."""

EVENT_FUNCTION = "event"
ALLOWED_FILTERS = frozenset({"lower", "upper", "length", "int", "float", "default", "trim"})
ALLOWED_TESTS = frozenset({"none", "defined", "undefined", "number", "string"})
_CMP_OPS = {"eq", "ne", "lt", "lteq", "gt", "gteq", "in", "notin"}
_ENV = SandboxedEnvironment()


@dataclass(frozen=True)
class ExprProblem:
    """A problem in an expression; ``needle`` is the text to point at, if any."""

    message: str
    hint: str | None = None
    needle: str | None = None


@dataclass(frozen=True)
class Scope:
    """What an expression may refer to where it stands.

    ``steps`` maps the ids of the steps that run *before* this point to their kind
    (``email``, ``answer``, ``task``...); ``later_steps`` are those that come after, named
    in errors. ``engagement=False`` for segment rules (no steps exist there).
    """

    engagement: bool = True
    steps: Mapping[str, str] = field(default_factory=dict)
    later_steps: frozenset[str] = frozenset()
    account_only: bool = False
    tiers: tuple[str, ...] | None = None  # None: not known here, so not checked


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
            return CONTACT_FIELDS[self.name]
        return None  # JSON attributes: any type


def parse(source: str) -> nodes.Expr:
    """Parse ``source`` as one Jinja expression; raise :class:`TemplateSyntaxError`."""
    if not source.strip():
        raise TemplateSyntaxError("the condition is empty", 1)
    parser = Parser(_ENV, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise TemplateSyntaxError(f"unexpected '{token.value}' after the condition", token.lineno)
    return expr


def suggest(word: str, options: Iterable[str]) -> str | None:
    """A 'did you mean' hint for ``word`` among ``options``, or None."""
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None


def field_ref(node: nodes.Node) -> Ref | ExprProblem | None:
    """Resolve a Name/Getattr/Getitem chain to the field it reads (None if not a field)."""
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
    head, rest = parts[0], parts[1:]
    if head == "account" and rest:
        head, rest = rest[0], rest[1:]
    if head == "contact":
        if not rest:
            return ExprProblem(
                "'contact' alone is not a value", "name a field, e.g. contact.role", "contact"
            )
        if rest[0] == "attributes":
            if len(rest) != 2:
                return ExprProblem("write contact.attributes.<name>", None, "attributes")
            return Ref("contact_attr", rest[1])
        if rest[0] not in CONTACT_FIELDS or len(rest) > 1:
            return ExprProblem(
                f"unknown contact field '{rest[0]}'",
                suggest(rest[0], CONTACT_FIELDS) or f"contact fields: {', '.join(CONTACT_FIELDS)}",
                rest[0],
            )
        return Ref("contact", rest[0])
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


def check(expr: nodes.Expr, scope: Scope) -> list[ExprProblem]:
    """Every problem in ``expr`` for where it stands (``scope``)."""
    problems: list[ExprProblem] = []
    _check(expr, scope, problems)
    return problems


def _const_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    return None


def _check_comparison(
    left: nodes.Node, op: str, right: nodes.Node, scope: Scope, out: list[ExprProblem]
) -> None:
    for a, b in ((left, right), (right, left)):
        ref = field_ref(a)
        if not isinstance(ref, Ref) or ref.kind is None:
            continue
        values = [b.value] if isinstance(b, nodes.Const) else None
        if isinstance(b, nodes.List | nodes.Tuple) and all(
            isinstance(i, nodes.Const) for i in b.items
        ):
            values = [i.value for i in b.items]  # type: ignore[attr-defined]
        if values is None:
            continue
        for value in values:
            if value is None:
                continue
            kind = _const_type(value)
            if ref.kind == DATE:
                if not isinstance(value, str) or not _is_iso_date(value):
                    out.append(
                        ExprProblem(
                            f"{ref.name} is a date; compare it with 'YYYY-MM-DD'",
                            f"e.g. {ref.name} >= '2027-04-01'",
                            ref.name,
                        )
                    )
            elif kind != ref.kind:
                example = {NUMBER: "5000000", STRING: "'enterprise'", BOOL: "true"}[ref.kind]
                out.append(
                    ExprProblem(
                        f"{ref.name} is a {ref.kind} but is compared with {value!r}",
                        f"compare it with a {ref.kind}, e.g. {example}",
                        ref.name,
                    )
                )
            elif ref.name in KNOWN_VALUES and value not in KNOWN_VALUES[ref.name]:
                out.append(
                    ExprProblem(
                        f"unknown {ref.name} '{value}'",
                        suggest(value, KNOWN_VALUES[ref.name])
                        or f"one of: {', '.join(KNOWN_VALUES[ref.name])}",
                        value,
                    )
                )
            elif ref.name == "tier" and scope.tiers is not None and value not in scope.tiers:
                known = (
                    f"tiers: {', '.join(scope.tiers)}"
                    if scope.tiers
                    else "no tiers are defined in segments.yaml"
                )
                out.append(
                    ExprProblem(
                        f"unknown tier '{value}'", suggest(value, scope.tiers) or known, value
                    )
                )
    if op in ("in", "notin") and not isinstance(
        right, nodes.List | nodes.Tuple | nodes.Getattr | nodes.Name | nodes.Call
    ):
        out.append(
            ExprProblem(
                "'in' needs a list on its right", "e.g. industry in ['retail', 'logistics']", "in"
            )
        )


def _is_iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text))


def _check(node: nodes.Node, scope: Scope, out: list[ExprProblem]) -> None:
    if isinstance(node, nodes.Const):
        return
    if isinstance(node, nodes.List | nodes.Tuple):
        for item in node.items:
            _check(item, scope, out)
        return
    if isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem):
        ref = field_ref(node)
        if isinstance(ref, ExprProblem):
            out.append(ref)
        elif ref is None:
            out.append(
                ExprProblem(
                    "only fields can be read here", "e.g. contact.role or attributes.region"
                )
            )
        elif scope.account_only and ref.scope.startswith("contact"):
            out.append(
                ExprProblem(
                    f"tier rules may use account fields only, not contact.{ref.name}",
                    "put contact conditions in a segment",
                    ref.name,
                )
            )
        elif ref.name == "tier" and ref.scope == "account" and scope.account_only:
            out.append(ExprProblem("a tier rule cannot use 'tier'", None, "tier"))
        return
    if isinstance(node, nodes.Compare):
        _check(node.expr, scope, out)
        left: nodes.Node = node.expr
        for operand in node.ops:
            if operand.op not in _CMP_OPS:
                out.append(ExprProblem(f"unsupported comparison '{operand.op}'"))
            _check(operand.expr, scope, out)
            _check_comparison(left, operand.op, operand.expr, scope, out)
            left = operand.expr
        return
    if isinstance(node, nodes.And | nodes.Or):
        _check(node.left, scope, out)
        _check(node.right, scope, out)
        return
    if isinstance(node, nodes.Not | nodes.Neg | nodes.Pos):
        _check(node.node, scope, out)
        return
    if isinstance(node, nodes.Test):
        if node.name not in ALLOWED_TESTS:
            out.append(
                ExprProblem(
                    f"unknown test 'is {node.name}'",
                    suggest(node.name, ALLOWED_TESTS) or "use 'is none' or 'is not none'",
                    node.name,
                )
            )
        _check(node.node, scope, out)
        return
    if isinstance(node, nodes.Call):
        _check_call(node, scope, out)
        return
    if isinstance(node, nodes.Filter):
        if not scope.engagement:
            out.append(
                ExprProblem(
                    f"filters ('|{node.name}') are not allowed in segment rules or audiences",
                    None,
                    node.name,
                )
            )
        elif node.name not in ALLOWED_FILTERS:
            out.append(
                ExprProblem(
                    f"unknown filter '|{node.name}'",
                    suggest(node.name, ALLOWED_FILTERS)
                    or f"filters: {', '.join(sorted(ALLOWED_FILTERS))}",
                    node.name,
                )
            )
        if node.node is not None:
            _check(node.node, scope, out)
        return
    if isinstance(node, nodes.BinExpr):
        if not scope.engagement:
            out.append(
                ExprProblem(
                    "arithmetic is not allowed in segment rules or audiences",
                    "compare a field with a number, e.g. arr >= 5000000",
                )
            )
        _check(node.left, scope, out)
        _check(node.right, scope, out)
        return
    if isinstance(node, nodes.CondExpr):
        out.append(
            ExprProblem("'x if y else z' is not allowed in conditions", "use 'and' / 'or'", "if")
        )
        return
    out.append(
        ExprProblem(
            f"'{type(node).__name__}' is not allowed in a condition",
            "use comparisons, 'and', 'or', 'not'",
        )
    )


def _check_call(node: nodes.Call, scope: Scope, out: list[ExprProblem]) -> None:
    if not isinstance(node.node, nodes.Name):
        out.append(
            ExprProblem(
                "only the functions opened(), clicked(), answered(), answer(), task_done() and event() can be called"
            )
        )
        return
    fname = node.node.name
    known = [*ENGAGEMENT, EVENT_FUNCTION]
    if not scope.engagement:
        out.append(
            ExprProblem(
                f"{fname}() cannot be used in a segment rule or audience",
                "these use account and contact fields only",
                fname,
            )
        )
        return
    if fname not in known:
        out.append(
            ExprProblem(
                f"unknown function '{fname}()'",
                suggest(fname, known) or f"functions: {', '.join(known)}",
                fname,
            )
        )
        return
    if (
        node.kwargs
        or node.dyn_args
        or node.dyn_kwargs
        or len(node.args) != 1
        or not isinstance(node.args[0], nodes.Const)
        or not isinstance(node.args[0].value, str)
    ):
        what = "an event name" if fname == EVENT_FUNCTION else "a step id"
        out.append(
            ExprProblem(f"{fname}() takes one quoted {what}", f"e.g. {fname}('welcome')", fname)
        )
        return
    if fname == EVENT_FUNCTION:
        return
    step = node.args[0].value
    if step in scope.steps:
        needed = ENGAGEMENT[fname]
        actual = scope.steps[step]
        if needed != actual and not (needed == "email" and actual == "answer"):
            kinds = {
                "email": "an email, survey or invite step",
                "answer": "a survey or invite step",
                "task": "a task step",
            }
            out.append(
                ExprProblem(
                    f"{fname}('{step}') needs {kinds[needed]}, but '{step}' is not one", None, step
                )
            )
        return
    if step in scope.later_steps:
        out.append(
            ExprProblem(
                f"{fname}('{step}') names a step that runs later",
                "a condition can only look at steps that ran before it",
                step,
            )
        )
    else:
        out.append(
            ExprProblem(
                f"{fname}('{step}') names no step",
                suggest(step, [*scope.steps, *scope.later_steps]),
                step,
            )
        )


def referenced_fields(expr: nodes.Expr) -> list[Ref]:
    """The fields ``expr`` reads (for tier and segment dependency checks)."""
    refs: list[Ref] = []
    for node in expr.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        ref = field_ref(node)
        if isinstance(ref, Ref) and ref not in refs:
            refs.append(ref)
    return refs


class Condition:
    """A checked expression, evaluated per contact in Jinja's sandbox.

    ``values`` carries the account fields (bare names), ``account``, ``contact`` and
    ``attributes``; ``functions`` supplies ``opened``, ``answer``... for journeys.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled = _ENV.compile_expression(source, undefined_to_none=True)

    def __call__(
        self, values: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]] | None = None
    ) -> bool:
        try:
            return bool(self._compiled(**values, **(functions or {})))
        except TypeError:
            # Comparing a missing value (None) with a number: the condition does not hold,
            # as in SQL where a comparison with NULL is never true.
            return False

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"


def locate(source: str, needle: str | None) -> tuple[int, int]:
    """The (line offset, column offset) of ``needle`` in ``source``, or (0, 0)."""
    if not needle:
        return (0, 0)
    match = re.search(rf"(?<![\w]){re.escape(needle)}(?![\w])", source) or re.search(
        re.escape(needle), source
    )
    if not match:
        return (0, 0)
    before = source[: match.start()]
    line = before.count("\n")
    col = match.start() - (before.rfind("\n") + 1)
    return (line, col)
