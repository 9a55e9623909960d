"""A journey's steps as a whole: their ids, step types and channels, and the flow between
them (every step reachable from the first).

:data:`PARSERS` maps each step type to its parser (:mod:`~campaigns.journeys.steps`,
:mod:`~campaigns.journeys.emails`); :func:`parse_steps` reads the list, gives each step
the scope it stands in, and builds the typed :class:`~campaigns.journeys.model.Step`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

from campaigns.journeys.anchors import parse_wait_until_date
from campaigns.journeys.emails import parse_email, parse_invite, parse_survey
from campaigns.journeys.expressions import Scope
from campaigns.journeys.hints import suggest
from campaigns.journeys.model import (
    BranchStep,
    ExitStep,
    Step,
    StepConfig,
    StepType,
    Unit,
    WaitUntilDateStep,
)
from campaigns.journeys.reading import Context, read_choice, read_purpose, read_str
from campaigns.journeys.recipients import check_step, read_recipients
from campaigns.journeys.steps import (
    RawStep,
    StepSite,
    parse_branch,
    parse_exit,
    parse_in_app,
    parse_task,
    parse_update,
    parse_wait,
    parse_wait_until,
    parse_webhook,
)
from campaigns.journeys.vocabulary import (
    CATEGORIES,
    CHANNELS,
    ID_HINT,
    ID_RE,
    KIND_OF,
    SEND_TIMES,
    STEP_COMMON,
    STEP_GOALS,
    STEP_TYPES,
)
from campaigns.journeys.yamlsource import Map, Pos, Seq

PARSERS: Mapping[str, Callable[[Context, StepSite], StepConfig | None]] = {
    StepType.EMAIL: parse_email,
    StepType.WAIT: parse_wait,
    StepType.WAIT_UNTIL: parse_wait_until,
    StepType.WAIT_UNTIL_DATE: parse_wait_until_date,
    StepType.BRANCH: parse_branch,
    StepType.SURVEY: parse_survey,
    StepType.INVITE: parse_invite,
    StepType.TASK: parse_task,
    StepType.IN_APP: parse_in_app,
    StepType.WEBHOOK: parse_webhook,
    StepType.UPDATE: parse_update,
    StepType.EXIT: parse_exit,
}
"""The parser of each step type (a test holds it to :class:`~campaigns.journeys.model.StepType`)."""


def parse_steps(ctx: Context, doc: Map, top_scope: Scope) -> tuple[Step, ...]:
    """The journey's steps, each checked where it stands: a condition or a wait may name only
    the steps before it, a goto only those after; every step must be reachable."""
    value = doc["steps"]
    if not isinstance(value, Seq) or not value:
        ctx.report(
            doc.at("steps"),
            "'steps' must be a non-empty list",
            "e.g. steps: [{id: welcome, email: {...}}]",
        )
        return ()
    raw: list[RawStep] = []
    ids: dict[str, Pos] = {}
    for index, (item, pos) in enumerate(zip(value, value.item_pos, strict=True)):
        if not isinstance(item, Map):
            ctx.report(
                pos,
                f"step {index + 1} must be a mapping with 'id' and a step type",
                f"step types: {', '.join(STEP_TYPES)}",
            )
            continue
        raw.append(_raw_step(ctx, item, pos, index, ids))
    order = [r.id for r in raw]
    types = {r.id: tuple(r.types) for r in raw}
    kinds: dict[str, str] = {}
    steps: list[Step] = []
    for index, r in enumerate(raw):
        later = frozenset(order[index + 1 :])
        scope = Scope(
            engagement=True,
            steps=dict(kinds),
            later_steps=later,
            tiers=top_scope.tiers,
            account_journey=top_scope.account_journey,
            personas=top_scope.personas,
        )
        step = _step(ctx, r, StepSite(r, None, r.pos, scope, order, index, types))
        kinds[r.id] = step_kind(r.types)
        if step is not None:
            steps.append(step)
    if not ctx.problems:
        check_reachable(ctx, raw, steps)
    return tuple(steps)


def _raw_step(ctx: Context, item: Map, pos: Pos, index: int, ids: dict[str, Pos]) -> RawStep:
    """The step's id (``#n`` when it has none or a taken one), and its step types."""
    step_id = read_str(ctx, item, "id", pattern=ID_RE, hint=ID_HINT)
    if "id" not in item:
        ctx.report(pos, f"step {index + 1} has no 'id'", "give every step an id, e.g. id: welcome")
    if step_id is None:
        step_id = f"#{index + 1}"
    elif step_id in ids:
        ctx.report(
            item.at("id"),
            f"duplicate step id '{step_id}'",
            f"already used at line {ids[step_id].line}",
        )
        step_id = f"#{index + 1}"
    else:
        ids[step_id] = item.at("id")
    types = [k for k in item if k in STEP_TYPES]
    for key in item:
        if key not in STEP_TYPES and key not in STEP_COMMON:
            hint = (
                suggest(key, (*STEP_TYPES, *STEP_COMMON)) or f"step types: {', '.join(STEP_TYPES)}"
            )
            ctx.report(item.key_at(key), f"unknown key '{key}' in step '{step_id}'", hint)
    if not types and not any(suggest(k, STEP_TYPES) for k in item if k not in STEP_COMMON):
        ctx.report(
            pos, f"step '{step_id}' has no step type", f"add one of: {', '.join(STEP_TYPES)}"
        )
    return RawStep(step_id, pos, item, types)


def step_kind(types: list[str]) -> str:
    for t in types:
        if t in ("survey", "invite"):
            return "answer"
    for t in types:
        if t in KIND_OF:
            return KIND_OF[t]
    return types[0] if types else "unknown"


def _channels(ctx: Context, r: RawStep) -> tuple[str, ...]:
    value = r.m["channel"]
    pos = r.m.at("channel")
    names: list[str] = []
    if isinstance(value, str):
        match = re.fullmatch(r"\s*best_of\s*\[([^\]]*)\]\s*", value)
        if not match:
            ctx.report(pos, f"bad channel '{value}'", "write channel: best_of [email, task]")
            return ()
        names = [n.strip() for n in match.group(1).split(",") if n.strip()]
    elif isinstance(value, Map) and set(value) == {"best_of"} and isinstance(value["best_of"], Seq):
        names = [str(n) for n in value["best_of"]]
    else:
        ctx.report(pos, "bad channel", "write channel: best_of [email, task]")
        return ()
    if len(names) < 2 or len(set(names)) != len(names):
        ctx.report(
            pos, "best_of needs two or more different channels", "e.g. best_of [email, task]"
        )
    for name in names:
        if name not in CHANNELS:
            ctx.report(
                pos,
                f"unknown channel '{name}'",
                suggest(name, CHANNELS) or f"channels: {', '.join(CHANNELS)}",
            )
        elif name not in r.types:
            ctx.report(
                pos,
                f"best_of names '{name}' but step '{r.id}' has no '{name}:' block",
                f"add a '{name}:' block to the step",
            )
    for t in r.types:
        if t not in names:
            ctx.report(
                r.m.key_at(t),
                f"step '{r.id}' has a '{t}:' block that best_of does not name",
                f"add {t} to best_of, or remove the block",
            )
    return tuple(names)


def _step(ctx: Context, r: RawStep, where: StepSite) -> Step | None:
    """The step ``r``, its blocks read by their parsers at ``where`` (its scope and order)."""
    best_of: tuple[str, ...] = ()
    if "channel" in r.m:
        best_of = _channels(ctx, r)
    elif len(r.types) > 1:
        ctx.report(
            r.m.key_at(r.types[1]),
            f"step '{r.id}' has more than one step type ({', '.join(r.types)})",
            "split it into steps, or use channel: best_of [...] to let the engine choose",
        )
    if not r.types:
        return None
    blocks: dict[str, StepConfig] = {}
    for t in r.types:
        config = PARSERS[t](ctx, dataclasses.replace(where, value=r.m[t], pos=r.m.at(t)))
        if config is not None:
            blocks[t] = config
    goal = read_choice(ctx, r.m, "goal", STEP_GOALS)
    if goal == "answered" and not {"survey", "invite"} & set(r.types):
        ctx.report(r.m.at("goal"), "goal 'answered' needs a survey or invite step")
    if goal == "rsvp_yes" and "invite" not in r.types:
        ctx.report(r.m.at("goal"), "goal 'rsvp_yes' needs an invite step")
    if goal in ("opened", "clicked") and not {"email", "survey", "invite"} & set(r.types):
        ctx.report(r.m.at("goal"), f"goal '{goal}' needs a step that sends an email")
    category = read_choice(ctx, r.m, "category", CATEGORIES)
    send_time = _send_time(ctx, r)
    unit = Unit.ACCOUNT if where.scope.account_journey else Unit.CONTACT
    check_step(ctx, r.m, r.id, r.types, unit)
    recipients = read_recipients(ctx, r.m, f"step '{r.id}'")
    purpose = _purpose(ctx, r, category, send_time)
    if len(blocks) != len(r.types) or not set(best_of) <= set(blocks):
        return None
    step_type = StepType(best_of[0] if best_of else r.types[0])
    return Step(
        r.id,
        step_type,
        blocks,
        r.pos.line,
        best_of,
        goal,
        category,
        send_time,
        recipients,
        purpose,
    )


def _purpose(ctx: Context, r: RawStep, category: str | None, send_time: str | None) -> str | None:
    """``purpose: marketing | operational`` on a step that sends an email; operational mail
    has no preference category and no learned send hour (it goes whatever the preferences,
    as soon as it is due)."""
    purpose = read_purpose(ctx, r.m)
    sends = bool({"email", "survey", "invite"} & set(r.types))
    if purpose is not None and not sends:
        ctx.report(
            r.m.key_at("purpose"),
            f"step '{r.id}': 'purpose' belongs on a step that sends an email",
            "email, survey and invite steps are marketing or operational; remove it here",
        )
        return None
    if not sends or (purpose or ctx.journey_purpose) != "operational":
        return purpose
    where = "" if purpose else " (the journey's purpose)"
    if category is not None:
        ctx.report(
            r.m.key_at("category"),
            f"step '{r.id}' is operational{where}: nobody can opt out of it by category",
            "remove 'category', or make the step purpose: marketing",
        )
    if send_time is not None:
        ctx.report(
            r.m.key_at("send_time"),
            f"step '{r.id}' is operational{where}: it goes when due, not at a learned hour",
            "remove 'send_time', or make the step purpose: marketing",
        )
    return purpose


def _send_time(ctx: Context, r: RawStep) -> str | None:
    """``send_time: best_hour`` (or ``now``, the default) on a step that sends an email."""
    if "send_time" not in r.m:
        return None
    if r.m["send_time"] is None:
        ctx.report(
            r.m.at("send_time"),
            "'send_time' is empty",
            "write send_time: best_hour, or leave it out to send as soon as the window allows",
        )
        return None
    chosen = read_choice(ctx, r.m, "send_time", SEND_TIMES)
    if chosen == "best_hour" and not {"email", "survey", "invite"} & set(r.types):
        ctx.report(
            r.m.at("send_time"),
            "send_time 'best_hour' needs a step that sends an email",
            "it times email, survey and invite steps; remove it here",
        )
        return None
    return None if chosen == "now" else chosen


def check_reachable(ctx: Context, raw: list[RawStep], steps: list[Step]) -> None:
    """Every step must be reachable from the first, following order, gotos and exits."""
    if len(steps) != len(raw):
        return
    index = {s.id: i for i, s in enumerate(steps)}
    reached = {0}
    stack = [0]
    while stack:
        i = stack.pop()
        step = steps[i]
        nexts: list[int] = []
        config = step.config
        if isinstance(config, ExitStep):
            pass
        elif isinstance(config, BranchStep):
            nexts += [index[a.goto] for a in config.arms]
            if config.otherwise is not None:
                nexts.append(index[config.otherwise])
            elif i + 1 < len(steps):
                nexts.append(i + 1)
        elif i + 1 < len(steps):
            nexts.append(i + 1)
            if (
                isinstance(config, WaitUntilDateStep)
                and config.if_past == "skip"
                and i + 2 < len(steps)
            ):
                nexts.append(i + 2)  # a passed date skips the step after it
        for n in nexts:
            if n not in reached:
                reached.add(n)
                stack.append(n)
    for i, r in enumerate(raw):
        if i not in reached:
            before = raw[i - 1].id if i else None
            hint = (
                f"the step before it ('{before}') never continues to it and no goto names it"
                if before
                else None
            )
            ctx.report(r.pos, f"step '{r.id}' can never be reached", hint)
