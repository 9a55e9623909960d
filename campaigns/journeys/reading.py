"""Reading one value of a journey file: the check's context and the typed readers.

Every reader takes the :class:`Context` of the file being checked, reads one key of a
mapping, and either returns the typed value or reports the problem at the value's own
``line:col`` (with a hint where one helps) and returns None, so one pass finds every
problem. Texts and URLs that hold Jinja are compiled here, conditions are checked here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from campaigns.exceptions import Problem
from campaigns.journeys import expressions
from campaigns.journeys.durations import DurationError, parse_duration
from campaigns.journeys.expressions import Scope
from campaigns.journeys.hints import locate, suggest
from campaigns.journeys.segments import SegmentSet
from campaigns.journeys.textfilters import filter_problems
from campaigns.journeys.vocabulary import EVENT_RE, LOCALE_RE, PURPOSES
from campaigns.journeys.yamlsource import Map, Pos, describe

_TEMPLATE_ENV = SandboxedEnvironment(autoescape=True)


@dataclass
class Context:
    """One file's check: its path and text, what to cross-check against, what was found.

    ``segments`` and ``templates`` are None when they are not known (nothing to check)."""

    path: str
    text: str
    segments: SegmentSet | None
    templates: Collection[str] | None
    problems: list[Problem]
    journey_segments: tuple[str, ...] = ()  # the journey's ``segments:`` (its planned personas)
    brands: Collection[str] | None = None  # the brands of templates/sender.yaml, when known
    journey_purpose: str = "marketing"  # the journey's ``purpose:``, its email steps' default

    def report(self, pos: Pos, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.path, pos.line, pos.col, message, hint))

    def quote_offset(self, pos: Pos) -> int:
        """1 when the scalar at ``pos`` starts with a quote (its text starts after it)."""
        lines = self.text.splitlines()
        if 0 < pos.line <= len(lines):
            line = lines[pos.line - 1]
            if pos.col - 1 < len(line) and line[pos.col - 1] in "'\"":
                return 1
        return 0


def check_keys(
    ctx: Context, m: Map, allowed: Iterable[str], required: Iterable[str], where: str
) -> None:
    allowed = tuple(allowed)
    for key in m:
        if key not in allowed:
            hint = suggest(key, allowed) or f"allowed here: {', '.join(allowed)}"
            ctx.report(m.key_at(key), f"unknown key '{key}' in {where}", hint)
    for key in required:
        if key not in m:
            ctx.report(m.pos, f"{where} needs '{key}'")


def read_str(
    ctx: Context,
    m: Map,
    key: str,
    *,
    required: bool = False,
    pattern: re.Pattern[str] | None = None,
    hint: str | None = None,
) -> str | None:
    if key not in m or m[key] is None:
        if required and key in m:
            ctx.report(m.at(key), f"'{key}' is empty")
        return None
    value = m[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        ctx.report(m.at(key), f"'{key}' must be text, not {describe(value)}")
        return None
    value = str(value)
    if pattern is not None and not pattern.match(value):
        ctx.report(m.at(key), f"bad {key} '{value}'", hint)
        return None
    return value


def read_choice(ctx: Context, m: Map, key: str, options: tuple[str, ...]) -> str | None:
    value = read_str(ctx, m, key)
    if value is not None and value not in options:
        ctx.report(
            m.at(key),
            f"unknown {key} '{value}'",
            suggest(value, options) or f"one of: {', '.join(options)}",
        )
        return None
    return value


PURPOSE_HINT = (
    "write purpose: operational for renewal notices, invoices, security and service changes,"
    " or purpose: marketing (the default) for everything else"
)


def read_purpose(ctx: Context, m: Map) -> str | None:
    """``purpose:`` (a step's or the journey's): ``marketing`` or ``operational``."""
    if "purpose" not in m:
        return None
    value = m["purpose"]
    if not isinstance(value, str) or value not in PURPOSES:
        shown = value if isinstance(value, str) else None
        hint = suggest(shown, PURPOSES) if shown else None
        ctx.report(
            m.at("purpose"),
            f"unknown purpose '{shown}'" if shown else "'purpose' must be a word",
            f"{hint} {PURPOSE_HINT}" if hint else PURPOSE_HINT,
        )
        return None
    return value


def read_duration(ctx: Context, m: Map, key: str) -> timedelta | None:
    if key not in m:
        return None
    try:
        return parse_duration(m[key])
    except DurationError as exc:
        ctx.report(m.at(key), f"bad {key}: {exc}", exc.hint)
        return None


def check_template(ctx: Context, value: str, pos: Pos, key: str) -> bool:
    """Check that a text value compiles as a Jinja template and names only filters (and
    date formats) that exist; report at its place if not."""
    try:
        tree = _TEMPLATE_ENV.parse(value)
    except TemplateSyntaxError as exc:
        ctx.report(
            Pos(pos.line + (exc.lineno or 1) - 1, pos.col),
            f"bad template in '{key}': {exc.message}",
            "check the {{ }} and {% %} pairs",
        )
        return False
    found = filter_problems(tree)
    offset = ctx.quote_offset(pos)
    for problem in found:
        line, col = locate(value, problem.needle)
        where = Pos(pos.line + line, pos.col + offset + col if line == 0 else col + 1)
        ctx.report(where, f"{problem.message} in '{key}'", problem.hint)
    return not found


def read_text(
    ctx: Context, m: Map, key: str, *, required: bool = False
) -> str | dict[str, str] | None:
    """A text that may be one string or a per-locale mapping; each must be a valid template."""
    if key not in m:
        if required:
            ctx.report(
                m.pos, f"missing '{key}'", f'add {key}: "..." or {key}: {{en: "...", ja: "..."}}'
            )
        return None
    value = m[key]
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if not text.strip():
            ctx.report(m.at(key), f"'{key}' is empty")
            return None
        check_template(ctx, text, m.at(key), key)
        return text
    if isinstance(value, Map):
        result: dict[str, str] = {}
        if not value:
            ctx.report(m.at(key), f"'{key}' has no text", 'e.g. {en: "...", ja: "..."}')
        for locale, item in value.items():
            if not LOCALE_RE.match(locale):
                ctx.report(
                    value.key_at(locale),
                    f"'{locale}' is not a locale",
                    "use a language code such as en or ja",
                )
                continue
            if (
                not isinstance(item, str | int | float)
                or isinstance(item, bool)
                or not str(item).strip()
            ):
                ctx.report(value.at(locale), f"the {locale} text of '{key}' must be non-empty text")
                continue
            if check_template(ctx, str(item), value.at(locale), key):
                result[locale] = str(item)
        return result or None
    ctx.report(
        m.at(key), f"'{key}' must be text or a mapping of locale to text, not {describe(value)}"
    )
    return None


def read_template(
    ctx: Context, m: Map, key: str = "template", *, required: bool = True
) -> str | None:
    name = read_str(ctx, m, key)
    if name is None:
        if required and key not in m:
            ctx.report(
                m.pos,
                f"missing '{key}'",
                "name a template in templates/<locale>/, e.g. template: renewal_reminder",
            )
        return None
    if ctx.templates is not None and name not in ctx.templates:
        ctx.report(
            m.at(key),
            f"unknown template '{name}'",
            suggest(name, ctx.templates) or "templates live in templates/<locale>/<name>.mjml",
        )
    return name


def read_condition(ctx: Context, source: object, pos: Pos, scope: Scope, key: str) -> str | None:
    if source is True:
        return "true"
    if not isinstance(source, str) or not source.strip():
        ctx.report(pos, f"'{key}' must be a condition, e.g. answer('ask_nps') <= 6")
        return None
    offset = ctx.quote_offset(pos)
    try:
        expr = expressions.parse(source)
    except TemplateSyntaxError as exc:
        ctx.report(
            Pos(pos.line + (exc.lineno or 1) - 1, pos.col + offset),
            f"cannot read the condition: {exc.message}",
            "see docs/dsl.md#conditions",
        )
        return None
    found = expressions.check(expr, scope)
    for problem in found:
        line, col = locate(source, problem.needle)
        ctx.report(
            Pos(pos.line + line, pos.col + offset + col if line == 0 else col + 1),
            problem.message,
            problem.hint,
        )
    return None if found else source


def read_url(ctx: Context, m: Map, key: str, *, required: bool = False) -> str | None:
    value = read_str(ctx, m, key)
    if value is None:
        if required and key not in m:
            ctx.report(m.pos, f"missing '{key}'")
        return None
    if "{{" in value:
        return value if check_template(ctx, value, m.at(key), key) else None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        ctx.report(m.at(key), f"bad URL '{value}'", "write a full address starting with https://")
        return None
    return value


def read_event(ctx: Context, m: Map, key: str) -> str | None:
    return read_str(
        ctx, m, key, pattern=EVENT_RE, hint="event names are words like usage_dropped or renewed"
    )
