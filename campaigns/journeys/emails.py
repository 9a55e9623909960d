"""The steps that send an email from a template: email (with its variants), survey, invite.

Each parser reads its block of a step (see :class:`~campaigns.journeys.steps.StepSite`)
into its typed config; they share the template, subject and preheader readers.
"""

from __future__ import annotations

import re
from datetime import datetime

from campaigns.journeys.hints import suggest
from campaigns.journeys.model import EmailStep, InviteStep, PersonaContent, SurveyStep, Variant
from campaigns.journeys.reading import (
    Context,
    check_keys,
    read_choice,
    read_duration,
    read_str,
    read_template,
    read_text,
    read_url,
)
from campaigns.journeys.steps import StepSite, block_of
from campaigns.journeys.vocabulary import ID_HINT, ID_RE
from campaigns.journeys.yamlsource import Map, Pos, Seq


def parse_email(ctx: Context, site: StepSite) -> EmailStep | None:
    m = block_of(ctx, site, "email")
    if m is None:
        return None
    check_keys(
        ctx,
        m,
        ("template", "subject", "preheader", "variants", "from_name", "reply_to", "by_persona"),
        (),
        f"the email of step '{site.raw.id}'",
    )
    template = read_template(ctx, m)
    subject = read_text(ctx, m, "subject", required=True)
    preheader = read_text(ctx, m, "preheader")
    variants = _variants(ctx, m)
    by_persona = read_by_persona(ctx, m, ("template", "subject", "preheader"))
    if variants and "by_persona" in m:
        ctx.report(
            m.key_at("by_persona"),
            f"step '{site.raw.id}' chooses its content by variants and by persona",
            "choose one: a branch on contact.persona can lead to a step with variants",
        )
    from_name = read_str(ctx, m, "from_name")
    reply_to = read_str(
        ctx,
        m,
        "reply_to",
        pattern=re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
        hint="an email address",
    )
    if template is None or subject is None:
        return None
    return EmailStep(template, subject, preheader, variants, from_name, reply_to, by_persona)


def _variants(ctx: Context, m: Map) -> tuple[Variant, ...]:
    if "variants" not in m:
        return ()
    value = m["variants"]
    if not isinstance(value, Seq) or len(value) < 2:
        ctx.report(
            m.at("variants"),
            "'variants' must be a list of two or more variants",
            "each with an id and a subject or template",
        )
        return ()
    out: list[Variant] = []
    seen: set[str] = set()
    for item, pos in zip(value, value.item_pos, strict=True):
        if not isinstance(item, Map):
            ctx.report(
                pos, "a variant must be a mapping with an id", "e.g. - {id: short, subject: ...}"
            )
            continue
        check_keys(ctx, item, ("id", "template", "subject", "preheader"), ("id",), "a variant")
        vid = read_str(ctx, item, "id", pattern=ID_RE, hint=ID_HINT)
        if vid in seen:
            ctx.report(item.at("id"), f"duplicate variant id '{vid}'")
            continue
        if len(item) == 1 and vid:
            ctx.report(
                item.pos,
                f"variant '{vid}' changes nothing",
                "give it a subject, template or preheader",
            )
        template = read_template(ctx, item, required=False)
        subject = read_text(ctx, item, "subject")
        preheader = read_text(ctx, item, "preheader")
        if vid:
            seen.add(vid)
            out.append(Variant(vid, template, subject, preheader))
    return tuple(out)


def parse_survey(ctx: Context, site: StepSite) -> SurveyStep | None:
    m = block_of(ctx, site, "survey")
    if m is None:
        return None
    check_keys(
        ctx,
        m,
        ("scale", "template", "subject", "question", "by_persona"),
        ("scale",),
        f"the survey of step '{site.raw.id}'",
    )
    scale = read_choice(ctx, m, "scale", ("nps", "csat"))
    template = read_template(ctx, m)
    subject = read_text(ctx, m, "subject", required=True)
    question = read_text(ctx, m, "question")
    by_persona = read_by_persona(ctx, m, ("template", "subject"))
    if None in (scale, template, subject):
        return None
    return SurveyStep(scale, template, subject, question, by_persona)  # type: ignore[arg-type]


def parse_invite(ctx: Context, site: StepSite) -> InviteStep | None:
    m = block_of(ctx, site, "invite")
    if m is None:
        return None
    check_keys(
        ctx,
        m,
        ("event_name", "starts_at", "duration", "url", "template", "subject", "by_persona"),
        ("starts_at",),
        f"the invite of step '{site.raw.id}'",
    )
    event_name = read_text(ctx, m, "event_name", required=True)
    starts_at = None
    if "starts_at" in m:
        raw = m["starts_at"]
        if isinstance(raw, str):
            try:
                raw = datetime.fromisoformat(raw)
            except ValueError:
                raw = None
        if not isinstance(raw, datetime):
            ctx.report(
                m.at("starts_at"),
                f"bad starts_at {m['starts_at']!r}",
                "write an ISO date and time with its offset, e.g. 2027-01-20T16:00:00+09:00",
            )
        elif raw.tzinfo is None:
            ctx.report(
                m.at("starts_at"),
                "starts_at has no time zone offset",
                "add one, e.g. +09:00 for Japan or Z for UTC",
            )
        else:
            starts_at = raw
    duration = read_duration(ctx, m, "duration")
    url = read_url(ctx, m, "url")
    template = read_template(ctx, m)
    subject = read_text(ctx, m, "subject", required=True)
    by_persona = read_by_persona(ctx, m, ("template", "subject"))
    if None in (event_name, starts_at, template, subject):
        return None
    return InviteStep(
        event_name,  # type: ignore[arg-type]
        starts_at,  # type: ignore[arg-type]
        template,  # type: ignore[arg-type]
        subject,  # type: ignore[arg-type]
        duration,
        url,
        by_persona,
    )


def read_by_persona(ctx: Context, m: Map, keys: tuple[str, ...]) -> dict[str, PersonaContent]:
    """``by_persona``: persona name -> a template name, or ``{template, subject, ...}``.

    Each name must be a persona of ``segments.yaml`` that the journey's segments plan for
    (their ``personas:`` lists); a contact of any other persona, or of none, gets the
    step's own content."""
    if "by_persona" not in m:
        return {}
    block = m["by_persona"]
    if not isinstance(block, Map) or not block:
        ctx.report(
            m.at("by_persona"),
            "'by_persona' must be a mapping of persona names to templates",
            "e.g. by_persona: {executive: webinar_invite_executive}",
        )
        return {}
    out: dict[str, PersonaContent] = {}
    for name, value in block.items():
        _check_persona_name(ctx, name, block.key_at(name))
        if isinstance(value, str):
            template = read_template(ctx, block, name)
            if template is not None:
                out[name] = PersonaContent(template)
            continue
        if not isinstance(value, Map):
            ctx.report(
                block.at(name),
                f"the content for persona '{name}' must be a template name or a mapping",
                f"e.g. {name}: {{template: ..., subject: ...}}",
            )
            continue
        check_keys(ctx, value, keys, (), f"the content for persona '{name}'")
        content = PersonaContent(
            read_template(ctx, value, required=False),
            read_text(ctx, value, "subject"),
            read_text(ctx, value, "preheader") if "preheader" in keys else None,
        )
        if content == PersonaContent():
            ctx.report(
                block.key_at(name),
                f"the content for persona '{name}' changes nothing",
                f"give it a {' or '.join(keys)}",
            )
            continue
        out[name] = content
    return out


def _check_persona_name(ctx: Context, name: str, pos: Pos) -> None:
    if ctx.segments is None:
        return
    known = ctx.segments.persona_names
    if name not in known:
        defined = (
            f"personas: {', '.join(known)}"
            if known
            else "define personas in segments.yaml (a top-level 'personas:' mapping)"
        )
        ctx.report(pos, f"unknown persona '{name}'", suggest(name, known) or defined)
        return
    planned = ctx.segments.planned_personas(ctx.journey_segments)
    if name not in planned:
        segments = ", ".join(ctx.journey_segments)
        ctx.report(
            pos,
            f"persona '{name}' is not one the journey's segments ({segments}) plan for",
            f"add it to their 'personas:' list in segments.yaml, or use one of: "
            f"{', '.join(planned) or 'none'}",
        )
