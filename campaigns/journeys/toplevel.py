"""The journey-wide keys of a journey file: segments, entry, re-entry, exits, goal, sending
window and holdout, each read into its typed part of :class:`~campaigns.journeys.model.Journey`.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import time

from campaigns.journeys.durations import DurationError, parse_duration, parse_offset
from campaigns.journeys.expressions import Scope
from campaigns.journeys.hints import suggest
from campaigns.journeys.model import Entry, ExitRule, Goal, ReEntry, SendingWindow, Trigger
from campaigns.journeys.reading import (
    Context,
    check_keys,
    read_choice,
    read_condition,
    read_duration,
    read_event,
    read_str,
)
from campaigns.journeys.vocabulary import DATE_FIELDS, DAY_NAMES
from campaigns.journeys.yamlsource import Map, Pos, Seq, describe


def _no_steps(scope: Scope) -> Scope:
    return Scope(engagement=True, steps={}, tiers=scope.tiers, personas=scope.personas)


def read_segments(ctx: Context, doc: Map) -> list[str]:
    if "segments" not in doc:
        return []
    value = doc["segments"]
    if isinstance(value, str):
        value, positions = [value], [doc.at("segments")]
    elif isinstance(value, Seq):
        positions = value.item_pos
    else:
        ctx.report(
            doc.at("segments"),
            "'segments' must be a list of segment names",
            "e.g. segments: [low_touch]",
        )
        return []
    if not value:
        ctx.report(
            doc.at("segments"),
            "'segments' is empty",
            "name at least one segment or tier from segments.yaml",
        )
    names: list[str] = []
    for item, pos in zip(value, positions, strict=True):
        if not isinstance(item, str):
            ctx.report(pos, f"a segment name must be text, not {describe(item)}")
            continue
        if ctx.segments is not None and item not in ctx.segments:
            ctx.report(
                pos,
                f"unknown segment '{item}'",
                suggest(item, ctx.segments.names) or f"defined: {', '.join(ctx.segments.names)}",
            )
        names.append(item)
    return names


def read_entry(ctx: Context, value: object, pos: Pos) -> Entry | None:
    if not isinstance(value, Map):
        ctx.report(pos, "'entry' must be a mapping", "e.g. entry: {trigger: segment}")
        return None
    trigger = read_choice(ctx, value, "trigger", tuple(t.value for t in Trigger))
    if "trigger" not in value:
        ctx.report(value.pos, "'entry' needs a 'trigger'", "trigger: segment, event or date")
        return None
    if trigger == Trigger.SEGMENT:
        check_keys(ctx, value, ("trigger",), (), "a segment entry")
        return Entry(Trigger.SEGMENT)
    if trigger == Trigger.EVENT:
        check_keys(ctx, value, ("trigger", "event"), ("event",), "an event entry")
        event = read_event(ctx, value, "event")
        return Entry(Trigger.EVENT, event=event) if event else None
    if trigger == Trigger.DATE:
        check_keys(ctx, value, ("trigger", "field", "offset"), ("field", "offset"), "a date entry")
        field = read_str(ctx, value, "field")
        if (
            field is not None
            and field not in DATE_FIELDS
            and not re.match(r"^attributes\.[A-Za-z_][\w]*$", field)
        ):
            ctx.report(
                value.at("field"),
                f"'{field}' is not a date field",
                suggest(field, DATE_FIELDS)
                or f"use {' or '.join(DATE_FIELDS)} or attributes.<name>",
            )
            field = None
        offset = None
        if "offset" in value:
            try:
                offset = parse_offset(value["offset"])
            except DurationError as exc:
                ctx.report(value.at("offset"), f"bad offset: {exc}", exc.hint)
        return (
            Entry(Trigger.DATE, field=field, offset=offset)
            if field and offset is not None
            else None
        )
    return None


def read_re_entry(ctx: Context, doc: Map) -> ReEntry:
    if "re_entry" not in doc:
        return ReEntry()
    value = doc["re_entry"]
    if value in ("never", "always"):
        return ReEntry(value)
    if isinstance(value, str) and value.startswith("after "):
        try:
            return ReEntry("after", parse_duration(value[6:]))
        except DurationError as exc:
            ctx.report(doc.at("re_entry"), f"bad re_entry: {exc}", exc.hint)
            return ReEntry()
    if isinstance(value, Map) and set(value) == {"after"}:
        after = read_duration(ctx, value, "after")
        return ReEntry("after", after) if after else ReEntry()
    hint = suggest(value, ("never", "always")) if isinstance(value, str) else None
    ctx.report(
        doc.at("re_entry"),
        f"bad re_entry {value!r}",
        hint or "use never, always, or 'after 90 days'",
    )
    return ReEntry()


def read_exit_rules(ctx: Context, doc: Map, scope: Scope) -> tuple[ExitRule, ...]:
    if "exit_when" not in doc:
        return ()
    value = doc["exit_when"]
    if not isinstance(value, Seq):
        ctx.report(
            doc.at("exit_when"), "'exit_when' must be a list", "e.g. exit_when: [{event: churned}]"
        )
        return ()
    rules: list[ExitRule] = []
    for item, pos in zip(value, value.item_pos, strict=True):
        if not isinstance(item, Map) or len(item) != 1:
            ctx.report(
                pos,
                "each exit rule has one key: event, condition or unsubscribed",
                "e.g. - event: churned",
            )
            continue
        check_keys(ctx, item, ("event", "condition", "unsubscribed"), (), "an exit rule")
        if "event" in item:
            event = read_event(ctx, item, "event")
            if event:
                rules.append(ExitRule(event=event))
        elif "condition" in item:
            cond = read_condition(
                ctx, item["condition"], item.at("condition"), _no_steps(scope), "condition"
            )
            if cond:
                rules.append(ExitRule(condition=cond))
        elif "unsubscribed" in item:
            if item["unsubscribed"] is not True:
                ctx.report(item.at("unsubscribed"), "write 'unsubscribed: true'")
            rules.append(ExitRule(unsubscribed=True))
    return tuple(rules)


def read_goal(ctx: Context, doc: Map) -> Goal | None:
    if "goal" not in doc:
        return None
    value = doc["goal"]
    if not isinstance(value, Map):
        ctx.report(
            doc.at("goal"),
            "'goal' must be a mapping",
            "e.g. goal: {event: renewed, within: 120 days}",
        )
        return None
    check_keys(ctx, value, ("event", "within"), ("event",), "the goal")
    event = read_event(ctx, value, "event")
    within = read_duration(ctx, value, "within")
    return Goal(event, within) if event else None


def _hhmm(text: str) -> time | None:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match.group(1)) > 24 or int(match.group(2)) > 59:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour == 24:
        return time(23, 59, 59) if minute == 0 else None
    return time(hour, minute)


def read_window(ctx: Context, value: object, pos: Pos) -> SendingWindow | None:
    if not isinstance(value, Map):
        ctx.report(
            pos, "'sending_window' must be a mapping", 'e.g. {days: weekdays, hours: "09:00-18:00"}'
        )
        return None
    check_keys(ctx, value, ("days", "hours", "time_zone"), (), "the sending window")
    days = _window_days(ctx, value)
    start, end = _window_hours(ctx, value)
    zone = "contact"
    if "time_zone" in value:
        zone = str(value["time_zone"])
        if zone != "contact":
            _check_zone(ctx, zone, value.at("time_zone"))
    return SendingWindow(days, start, end, zone)


def _window_days(ctx: Context, value: Map) -> tuple[int, ...]:
    """The days of the week mail may go, Monday = 0: every day unless the file says."""
    raw_days = value.get("days", "everyday")
    if raw_days == "weekdays":
        return tuple(range(5))
    if raw_days == "everyday":
        return tuple(range(7))
    if isinstance(raw_days, Seq) and raw_days:
        picked: list[int] = []
        for item, item_pos in zip(raw_days, raw_days.item_pos, strict=True):
            name = str(item).lower()[:3] if isinstance(item, str) else ""
            if name not in DAY_NAMES:
                ctx.report(
                    item_pos,
                    f"unknown day {item!r}",
                    suggest(str(item).lower(), DAY_NAMES) or f"days: {', '.join(DAY_NAMES)}",
                )
            else:
                picked.append(DAY_NAMES.index(name))
        return tuple(sorted(set(picked)))
    ctx.report(
        value.at("days"),
        f"bad days {raw_days!r}",
        "use weekdays, everyday, or a list such as [mon, wed, fri]",
    )
    return tuple(range(7))


def _window_hours(ctx: Context, value: Map) -> tuple[time, time]:
    """The hours of the day mail may go: the whole day unless the file says."""
    whole_day = (time(0, 0), time(23, 59, 59))
    if "hours" not in value:
        return whole_day
    raw = value["hours"]
    parts = raw.split("-") if isinstance(raw, str) else []
    times = [_hhmm(p) for p in parts] if len(parts) == 2 else []
    start, end = times if len(times) == 2 else (None, None)
    if start is None or end is None:
        ctx.report(
            value.at("hours"),
            f"bad hours {raw!r}",
            'write "HH:MM-HH:MM", e.g. "09:00-18:00" (quoted)',
        )
        return whole_day
    if start >= end:
        ctx.report(
            value.at("hours"),
            f"the window {raw!r} ends before it starts",
            'windows cannot cross midnight; use e.g. "09:00-18:00"',
        )
        return whole_day
    return start, end


_ZONE_NAMES = {"tokyo": "Asia/Tokyo", "japan": "Asia/Tokyo", "jst": "Asia/Tokyo", "utc": "UTC"}
"""What people write for a zone, and its IANA name (for the hint)."""


def _check_zone(ctx: Context, zone: str, pos: Pos) -> None:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = (
            f"did you mean '{_ZONE_NAMES[zone.lower()]}'?"
            if zone.lower() in _ZONE_NAMES
            else "use 'contact' or an IANA name such as Asia/Tokyo"
        )
        ctx.report(pos, f"unknown time zone '{zone}'", hint)


def read_holdout(ctx: Context, doc: Map) -> float:
    if "holdout" not in doc:
        return 0.0
    raw = doc["holdout"]
    text = raw.strip().rstrip("%") if isinstance(raw, str) else raw
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if isinstance(raw, bool) or not 0 <= value <= 50:
        ctx.report(
            doc.at("holdout"),
            f"bad holdout {raw!r}",
            "a percentage from 0 to 50, e.g. holdout: 10%",
        )
        return 0.0
    return value / 100
