"""Hits: what a recipient did on a tracking URL, and how it becomes an event.

A tracking request (open pixel, click, answer, unsubscribe) only verifies its token and
appends a :class:`Hit` to a :class:`HitLog`; it never opens a database transaction (the logs
are in :mod:`campaigns.tracking.hitlog`). :func:`write_hits` is what a log's flusher runs
on a batch: it classifies the hits (human, machine or unknown; see
:mod:`campaigns.tracking.classify`), writes them as events in the caller's transaction,
counts them for the stats and wakes the journeys waiting on them.

Nothing counts twice: every event written from a hit carries
``dedupe_key = "hit:<hit id>"`` (unique in the database), so writing a batch again whose
transaction committed just before a crash inserts nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.insight import hitcounts, stats
from campaigns.store import consent, outbox
from campaigns.store.enums import Channel, Classification, EventKind, OutboundType
from campaigns.store.models import Contact, Event, Message
from campaigns.tracking.classify import HitView, Verdict, classify_hits
from campaigns.tracking.events import wake

LOOKBACK = timedelta(minutes=2)
"""Earlier hits on the same message considered when classifying new ones (bursts and trap
clicks happen within seconds)."""

KINDS = ("open", "click", "trap", "answer", "unsubscribe", "comment")

_EVENT_KIND = {
    "open": EventKind.OPEN,
    "click": EventKind.CLICK,
    "trap": EventKind.CLICK,
    "unsubscribe": EventKind.UNSUBSCRIBE,
    "comment": EventKind.COMMENT,
}


@dataclass(frozen=True)
class Hit:
    """One request on a tracking URL, as the request path saw it."""

    kind: str  # one of KINDS
    message: int  # Message row id, from the verified token
    at: float  # unix time the request arrived
    method: str = "GET"
    user_agent: str = ""
    ip: str = ""
    link: int | None = None  # clicks: index into the message's links
    value: str | None = None  # answers: the score or yes/no; comments: the text

    def fields(self) -> dict[str, str]:
        """The stream entry: short keys, strings only."""
        entry = {
            "k": self.kind,
            "m": str(self.message),
            "t": f"{self.at:.3f}",
            "h": self.method,
            "u": self.user_agent[:512],
            "i": self.ip[:64],
        }
        if self.link is not None:
            entry["l"] = str(self.link)
        if self.value is not None:
            entry["v"] = self.value
        return entry

    @classmethod
    def from_fields(cls, entry: dict[bytes, bytes] | dict[str, str]) -> Hit | None:
        """The hit in a stream entry; None for an entry this version cannot read."""
        data = {
            (k.decode() if isinstance(k, bytes) else k): (
                v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            )
            for k, v in entry.items()
        }
        try:
            kind = data["k"]
            if kind not in KINDS:
                return None
            return cls(
                kind=kind,
                message=int(data["m"]),
                at=float(data["t"]),
                method=data.get("h", "GET"),
                user_agent=data.get("u", ""),
                ip=data.get("i", ""),
                link=int(data["l"]) if "l" in data else None,
                value=data.get("v"),
            )
        except (KeyError, ValueError):
            return None


class HitLog(Protocol):
    """Where the request path puts a hit: it must be stored (in Redis or the database)
    before the response goes out, and written as an event by :func:`write_hits` later or
    at once. The web app depends on this, not on a log's class."""

    def record(self, hit: Hit) -> None: ...


@dataclass
class FlushResult:
    read: int = 0
    written: int = 0
    duplicates: int = 0
    dropped: int = 0  # unreadable entries, or hits on messages that no longer exist
    reclassified: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: FlushResult) -> None:
        self.read += other.read
        self.written += other.written
        self.duplicates += other.duplicates
        self.dropped += other.dropped
        self.reclassified += other.reclassified
        for key, count in other.by_class.items():
            self.by_class[key] += count


# ---------------------------------------------------------------------------- writing


def write_hits(session: Session, hits: Sequence[tuple[str, Hit]], now: datetime) -> FlushResult:
    """Classify ``hits`` (each with its unique id) and store them as events; the caller
    commits. Earlier hits on the same messages are classified again with the new ones."""
    result = FlushResult(read=len(hits))
    if not hits:
        return result
    message_ids = sorted({hit.message for _, hit in hits})
    # Mail to account owners is not tracked, and its hits (from notices sent before it was
    # its own channel) count for no one: an unsubscribe there must not unsubscribe the customer.
    messages = {
        m.id: m
        for m in session.scalars(
            select(Message).where(Message.id.in_(message_ids), Message.channel != Channel.OWNER)
        )
    }
    account_of = (
        dict(
            session.execute(
                select(Contact.id, Contact.account_id).where(
                    Contact.id.in_({m.contact_id for m in messages.values()})
                )
            ).all()
        )
        if messages
        else {}
    )
    earliest = min(datetime.fromtimestamp(hit.at, UTC) for _, hit in hits) - LOOKBACK
    prior = _prior_hits(session, hits, list(messages), earliest) if messages else {}
    fresh: dict[int, list[tuple[str, Hit]]] = defaultdict(list)
    for hit_id, hit in hits:
        if hit.message not in messages or (
            hit.kind == "click" and not _valid_link(messages[hit.message], hit.link)
        ):
            result.dropped += 1
            continue
        fresh[hit.message].append((hit_id, hit))
    rows: list[dict[str, Any]] = []
    reclassified: list[tuple[PriorHit, str]] = []
    changed: list[dict[str, Any]] = []
    woken: set[int] = set()
    unsubscribed: set[int] = set()
    for message_id, new in fresh.items():
        message = messages[message_id]
        old = prior.get(message_id, [])
        views = [_view_of_event(e) for e in old] + [_view_of_hit(h) for _, h in new]
        verdicts = classify_hits(views, sent_at=message.sent_at)
        for event, verdict in zip(old, verdicts[: len(old)], strict=True):
            if (event.classification, event.reason) != (
                verdict.classification,
                verdict.reason[:255],
            ):
                if event.classification != verdict.classification:
                    reclassified.append((event, event.classification))
                event.classification, event.reason = verdict.classification, verdict.reason[:255]
                changed.append(
                    {"id": event.id, "classification": event.classification, "reason": event.reason}
                )
                result.reclassified += 1
        for (hit_id, hit), verdict in zip(new, verdicts[len(old) :], strict=True):
            contact_id = message.contact_id
            account = account_of.get(contact_id) if contact_id is not None else None
            rows.append(_event_row(hit_id, hit, verdict, message, account, now))
            if contact_id is None:
                continue  # mail about no one contact (to an owner) carries no tracking
            if hit.kind == "unsubscribe":
                # Always honoured: the one-click POST (RFC 8058) often comes from the mailbox
                # provider's servers on the person's behalf, and scanners do not POST.
                unsubscribed.add(contact_id)
            if verdict.classification != Classification.MACHINE:
                woken.add(contact_id)
    if changed:
        session.execute(update(Event), changed)  # ORM bulk UPDATE by primary key: one executemany
    inserted: list[dict[str, Any]] = []
    if rows:
        keys = _insert_events(session, rows)
        inserted = [row for row in rows if row["dedupe_key"] in keys]
        result.written += len(inserted)
        result.duplicates += len(rows) - len(inserted)
        for row in inserted:
            result.by_class[row["classification"]] += 1
    if inserted:
        _announce(session, inserted, messages)
    if inserted or reclassified:
        stats.add(session, hitcounts.count_hits(session, inserted, reclassified, messages, now))
    if unsubscribed:
        _withdraw(session, inserted)
        session.execute(
            update(Contact).where(Contact.id.in_(unsubscribed)).values(subscribed=False)
        )
    if woken:
        wake(session, now, kind=EventKind.CLICK, contact_ids=sorted(woken))
    return result


_OUTBOUND = {
    EventKind.OPEN: OutboundType.MESSAGE_OPENED,
    EventKind.CLICK: OutboundType.MESSAGE_CLICKED,
    EventKind.ANSWER: OutboundType.MESSAGE_ANSWERED,
    EventKind.RSVP: OutboundType.MESSAGE_ANSWERED,
    EventKind.UNSUBSCRIBE: OutboundType.CONTACT_UNSUBSCRIBED,
}


def _announce(session: Session, rows: list[dict[str, Any]], messages: dict[int, Message]) -> None:
    """The outgoing events of the hits just stored, in the same transaction. Opens and clicks
    carry their ``classification`` as it is now (a later burst may reclassify them)."""
    if outbox.outbox_of(session) is None:
        return
    items = []
    for row in rows:
        type_ = _OUTBOUND.get(row["kind"])
        if type_ is None:
            continue
        data: dict[str, Any] = {}
        if type_ in (OutboundType.MESSAGE_OPENED, OutboundType.MESSAGE_CLICKED):
            data["classification"] = row["classification"]
            data["reason"] = row["reason"]
        if type_ == OutboundType.MESSAGE_CLICKED:
            message_links = messages[row["message_id"]].links or []
            link = row["data"].get("link")
            data["link"] = link
            if isinstance(link, int) and 0 <= link < len(message_links):
                data["url"] = message_links[link]
            if row["data"].get("trap"):
                data["trap"] = True
        if type_ == OutboundType.MESSAGE_ANSWERED:
            data["kind"] = row["kind"]  # answer (a score) or rsvp (yes/no)
            data["value"] = row["value"]
        if type_ == OutboundType.CONTACT_UNSUBSCRIBED:
            one_click = row["data"].get("method") == "POST"
            data["source"] = "one-click" if one_click else "link"
        items.append(
            outbox.Item(
                type_,
                row["occurred_at"],
                contact_id=row["contact_id"],
                account_id=row["account_id"],
                journey_id=row["journey_id"],
                message_id=row["message_id"],
                enrollment_id=row["enrollment_id"],
                step=row["step_id"],
                data=data,
                machine=row["classification"] == Classification.MACHINE,
            )
        )
    outbox.emit_many(session, items)


def _withdraw(session: Session, inserted: Sequence[dict[str, Any]]) -> None:
    """Record the withdrawal of consent of each contact who unsubscribed in ``inserted`` (new
    events only: a repeated hit records nothing) and still had a basis or was subscribed:
    unsubscribing refuses all marketing mail (特定電子メール法 §3: no mail after a refusal)."""
    first: dict[int, dict[str, Any]] = {}
    for row in inserted:
        if row["kind"] == EventKind.UNSUBSCRIBE and row["contact_id"] is not None:
            first.setdefault(row["contact_id"], row)
    if not first:
        return
    contacts = session.scalars(select(Contact).where(Contact.id.in_(first))).all()
    for contact in contacts:
        if contact.consent_basis is None and not contact.subscribed:
            continue  # nothing to withdraw: unsubscribed already, with no basis
        row = first[contact.id]
        one_click = row["data"].get("method") == "POST" and row["reason"].startswith("one-click")
        consent.record(
            session,
            contact,
            None,
            at=row["occurred_at"],
            source=UNSUBSCRIBE_SOURCE,
            detail={"message_id": row["message_id"], "one_click": one_click},
        )


UNSUBSCRIBE_SOURCE = "unsubscribe"
"""The source of a withdrawal recorded by an unsubscribe link (page or RFC 8058 one-click)."""


def _valid_link(message: Message, link: int | None) -> bool:
    return link is not None and 0 <= link < len(message.links or [])


def _view_of_hit(hit: Hit) -> HitView:
    return HitView(
        kind="answer" if hit.kind == "comment" else hit.kind,
        at=datetime.fromtimestamp(hit.at, UTC),
        method=hit.method,
        user_agent=hit.user_agent,
        ip=hit.ip,
        link=hit.link,
    )


@dataclass
class PriorHit:
    """An earlier hit of a message, as stored: what classification needs, and what may change."""

    id: int
    message_id: int
    kind: str
    occurred_at: datetime
    user_agent: str
    data: dict[str, Any]
    classification: str
    reason: str | None


def _prior_hits(
    session: Session, hits: Sequence[tuple[str, Hit]], message_ids: list[int], earliest: datetime
) -> dict[int, list[PriorHit]]:
    """The stored hits of these messages within the lookback, read as plain rows. Opens are
    needed only for messages with new clicks (a click burst or a trap may turn them into a
    machine's); new opens are judged against earlier clicks alone."""
    clicked = sorted(
        {hit.message for _, hit in hits if hit.kind in ("click", "trap")} & set(message_ids)
    )
    kinds = Event.kind == EventKind.CLICK
    if clicked:
        kinds = or_(kinds, and_(Event.kind == EventKind.OPEN, Event.message_id.in_(clicked)))
    columns = (
        Event.id,
        Event.message_id,
        Event.kind,
        Event.occurred_at,
        Event.user_agent,
        Event.data,
        Event.classification,
        Event.reason,
    )
    prior: dict[int, list[PriorHit]] = defaultdict(list)
    query = (
        select(*columns)
        .where(
            Event.message_id.in_(message_ids),
            kinds,
            Event.occurred_at >= earliest,
            Event.dedupe_key.is_not(None),
        )
        .order_by(Event.id)
    )
    for row in session.execute(query):
        prior[row.message_id].append(
            PriorHit(
                row.id,
                row.message_id,
                row.kind,
                row.occurred_at,
                row.user_agent or "",
                row.data or {},
                row.classification,
                row.reason,
            )
        )
    return prior


def _view_of_event(event: PriorHit) -> HitView:
    data = event.data
    kind = "trap" if data.get("trap") else event.kind
    return HitView(
        kind=str(kind),
        at=event.occurred_at,
        method=str(data.get("method", "GET")),
        user_agent=event.user_agent,
        ip=str(data.get("ip", "")),
        link=data.get("link"),
    )


def _event_row(
    hit_id: str, hit: Hit, verdict: Verdict, message: Message, account_id: int | None, now: datetime
) -> dict[str, Any]:
    kind: str = _EVENT_KIND.get(hit.kind, EventKind.ANSWER)
    value = hit.value
    if hit.kind == "answer":
        kind = EventKind.RSVP if value in ("yes", "no") else EventKind.ANSWER
    data: dict[str, Any] = {"method": hit.method, "ip": _network(hit.ip)}
    if hit.link is not None:
        data["link"] = hit.link
    if hit.kind == "trap":
        data["trap"] = True
    return {
        "kind": kind,
        "name": None,
        "message_id": message.id,
        "contact_id": message.contact_id,
        "account_id": account_id,
        "enrollment_id": message.enrollment_id,
        "journey_id": message.journey_id,
        "step_id": message.step_id,
        "value": value[:2048] if value else None,
        "classification": verdict.classification,
        "reason": verdict.reason[:255],
        "user_agent": hit.user_agent[:512] or None,
        "dedupe_key": f"hit:{hit_id}",
        "data": data,
        "occurred_at": datetime.fromtimestamp(hit.at, UTC),
        "recorded_at": now,
    }


def _network(ip: str) -> str:
    """The requester's network, not the address: /24 for IPv4, /48 for IPv6 (enough to tell a
    proxy's or a scanner's network, without keeping a person's address)."""
    import ipaddress

    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert, skipping rows whose dedupe key is already stored; the keys that went in."""
    if session.get_bind().dialect.name == "postgresql":
        return _insert_events_unnest(session, rows)
    statement = (
        sqlite_insert(Event)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Event.dedupe_key)
    )
    keys: set[str] = set()
    for start in range(0, len(rows), 1_000):
        keys.update(
            k for k in session.execute(statement, rows[start : start + 1_000]).scalars() if k
        )
    return keys


_UNNEST_COLUMNS = (
    ("kind", "varchar"),
    ("name", "varchar"),
    ("message_id", "bigint"),
    ("contact_id", "bigint"),
    ("account_id", "bigint"),
    ("enrollment_id", "bigint"),
    ("journey_id", "bigint"),
    ("step_id", "varchar"),
    ("value", "varchar"),
    ("classification", "varchar"),
    ("reason", "varchar"),
    ("user_agent", "varchar"),
    ("dedupe_key", "varchar"),
    ("data", "jsonb"),
    ("occurred_at", "timestamptz"),
    ("recorded_at", "timestamptz"),
)
_UNNEST_INSERT = text(
    f"INSERT INTO events ({', '.join(c for c, _ in _UNNEST_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in _UNNEST_COLUMNS)}) "
    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key"
)
"""PostgreSQL: a whole batch as one array per column. One short statement, whatever the batch
size: the server plans it once and the driver does not rewrite a statement of thousands of
rows (which cost more than the insert itself, as ``INSERT ... VALUES`` for each batch)."""


def _insert_events_unnest(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    params: dict[str, list[Any]] = {column: [] for column, _ in _UNNEST_COLUMNS}
    for row in rows:
        for column, kind in _UNNEST_COLUMNS:
            value = row[column]
            if kind == "jsonb":
                value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            elif kind == "timestamptz" and value is not None:
                value = value.astimezone(UTC)
            params[column].append(value)
    return {k for k in session.execute(_UNNEST_INSERT, params).scalars() if k}
