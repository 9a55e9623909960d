"""The journey DSL: parse a YAML journey file and check its syntax and meaning.

:func:`parse_journey` returns a typed :class:`~campaigns.journeys.model.Journey` or raises
:class:`~campaigns.exceptions.JourneyError` carrying *every* problem, each with its
``path:line:col`` and, where one helps, a hint ("did you mean 'webinar_invite'?").
It never raises anything else, whatever the input. The reference is docs/dsl.md; the
journey-wide keys are read in :mod:`~campaigns.journeys.toplevel`, the steps in
:mod:`~campaigns.journeys.flow` and :mod:`~campaigns.journeys.steps`.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from campaigns.exceptions import JourneyError, Problem
from campaigns.journeys.expressions import Scope
from campaigns.journeys.flow import parse_steps
from campaigns.journeys.hints import suggest
from campaigns.journeys.model import Journey, Recipients, Unit
from campaigns.journeys.reading import Context, check_keys, read_condition, read_purpose, read_str
from campaigns.journeys.recipients import read_recipients, read_unit
from campaigns.journeys.segments import SegmentSet
from campaigns.journeys.toplevel import (
    read_entry,
    read_exit_rules,
    read_goal,
    read_holdout,
    read_re_entry,
    read_segments,
    read_window,
)
from campaigns.journeys.vocabulary import BRAND_RE, ID_HINT, ID_RE, LOCALE_RE, TOP_KEYS
from campaigns.journeys.yamlsource import Map, Pos, YamlProblem, load, read


def parse_journey(
    text: str,
    path: str = "<journey>",
    *,
    segments: SegmentSet | None = None,
    templates: Collection[str] | None = None,
    brands: Collection[str] | None = None,
) -> Journey:
    """Check ``text`` and build the journey; raise :class:`JourneyError` listing every problem.

    ``segments``, ``templates`` and ``brands`` (names known to exist) enable the
    cross-checks; pass None to skip them.
    """
    ctx = Context(path, text, segments, templates, [], brands=brands)
    journey: Journey | None = None
    try:
        doc = load(text)
    except YamlProblem as exc:
        ctx.report(exc.pos, exc.message, exc.hint)
    else:
        try:
            journey = _journey(doc, ctx)
        except RecursionError:
            ctx.report(Pos(1, 1), "the file is nested too deeply")
    if ctx.problems or journey is None:
        problems = sorted(set(ctx.problems), key=lambda p: (p.line, p.col, p.message))
        raise JourneyError(problems or [Problem(path, 1, 1, "not a journey")])
    return journey


def load_journey(
    path: Path,
    *,
    segments: SegmentSet | None = None,
    templates: Collection[str] | None = None,
    brands: Collection[str] | None = None,
) -> Journey:
    """Read and check the journey file at ``path`` (see :func:`parse_journey`)."""
    return parse_journey(
        read_source(path), str(path), segments=segments, templates=templates, brands=brands
    )


def read_source(path: Path) -> str:
    """The text of the journey file at ``path`` (at most
    :data:`~campaigns.defaults.MAX_SOURCE_BYTES`), or :class:`JourneyError` saying why not."""
    try:
        return read(path)
    except YamlProblem as exc:
        raise JourneyError(
            [Problem(str(path), exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    except FileNotFoundError:
        raise JourneyError([Problem(str(path), 1, 1, "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise JourneyError(
            [
                Problem(
                    str(path), 1, 1, f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8"
                )
            ]
        ) from None
    except OSError as exc:
        raise JourneyError(
            [Problem(str(path), 1, 1, f"cannot read the file: {exc.strerror}")]
        ) from None


def _journey(doc: object, ctx: Context) -> Journey | None:
    if not isinstance(doc, Map):
        ctx.report(
            getattr(doc, "pos", Pos(1, 1)),
            "a journey file is a mapping: journey, name, segments, entry, steps...",
            "see docs/dsl.md",
        )
        return None
    check_keys(ctx, doc, TOP_KEYS, (), "the journey")
    for required in ("journey", "name", "segments", "entry", "steps"):
        if required not in doc:
            ctx.report(
                Pos(1, 1), f"the journey needs '{required}'", "see docs/dsl.md#top-level-keys"
            )
    key = read_str(ctx, doc, "journey", pattern=ID_RE, hint=ID_HINT)
    name = read_str(ctx, doc, "name")
    description = read_str(ctx, doc, "description")
    segments = read_segments(ctx, doc)
    ctx.journey_segments = tuple(segments)
    locale = (
        read_str(ctx, doc, "locale", pattern=LOCALE_RE, hint="a language code such as en or ja")
        or "en"
    )
    entry = read_entry(ctx, doc["entry"], doc.at("entry")) if "entry" in doc else None
    re_entry = read_re_entry(ctx, doc)
    unit = read_unit(ctx, doc)
    per_account = unit == Unit.ACCOUNT
    recipients = read_recipients(ctx, doc, "the journey")
    if recipients is not None and not per_account:
        ctx.report(
            doc.key_at("recipients"),
            "'recipients' needs an account journey",
            "add enrol: account, or remove it: a contact journey addresses its contact",
        )
    personas = ctx.segments.persona_names if ctx.segments else None
    top_scope = Scope(
        engagement=True,
        steps={},
        tiers=_tiers(ctx),
        account_journey=per_account,
        personas=personas,
    )
    # The audience is compiled to SQL with the segment rules at enrolment: fields only.
    audience_scope = Scope(
        engagement=False, tiers=top_scope.tiers, account_journey=per_account, personas=personas
    )
    audience = (
        read_condition(ctx, doc["audience"], doc.at("audience"), audience_scope, "audience")
        if "audience" in doc
        else None
    )
    exit_when = read_exit_rules(ctx, doc, top_scope)
    goal = read_goal(ctx, doc)
    window = (
        read_window(ctx, doc["sending_window"], doc.at("sending_window"))
        if "sending_window" in doc
        else None
    )
    holdout = read_holdout(ctx, doc)
    brand = read_str(
        ctx, doc, "brand", pattern=BRAND_RE, hint="a brand key of templates/sender.yaml"
    )
    if brand is not None and ctx.brands is not None and brand not in ctx.brands:
        ctx.report(
            doc.at("brand"),
            f"unknown brand '{brand}'",
            suggest(brand, tuple(ctx.brands))
            or f"brands in templates/sender.yaml: {', '.join(ctx.brands) or 'none'}",
        )
    ctx.journey_purpose = read_purpose(ctx, doc) or "marketing"
    steps = parse_steps(ctx, doc, top_scope) if "steps" in doc else ()
    if ctx.problems or None in (key, name, entry) or not steps:
        return None
    assert key is not None and name is not None and entry is not None
    return Journey(
        key=key,
        name=name,
        segments=tuple(segments),
        entry=entry,
        steps=steps,
        description=description,
        audience=audience,
        re_entry=re_entry,
        exit_when=exit_when,
        goal=goal,
        sending_window=window,
        holdout=holdout,
        locale=locale,
        unit=unit,
        recipients=recipients or Recipients(),
        brand=brand,
        purpose=ctx.journey_purpose,
    )


def _tiers(ctx: Context) -> tuple[str, ...] | None:
    return tuple(t.name for t in ctx.segments.tiers) if ctx.segments else None
