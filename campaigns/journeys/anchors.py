"""Date anchors: the ``wait_until_date`` step, read from a journey file, and the pure rules
of when it fires.

A date wait fires on a day (an account or contact date, or an earlier invite's
``starts_at``, moved by ``offset``) at a local time of day (``at``; by default the sending
window's opening, 09:00 without a window), in the sending window's time zone (``contact``: the
one the engine passes in). An offset in hours or minutes from an invite's ``starts_at`` fires
at that exact moment instead. What happens when the enrollment reaches the step is
:func:`on_arrival`: wait for the moment, go on, or apply the step's ``if_past`` rule when the
moment has passed (or there is no date to wait for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from campaigns.journeys.durations import DurationError, parse_offset
from campaigns.journeys.fields import ACCOUNT_FIELDS, CONTACT_FIELDS
from campaigns.journeys.hints import suggest
from campaigns.journeys.model import SendingWindow, WaitUntilDateStep
from campaigns.journeys.reading import Context, check_keys, read_choice
from campaigns.journeys.steps import StepSite, block_of
from campaigns.journeys.vocabulary import DATE_FIELDS, DATE_WAIT_KEYS, IF_PAST
from campaigns.journeys.windows import zone
from campaigns.journeys.yamlsource import Map, Pos, describe

DEFAULT_AT = time(9, 0)
"""When a date wait fires in a journey without a sending window and without ``at``."""

DATE_HINT = (
    "date fields: renewal_date, contract_start, attributes.<name>,"
    " contact.attributes.<name>, <invite step>.starts_at"
)
_ATTRIBUTE = re.compile(r"(contact\.)?attributes\.[A-Za-z_]\w{0,63}")
_STARTS_AT = re.compile(r"([a-z][a-z0-9_]{0,63})\.(\w+)")
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")
_DAY = timedelta(days=1)


# ---------------------------------------------------------------------------- the step


def parse_wait_until_date(ctx: Context, site: StepSite) -> WaitUntilDateStep | None:
    m = block_of(ctx, site, "wait_until_date")
    if m is None:
        return None
    where = f"the wait_until_date of step '{site.raw.id}'"
    check_keys(ctx, m, DATE_WAIT_KEYS, (), where)
    anchor = _read_anchor(ctx, m, site) if "date" in m else None
    if "date" not in m:
        ctx.report(m.pos, f"{where} needs 'date'", DATE_HINT)
    offset = _read_offset(ctx, m, anchor)
    at = _read_at(ctx, m)
    if_past = _read_if_past(ctx, m, site, where)
    if at is not None and offset is not None and offset % _DAY:
        ctx.report(
            m.key_at("at"),
            f"'at' does not go with the offset '{m['offset']}'",
            "an offset in hours or minutes fires at that moment; remove 'at',"
            " or write the offset in days",
        )
        return None
    if anchor is None or offset is None or if_past is None or ("at" in m and at is None):
        return None
    return WaitUntilDateStep(anchor, if_past, offset, at)


def _read_anchor(ctx: Context, m: Map, site: StepSite) -> str | None:
    """The date the step waits for: an account date, an attribute, or an invite's starts_at."""
    raw, pos = m["date"], m.at("date")
    if isinstance(raw, date):
        ctx.report(
            pos,
            f"'date' names a date field, not a fixed day ({raw.isoformat()})",
            "keep the day in an attribute and name it, e.g. date: attributes.go_live",
        )
        return None
    if not isinstance(raw, str) or not raw.strip():
        ctx.report(pos, f"'date' names a date field, not {describe(raw)}", DATE_HINT)
        return None
    name = raw.strip()
    if name.startswith("account.") and name[8:] in DATE_FIELDS:
        name = name[8:]
    if name in DATE_FIELDS or _ATTRIBUTE.fullmatch(name):
        return name
    match = _STARTS_AT.fullmatch(name)
    if match and match.group(1) in site.order:
        return _invite_anchor(ctx, pos, site, match.group(1), match.group(2))
    invites = _invites_before(site)
    if match and match.group(2) == "starts_at":
        ctx.report(
            pos,
            f"no step '{match.group(1)}'",
            suggest(match.group(1), invites)
            or f"name an invite step before this one ({', '.join(invites) or 'there is none'})",
        )
    elif name.removeprefix("account.") in ACCOUNT_FIELDS or (
        name.removeprefix("contact.") in CONTACT_FIELDS
    ):
        ctx.report(pos, f"'{name}' is not a date", DATE_HINT)
    else:
        ctx.report(pos, f"unknown date field '{name}'", suggest(name, DATE_FIELDS) or DATE_HINT)
    return None


def _invites_before(site: StepSite) -> list[str]:
    return [s for s in site.order[: site.index] if "invite" in site.types.get(s, ())]


def _invite_anchor(ctx: Context, pos: Pos, site: StepSite, step: str, key: str) -> str | None:
    """``<step>.starts_at``: the step must be an invite step that runs before this one."""
    invites = ", ".join(_invites_before(site)) or "none"
    if key != "starts_at":
        ctx.report(pos, f"step '{step}' has no date '{key}'", f"write {step}.starts_at")
    elif step == site.raw.id:
        ctx.report(pos, f"step '{step}' waits for its own date", "name an earlier invite step")
    elif site.order.index(step) > site.index:
        ctx.report(
            pos,
            f"'{step}' runs later than step '{site.raw.id}'",
            f"anchor on an invite step that comes before; invite steps before: {invites}",
        )
    elif "invite" not in site.types.get(step, ()):
        ctx.report(
            pos,
            f"'{step}' is not an invite step: only an invite has a starts_at",
            f"invite steps before this one: {invites}",
        )
    else:
        return f"{step}.starts_at"
    return None


def _read_offset(ctx: Context, m: Map, anchor: str | None) -> timedelta | None:
    """The offset (default: on the day); a date has no time of day, so only days or weeks,
    except from an invite's starts_at."""
    if "offset" not in m:
        return timedelta(0)
    try:
        offset = parse_offset(m["offset"])
    except DurationError as exc:
        ctx.report(m.at("offset"), f"bad offset: {exc}", exc.hint)
        return None
    if offset % _DAY and anchor is not None and not anchor.endswith(".starts_at"):
        ctx.report(
            m.at("offset"),
            f"'{m['offset']}' is not a whole number of days: {anchor} is a date",
            'write the offset in days or weeks, and the time of day in at: "HH:MM"',
        )
        return None
    return offset


def _read_at(ctx: Context, m: Map) -> time | None:
    """``at: "10:00"``. Unquoted, YAML reads 10:00 as a number (600), so the text as written
    in the file is read instead."""
    if "at" not in m:
        return None
    raw = m["at"]
    text = (
        _as_written(ctx, m.at("at")) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    )
    match = _HHMM.fullmatch(text.strip()) if isinstance(text, str) else None
    if match and int(match.group(1)) < 24 and int(match.group(2)) < 60:
        return time(int(match.group(1)), int(match.group(2)))
    ctx.report(
        m.at("at"),
        f"bad at {raw!r}: not a time of day",
        'write a local time as "HH:MM", from "00:00" to "23:59", e.g. at: "10:00"',
    )
    return None


def _as_written(ctx: Context, pos: Pos) -> str:
    lines = ctx.text.splitlines()
    if not 0 < pos.line <= len(lines):
        return ""
    rest = lines[pos.line - 1][pos.col - 1 :]
    return re.split(r"[\s,}#]", rest, maxsplit=1)[0]


def _read_if_past(ctx: Context, m: Map, site: StepSite, where: str) -> str | None:
    if "if_past" not in m:
        ctx.report(
            m.pos,
            f"{where} needs 'if_past': what to do when the date has passed on arrival",
            "if_past: skip (skip the step after this one), now (go on at once) or exit",
        )
        return None
    rule = read_choice(ctx, m, "if_past", IF_PAST)
    if rule == "skip" and site.index + 1 >= len(site.order):
        ctx.report(
            m.at("if_past"),
            f"'if_past: skip' skips the step after '{site.raw.id}', but nothing follows it",
            "put the message the date is for right after this step, or use now or exit",
        )
        return None
    return rule


# ---------------------------------------------------------------------------- when it fires


@dataclass(frozen=True)
class Arrival:
    """What a date wait does when an enrollment first reaches it: ``wait`` until
    ``fire_at``, ``go`` on (the moment is now, or earlier on the fire day itself), or the
    ``if_past`` rule (skip | now | exit) with the ``reason`` it applies."""

    action: str
    fire_at: datetime | None = None
    reason: str | None = None


def zone_name(window: SendingWindow | None, contact_zone: str | None) -> str | None:
    """The zone a date wait's day and time are read in: the window's, or the contact's."""
    if window is None or window.time_zone == "contact":
        return contact_zone
    return window.time_zone


def time_of_day(step: WaitUntilDateStep, window: SendingWindow | None) -> time:
    """``at``, or the window's opening, or :data:`DEFAULT_AT` without a window."""
    if step.at is not None:
        return step.at
    return window.start if window is not None else DEFAULT_AT


def day_of(value: object, tz_name: str | None) -> date | None:
    """An anchor's value as a day: a date, a datetime (its day in the zone), or ISO text."""
    if isinstance(value, datetime):
        return value.astimezone(zone(tz_name)).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
        try:
            return day_of(datetime.fromisoformat(text), tz_name)
        except ValueError:
            return None
    return None


def fire_moment(
    step: WaitUntilDateStep, value: object, window: SendingWindow | None, tz_name: str | None
) -> datetime | None:
    """When the wait fires (UTC), or None when ``value`` is no date."""
    try:
        if step.offset % _DAY and isinstance(value, datetime) and value.tzinfo:
            return (value + step.offset).astimezone(UTC)
        day = day_of(value, tz_name)
        if day is None:
            return None
        local = datetime.combine(day + step.offset, time_of_day(step, window), zone(tz_name))
        return local.astimezone(UTC)
    except OverflowError:
        return None


def on_arrival(
    step: WaitUntilDateStep,
    value: object,
    arrival: datetime,
    window: SendingWindow | None,
    contact_zone: str | None,
) -> Arrival:
    """What the step does for an enrollment that reaches it at ``arrival``.

    Passed means the moment is earlier than the arrival, except on the fire day itself (in
    the zone): an arrival after ``at`` on that day goes on at once. An exact moment (an
    offset in hours from a starts_at) has no such day. No date follows ``if_past`` too."""
    name = zone_name(window, contact_zone)
    fire = fire_moment(step, value, window, name)
    if fire is None:
        what = "is empty" if value is None or value == "" else f"{value!r} is not a date"
        return Arrival(step.if_past, None, f"no date: {step.date} {what}"[:200])
    if fire >= arrival:
        return Arrival("wait" if fire > arrival else "go", fire)
    tz = zone(name)
    if not step.offset % _DAY and fire.astimezone(tz).date() == arrival.astimezone(tz).date():
        return Arrival("go", fire)
    local = fire.astimezone(tz)
    return Arrival(
        step.if_past, fire, f"{step.date}: {local:%Y-%m-%d %H:%M} {tz.key} had passed on arrival"
    )
