"""Conditions: Jinja expression syntax, checked statically and compiled safely.

One language serves segment rules (lowered to plain rules by
:mod:`campaigns.journeys.segments`, which the engine runs as SQL) and journey conditions
(``branch`` arms, ``audience``, ``exit_when``), evaluated in Jinja's
:class:`~jinja2.sandbox.SandboxedEnvironment`; nothing is ever passed to ``eval``.
:func:`parse` returns the AST and :func:`check` lists every problem (unknown field, wrong
type, step named before it runs) with a hint. The fields are in
:mod:`~campaigns.journeys.fields`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

from jinja2 import TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from campaigns.journeys.fields import (
    BOOL,
    DATE,
    KNOWN_VALUES,
    NUMBER,
    PERSONA,
    STRING,
    Ref,
    field_ref,
)
from campaigns.journeys.hints import ExprProblem, suggest

ENGAGEMENT = {
    "opened": "email",
    "clicked": "email",
    "answered": "answer",
    "answer": "answer",
    "task_done": "task",
    "opened_all": "email",
    "clicked_all": "email",
    "answered_all": "answer",
    "opened_share": "email",
    "clicked_share": "email",
    "answered_share": "answer",
}
"""Functions over an earlier step, and the kind of step each needs. In an account journey
``answered('s')`` holds when anyone the step addressed answered, ``answered_all('s')`` when
everyone did, and ``answered_share('s')`` is the share (0 to 1) who did; in a contact journey
the three agree on the one contact."""

EVENT_FUNCTION = "event"
ALLOWED_FILTERS = frozenset({"lower", "upper", "length", "int", "float", "default", "trim"})
ALLOWED_TESTS = frozenset({"none", "defined", "undefined", "number", "string"})
_CMP_OPS = {"eq", "ne", "lt", "lteq", "gt", "gteq", "in", "notin"}
_ENV = SandboxedEnvironment()
# A missing attribute (Jinja's Undefined) is a missing value, as NULL is in the rule's SQL:
# `contact.attributes.team is none` holds for a contact without one.
_ENV.tests["none"] = lambda value: value is None or isinstance(value, Undefined)


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
    account_journey: bool = False  # an account journey's condition: account fields only
    personas: tuple[str, ...] | None = None  # the persona names; None: not known, not checked
    persona_rule: bool = False  # a persona's own rule: no contact.persona, no tier
    where: str = "a segment rule or audience"  # named when a function is called where none may be


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


def check(expr: nodes.Expr, scope: Scope) -> list[ExprProblem]:
    """Every problem in ``expr`` for where it stands (``scope``)."""
    problems: list[ExprProblem] = []
    _check(expr, scope, problems)
    return problems


def _const_type(value: object) -> str | None:
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
        for value in values or ():
            problem = _value_problem(ref, value, scope)
            if problem is not None:
                out.append(problem)
    if op in ("in", "notin") and not isinstance(
        right, nodes.List | nodes.Tuple | nodes.Getattr | nodes.Name | nodes.Call
    ):
        out.append(
            ExprProblem(
                "'in' needs a list on its right", "e.g. industry in ['retail', 'logistics']", "in"
            )
        )


def _value_problem(ref: Ref, value: object, scope: Scope) -> ExprProblem | None:
    """What is wrong with comparing the typed field ``ref`` with the constant ``value``."""
    if value is None:
        return None
    assert ref.kind is not None
    if ref.kind == DATE:
        if not isinstance(value, str) or not _is_iso_date(value):
            return ExprProblem(
                f"{ref.name} is a date; compare it with 'YYYY-MM-DD'",
                f"e.g. {ref.name} >= '2027-04-01'",
                ref.name,
            )
        return None
    if _const_type(value) != ref.kind:
        example = {NUMBER: "5000000", STRING: "'enterprise'", BOOL: "true"}[ref.kind]
        return ExprProblem(
            f"{ref.name} is a {ref.kind} but is compared with {value!r}",
            f"compare it with a {ref.kind}, e.g. {example}",
            ref.name,
        )
    assert isinstance(value, str | int | float)
    if ref.name in KNOWN_VALUES and value not in KNOWN_VALUES[ref.name]:
        known = KNOWN_VALUES[ref.name]
        return ExprProblem(
            f"unknown {ref.name} '{value}'",
            suggest(str(value), known) or f"one of: {', '.join(known)}",
            str(value),
        )
    if ref.name == "tier" and scope.tiers is not None and value not in scope.tiers:
        tiers = (
            f"tiers: {', '.join(scope.tiers)}"
            if scope.tiers
            else "no tiers are defined in segments.yaml"
        )
        return ExprProblem(
            f"unknown tier '{value}'", suggest(str(value), scope.tiers) or tiers, str(value)
        )
    persona = ref.name == PERSONA and ref.scope == "contact"
    if persona and scope.personas is not None and value not in scope.personas:
        personas = (
            f"personas: {', '.join(scope.personas)}"
            if scope.personas
            else "no personas are defined in segments.yaml"
        )
        return ExprProblem(
            f"unknown persona '{value}'",
            suggest(str(value), scope.personas) or personas,
            str(value),
        )
    return None


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
    elif isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem):
        _check_field(node, scope, out)
    elif isinstance(node, nodes.Compare):
        _check_compare(node, scope, out)
    elif isinstance(node, nodes.And | nodes.Or):
        _check(node.left, scope, out)
        _check(node.right, scope, out)
    elif isinstance(node, nodes.Not | nodes.Neg | nodes.Pos):
        _check(node.node, scope, out)
    elif isinstance(node, nodes.Test):
        _check_test(node, scope, out)
    elif isinstance(node, nodes.Call):
        _check_call(node, scope, out)
    elif isinstance(node, nodes.Filter):
        _check_filter(node, scope, out)
    elif isinstance(node, nodes.BinExpr):
        if not scope.engagement:
            out.append(
                ExprProblem(
                    "arithmetic is not allowed in segment rules or audiences",
                    "compare a field with a number, e.g. arr >= 5000000",
                )
            )
        _check(node.left, scope, out)
        _check(node.right, scope, out)
    elif isinstance(node, nodes.CondExpr):
        out.append(
            ExprProblem("'x if y else z' is not allowed in conditions", "use 'and' / 'or'", "if")
        )
    else:
        out.append(
            ExprProblem(
                f"'{type(node).__name__}' is not allowed in a condition",
                "use comparisons, 'and', 'or', 'not'",
            )
        )


def _check_field(node: nodes.Node, scope: Scope, out: list[ExprProblem]) -> None:
    ref = field_ref(node)
    if isinstance(ref, ExprProblem):
        out.append(ref)
    elif ref is None:
        out.append(
            ExprProblem("only fields can be read here", "e.g. contact.role or attributes.region")
        )
    elif scope.account_journey and ref.scope.startswith("contact"):
        out.append(
            ExprProblem(
                f"an account journey's conditions read the account, not contact.{ref.name}",
                "choose contacts in a message step with recipients: {roles: [...], when: ...}",
                ref.name,
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
    elif scope.persona_rule and ref.scope == "contact" and ref.name == PERSONA:
        out.append(
            ExprProblem(
                "a persona rule cannot use contact.persona",
                "personas are tried in order: put the narrower persona first",
                PERSONA,
            )
        )
    elif scope.persona_rule and ref.scope == "account" and ref.name == "tier":
        out.append(
            ExprProblem(
                "a persona rule cannot use 'tier'",
                "say which personas a tier plans for with its 'personas: [...]' list",
                "tier",
            )
        )


def _check_compare(node: nodes.Compare, scope: Scope, out: list[ExprProblem]) -> None:
    _check(node.expr, scope, out)
    left: nodes.Node = node.expr
    for operand in node.ops:
        if operand.op not in _CMP_OPS:
            out.append(ExprProblem(f"unsupported comparison '{operand.op}'"))
        _check(operand.expr, scope, out)
        _check_comparison(left, operand.op, operand.expr, scope, out)
        left = operand.expr


def _check_test(node: nodes.Test, scope: Scope, out: list[ExprProblem]) -> None:
    if node.name not in ALLOWED_TESTS:
        out.append(
            ExprProblem(
                f"unknown test 'is {node.name}'",
                suggest(node.name, ALLOWED_TESTS) or "use 'is none' or 'is not none'",
                node.name,
            )
        )
    _check(node.node, scope, out)


def _check_filter(node: nodes.Filter, scope: Scope, out: list[ExprProblem]) -> None:
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


_FUNCTIONS_ONLY = (
    "only the functions opened(), clicked(), answered(), answer(), task_done(), event() and"
    " their _all() and _share() forms can be called"
)
_KINDS = {
    "email": "an email, survey or invite step",
    "answer": "a survey or invite step",
    "task": "a task step",
}


def _check_call(node: nodes.Call, scope: Scope, out: list[ExprProblem]) -> None:
    if not isinstance(node.node, nodes.Name):
        out.append(ExprProblem(_FUNCTIONS_ONLY))
        return
    fname = node.node.name
    known = [*ENGAGEMENT, EVENT_FUNCTION]
    if not scope.engagement:
        out.append(
            ExprProblem(
                f"{fname}() cannot be used in {scope.where}",
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
    if fname != EVENT_FUNCTION:
        _check_step_named(fname, node.args[0].value, scope, out)


def _check_step_named(fname: str, step: str, scope: Scope, out: list[ExprProblem]) -> None:
    """``opened('welcome')``: the step must run before, and be of the kind ``fname`` needs."""
    if step in scope.steps:
        needed = ENGAGEMENT[fname]
        actual = scope.steps[step]
        if needed != actual and not (needed == "email" and actual == "answer"):
            out.append(
                ExprProblem(
                    f"{fname}('{step}') needs {_KINDS[needed]}, but '{step}' is not one", None, step
                )
            )
    elif step in scope.later_steps:
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


class Condition:
    """A checked expression, evaluated per contact in Jinja's sandbox.

    ``values`` carries the account fields (bare names), ``account``, ``contact`` and
    ``attributes``; ``functions`` supplies ``opened``, ``answer``... for journeys.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled = _ENV.compile_expression(source, undefined_to_none=True)

    def __call__(
        self,
        values: Mapping[str, object],
        functions: Mapping[str, Callable[..., object]] | None = None,
    ) -> bool:
        try:
            return bool(self._compiled(**values, **(functions or {})))
        except (TypeError, UndefinedError):
            # Comparing a missing value (None, or an attribute the contact lacks) with a
            # number: the condition does not hold, as in SQL where a comparison with NULL
            # is never true.
            return False

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"
