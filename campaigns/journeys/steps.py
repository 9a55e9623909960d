"""One parser per step type: each reads its block of a step into a typed step config.

A parser reads the block at its :class:`StepSite` and returns the config, or reports
every problem and returns None. Here: the steps that wait, branch, assign, post, update
and exit; the steps that send an email from a template are in
:mod:`~campaigns.journeys.emails`. :data:`campaigns.journeys.flow.PARSERS` maps each step
type to its parser, the way the engine maps each config to its executor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from campaigns.journeys.expressions import Scope
from campaigns.journeys.hints import suggest
from campaigns.journeys.model import (
    Arm,
    BranchStep,
    ExitStep,
    InAppStep,
    TaskStep,
    UpdateStep,
    WaitStep,
    WaitUntilStep,
    WebhookStep,
)
from campaigns.journeys.reading import (
    Context,
    check_keys,
    check_template,
    read_choice,
    read_condition,
    read_duration,
    read_event,
    read_str,
    read_text,
    read_url,
)
from campaigns.journeys.vocabulary import (
    KIND_TEXT,
    SETTABLE,
    TASK_KINDS,
    TASK_PER,
    WAIT_SIGNALS,
)
from campaigns.journeys.yamlsource import Map, Pos, Seq


@dataclass
class RawStep:
    """A step as first read: its id (or ``#n`` when it has none), place, mapping and the
    step types among its keys."""

    id: str
    pos: Pos
    m: Map
    types: list[str]


@dataclass(frozen=True)
class StepSite:
    """Where a step type's block stands: the block as written and its place, the step it
    belongs to, what a condition there may name, the order of every step and each step's
    step types."""

    raw: RawStep
    value: object
    pos: Pos
    scope: Scope
    order: Sequence[str]
    index: int
    types: Mapping[str, Sequence[str]] = field(default_factory=dict)


def block_of(ctx: Context, site: StepSite, name: str) -> Map | None:
    if not isinstance(site.value, Map):
        ctx.report(
            site.pos,
            f"'{name}' in step '{site.raw.id}' must be a mapping of options",
            "see docs/dsl.md#steps",
        )
        return None
    return site.value


def step_ref(ctx: Context, m: Map, key: str, site: StepSite, needed: str) -> str | None:
    """A step named by ``key`` (wait_until): one that runs before, of the kind ``needed``."""
    r, scope = site.raw, site.scope
    target = read_str(ctx, m, key)
    if target is None:
        return None
    if target in scope.steps:
        actual = scope.steps[target]
        if needed != actual and not (needed == "email" and actual == "answer"):
            ctx.report(
                m.at(key),
                f"'{key}: {target}' needs {KIND_TEXT[needed]}, but '{target}' is not one",
            )
            return None
        return target
    if target == r.id:
        ctx.report(m.at(key), f"step '{r.id}' waits for itself", "name an earlier step")
    elif target in scope.later_steps:
        ctx.report(
            m.at(key),
            f"'{target}' runs later than step '{r.id}'",
            "wait for a step that comes before",
        )
    else:
        ctx.report(
            m.at(key),
            f"no step '{target}'",
            suggest(target, [*scope.steps, *scope.later_steps]),
        )
    return None


def _goto(ctx: Context, m: Map, key: str, site: StepSite) -> str | None:
    """The step a branch arm jumps to: it must exist and come later (journeys run forward)."""
    order = site.order
    target = read_str(ctx, m, key)
    if target is None:
        return None
    if target not in order:
        ctx.report(m.at(key), f"no step '{target}' to go to", suggest(target, order))
        return None
    if order.index(target) <= site.index:
        ctx.report(
            m.at(key),
            f"'{key}: {target}' jumps back",
            "journeys run forward only: a goto names a later step; use re_entry to repeat",
        )
        return None
    return target


def _plain(value: object) -> object:
    """A YAML value as plain JSON-able data (dates as ISO text), for payloads and updates."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def parse_wait(ctx: Context, site: StepSite) -> WaitStep | None:
    holder = Map({"wait": site.value})
    holder.pos, holder.key_pos, holder.value_pos = site.pos, {"wait": site.pos}, {"wait": site.pos}
    duration = read_duration(ctx, holder, "wait")
    return WaitStep(duration) if duration else None


def parse_wait_until(ctx: Context, site: StepSite) -> WaitUntilStep | None:
    m = block_of(ctx, site, "wait_until")
    if m is None:
        return None
    check_keys(
        ctx, m, (*WAIT_SIGNALS, "timeout"), ("timeout",), f"the wait_until of step '{site.raw.id}'"
    )
    signals = [k for k in m if k in WAIT_SIGNALS]
    if len(signals) != 1:
        ctx.report(
            m.pos,
            f"wait_until needs exactly one of: {', '.join(WAIT_SIGNALS)}",
            "e.g. answered: ask_nps",
        )
        return None
    signal = signals[0]
    timeout = read_duration(ctx, m, "timeout")
    if signal == "event":
        target = read_event(ctx, m, "event")
    else:
        needed = {"answered": "answer", "opened": "email", "clicked": "email", "task_done": "task"}[
            signal
        ]
        target = step_ref(ctx, m, signal, site, needed)
    if target is None or timeout is None:
        return None
    return WaitUntilStep(signal, target, timeout)


def parse_branch(ctx: Context, site: StepSite) -> BranchStep | None:
    if not isinstance(site.value, Seq) or not site.value:
        ctx.report(
            site.pos,
            f"'branch' in step '{site.raw.id}' must be a list of arms",
            "e.g. - {when: clicked('welcome'), goto: tips}",
        )
        return None
    arms: list[Arm] = []
    otherwise: str | None = None
    ok = True
    for n, (item, item_pos) in enumerate(zip(site.value, site.value.item_pos, strict=True)):
        if not isinstance(item, Map):
            ctx.report(
                item_pos,
                "a branch arm is a mapping: when + goto, or else",
                "e.g. - when: opened('welcome')",
            )
            ok = False
            continue
        if "else" in item:
            check_keys(ctx, item, ("else",), (), "an else arm")
            if n != len(site.value) - 1:
                ctx.report(item.key_at("else"), "'else' must be the last arm", "move it to the end")
            otherwise = _goto(ctx, item, "else", site)
            ok = ok and otherwise is not None
            continue
        check_keys(ctx, item, ("when", "goto"), ("when", "goto"), "a branch arm")
        cond = (
            read_condition(ctx, item.get("when"), item.at("when"), site.scope, "when")
            if "when" in item
            else None
        )
        goto = _goto(ctx, item, "goto", site) if "goto" in item else None
        if cond is None or goto is None:
            ok = False
            continue
        arms.append(Arm(cond, goto))
    if ok and not arms and otherwise is None:
        ctx.report(
            site.pos,
            f"branch '{site.raw.id}' has no arm",
            "add '- when: ...' with a goto, or '- else: <step>' to jump",
        )
        return None
    return BranchStep(tuple(arms), otherwise) if ok else None


def parse_task(ctx: Context, site: StepSite) -> TaskStep | None:
    m = block_of(ctx, site, "task")
    if m is None:
        return None
    check_keys(
        ctx,
        m,
        ("kind", "title", "notes", "due", "assignee", "per"),
        (),
        f"the task of step '{site.raw.id}'",
    )
    per = read_choice(ctx, m, "per", TASK_PER) if "per" in m else "account"
    kind = read_choice(ctx, m, "kind", TASK_KINDS) if "kind" in m else "call"
    title = read_text(ctx, m, "title", required=True)
    notes = read_text(ctx, m, "notes")
    due = read_duration(ctx, m, "due") if "due" in m else timedelta(days=3)
    assignee = read_str(ctx, m, "assignee") or "owner"
    if assignee != "owner" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", assignee):
        ctx.report(
            m.at("assignee"),
            f"bad assignee '{assignee}'",
            "use 'owner' (the account's CSM) or an email address",
        )
        return None
    if None in (kind, title, due, per):
        return None
    return TaskStep(title, kind, due, assignee, notes, per)  # type: ignore[arg-type]


def parse_in_app(ctx: Context, site: StepSite) -> InAppStep | None:
    m = block_of(ctx, site, "in_app")
    if m is None:
        return None
    check_keys(
        ctx,
        m,
        ("title", "body", "url", "expires"),
        (),
        f"the in_app message of step '{site.raw.id}'",
    )
    title = read_text(ctx, m, "title", required=True)
    body = read_text(ctx, m, "body", required=True)
    url = read_url(ctx, m, "url")
    expires = read_duration(ctx, m, "expires")
    if title is None or body is None:
        return None
    return InAppStep(title, body, url, expires)


def parse_webhook(ctx: Context, site: StepSite) -> WebhookStep | None:
    m = block_of(ctx, site, "webhook")
    if m is None:
        return None
    check_keys(ctx, m, ("url", "payload"), ("url",), f"the webhook of step '{site.raw.id}'")
    url = read_url(ctx, m, "url", required=True)
    payload = m.get("payload", {})
    if not isinstance(payload, Map):
        ctx.report(m.at("payload"), "'payload' must be a mapping (it is sent as a JSON object)")
        return None
    for key in payload:
        item = payload[key]
        if isinstance(item, str):
            check_template(ctx, item, payload.at(key), key)
    return WebhookStep(url, {str(k): _plain(v) for k, v in payload.items()}) if url else None


def parse_update(ctx: Context, site: StepSite) -> UpdateStep | None:
    m = block_of(ctx, site, "update")
    if m is None:
        return None
    check_keys(
        ctx, m, ("set", "add_tags", "remove_tags"), (), f"the update of step '{site.raw.id}'"
    )
    if not m:
        ctx.report(
            site.pos,
            f"update '{site.raw.id}' changes nothing",
            "add set:, add_tags: or remove_tags:",
        )
    sets: dict[str, object] = {}
    if "set" in m:
        block = m["set"]
        if not isinstance(block, Map):
            ctx.report(m.at("set"), "'set' must be a mapping of field to site.value")
        else:
            for key in block:
                if not (
                    key in SETTABLE
                    or re.fullmatch(r"(contact\.)?attributes\.[A-Za-z_]\w{0,63}", key)
                ):
                    ctx.report(
                        block.key_at(key),
                        f"'{key}' cannot be set",
                        suggest(key, SETTABLE)
                        or "settable: attributes.<name>, contact.attributes.<name>,"
                        " health_score, contact.locale",
                    )
                    continue
                if isinstance(block[key], str):
                    check_template(ctx, block[key], block.at(key), key)
                sets[key] = _plain(block[key])
    tags: dict[str, tuple[str, ...]] = {}
    for key in ("add_tags", "remove_tags"):
        raw = m.get(key, [])
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(
            isinstance(t, str) and re.fullmatch(r"[\w.:-]{1,64}", t) for t in raw
        ):
            ctx.report(m.at(key), f"'{key}' must be a list of tags (words without spaces)")
            raw = []
        tags[key] = tuple(raw)
    return UpdateStep(sets, tags["add_tags"], tags["remove_tags"])


def parse_exit(ctx: Context, site: StepSite) -> ExitStep | None:
    if site.value is None or site.value == {}:
        return ExitStep()
    if not isinstance(site.value, str) or not re.fullmatch(r"[\w -]{1,64}", site.value):
        ctx.report(site.pos, "exit takes a short reason", "e.g. exit: completed")
        return None
    return ExitStep(site.value)
