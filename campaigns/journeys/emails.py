"""The steps that send an email from a template: email (with its variants), survey, invite.

Each parser reads its block of a step (see :class:`~campaigns.journeys.steps.StepSite`)
into its typed config; they share the template, subject and preheader readers.
"""

from __future__ import annotations

import re
from datetime import datetime

from campaigns.journeys.model import EmailStep, InviteStep, SurveyStep, Variant
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
from campaigns.journeys.yamlsource import Map, Seq


def parse_email(ctx: Context, site: StepSite) -> EmailStep | None:
    m = block_of(ctx, site, "email")
    if m is None:
        return None
    check_keys(
        ctx,
        m,
        ("template", "subject", "preheader", "variants", "from_name", "reply_to"),
        (),
        f"the email of step '{site.raw.id}'",
    )
    template = read_template(ctx, m)
    subject = read_text(ctx, m, "subject", required=True)
    preheader = read_text(ctx, m, "preheader")
    variants = _variants(ctx, m)
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
    return EmailStep(template, subject, preheader, variants, from_name, reply_to)


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
        ("scale", "template", "subject", "question"),
        ("scale",),
        f"the survey of step '{site.raw.id}'",
    )
    scale = read_choice(ctx, m, "scale", ("nps", "csat"))
    template = read_template(ctx, m)
    subject = read_text(ctx, m, "subject", required=True)
    question = read_text(ctx, m, "question")
    if None in (scale, template, subject):
        return None
    return SurveyStep(scale, template, subject, question)  # type: ignore[arg-type]


def parse_invite(ctx: Context, site: StepSite) -> InviteStep | None:
    m = block_of(ctx, site, "invite")
    if m is None:
        return None
    check_keys(
        ctx,
        m,
        ("event_name", "starts_at", "duration", "url", "template", "subject"),
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
    if None in (event_name, starts_at, template, subject):
        return None
    return InviteStep(event_name, starts_at, template, subject, duration, url)  # type: ignore[arg-type]
