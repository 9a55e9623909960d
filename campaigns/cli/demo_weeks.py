"""The demo's simulated weeks: the shipped playbooks run hour by hour on a fake clock while
synthetic recipients act on what they get, so that the report and the dashboard have
something to show (rates, NPS, the bandit leaning, send-time counts, a holdout lift).

Nothing here is a second engine: each simulated hour is one :meth:`Engine.tick` of the
real engine on the real database. What the recipients do goes through the real recording
path: every open, click, answer and unsubscribe is a request to the web app's tracking URLs
(signed by the same tokens as the emails in the outbox, with the user agents and addresses
people and machines send), appended to a hit log and written by the flusher's code
(:func:`campaigns.tracking.hits.write_hits`), classified human or machine as any hit is;
bounces are the relay's notices (:func:`campaigns.tracking.bounces.store_notices`); product
events (``usage_dropped``, ``login``, ``first_report_created``) are recorded as the events API
records them. New tech-touch customers sign up as the weeks go (a CRM import each hour that
brings some).

The recipients' habits differ by tier and persona; one welcome variant (``video``) is clearly
better than the other, and messages sent in the recipient's morning do better than the
afternoon's, so the tuner and the send-time counts have something to find. Apple Mail
Privacy Protection fetches the pixel of a third of the addresses on delivery, and a link
scanner at some companies follows every link within the second: the classifier marks those
as machine, and the rates leave them out. All of it is seeded: the same run gives the same
numbers.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import defaults
from campaigns.clock import Clock
from campaigns.insight import sendtime, tuning
from campaigns.services import Services
from campaigns.store import consent
from campaigns.store.enums import Channel, ConsentBasis, EventKind, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, JourneyVersion, Message
from campaigns.store.models import Journey as JourneyRow
from campaigns.tracking.bounces import Notice, store_notices
from campaigns.tracking.hits import Hit, write_hits

HOUR = timedelta(hours=1)

PASS = timedelta(hours=2)
"""Simulated time between two scheduler passes: sending windows and send-time counts still
see most hours of the day, in half the passes of one an hour."""

HUMAN_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
)
"""People: browsers and mail clients (the classifier's rule 10)."""

GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
"""Gmail fetches images when the email is opened: a person's open."""

MPP_AGENT = "Mozilla/5.0"
"""What Apple Mail Privacy Protection's fetcher sends, from Apple's 17.0.0.0/8, on delivery."""

SCANNER_AGENT = "Mozilla/5.0 (compatible; Barracuda Sentinel URL check)"
"""A mail security gateway that follows every link of a message as it arrives."""

OPEN = {"high_touch": 0.62, "low_touch": 0.5, "tech_touch": 0.4}
"""Share of the emails a person opens, by tier."""

CLICK = {"high_touch": 0.32, "low_touch": 0.26, "tech_touch": 0.22}
"""Share of the opened emails whose link a person follows, by tier."""

PERSONA = {
    "admin": 1.25,
    "technical": 1.15,
    "champion": 1.2,
    "user": 1.0,
    "executive": 0.7,
    "billing": 0.8,
}
"""How much more (or less) each role responds than its tier's rates."""

VARIANT = {"video": 2.2, "short": 0.55}
"""The welcome email's variants: the video tour draws four times the clicks of the short one."""

ANSWER = 0.55
"""Share of the opened surveys answered and of the opened invitations answered (RSVP)."""

UNSUBSCRIBE = 0.012
"""Share of the opened emails after which a person unsubscribes."""

BOUNCING = 0.02
"""Share of the addresses that bounce hard (mailbox gone)."""

MPP = 0.3
"""Share of the addresses read in Apple Mail with Privacy Protection on."""

SCANNED = 0.15
"""Share of the accounts whose mail passes a link scanner."""

TUNING_REFRESH = timedelta(days=1).total_seconds()
"""Simulated seconds the tuner and the send-time ranking reuse their counts."""

DROPS = 0.35
"""Share of the tech-touch accounts whose usage drops once during the weeks."""


def hour_factor(local_hour: int) -> float:
    """Mornings draw more responses than afternoons: what send-time learning can find."""
    if 8 <= local_hour < 11:
        return 1.5
    if 11 <= local_hour < 15:
        return 1.0
    return 0.6


def _share(key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same address is an MPP reader every run."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


@dataclass(order=True)
class _Due:
    at: datetime
    seq: int
    action: Callable[[], None] = field(compare=False)


class BufferedHitLog:
    """A hit log that keeps hits until :meth:`flush` writes them in one transaction with the
    flusher's code, as the Redis log's flusher does with a batch."""

    def __init__(self, sessions: sessionmaker[Session], now: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.now = now
        self.hits: list[tuple[str, Hit]] = []
        self.written = 0
        self._counter = 0

    def record(self, hit: Hit) -> None:
        self._counter += 1
        self.hits.append((f"demo-{self._counter}", hit))

    def flush(self) -> None:
        if not self.hits:
            return
        with self.sessions() as session, session.begin():
            result = write_hits(session, self.hits, self.now())
        self.written += result.written
        self.hits = []


@dataclass
class Arrival:
    """A new customer signing up at ``at``: its sample account, imported then."""

    at: datetime
    account: Any  # campaigns.imports.samples.SampleAccount


@dataclass
class WeeksResult:
    start: datetime
    end: datetime
    ticks: int = 0
    advanced: int = 0
    arrivals: int = 0
    hits: int = 0
    events: int = 0
    bounces: int = 0


class DemoWeeks:
    """The simulated weeks from ``start`` to ``end`` on ``services`` (whose clock is a
    :class:`~campaigns.clock.FakeClock` at ``start``)."""

    def __init__(
        self,
        services: Services,
        app: Any,
        hits: BufferedHitLog,
        start: datetime,
        end: datetime,
        *,
        arrivals: list[Arrival],
        import_accounts: Callable[[list[Any]], None],
        seed: int = 7,
    ) -> None:
        self.services = services
        self.engine = services.engine
        self.clock: Any = services.clock
        self.client = app.test_client()
        self.tracking = app.extensions["campaigns.tracking"]
        self.hits = hits
        self.start, self.end = start, end
        self.rng = random.Random(seed)
        self.arrivals = sorted(arrivals, key=lambda a: a.at)
        self.import_accounts = import_accounts
        self.queue: list[_Due] = []
        self._seq = 0
        self.result = WeeksResult(start, end)
        # Simulated time: the tuner and the send-time ranking read their counts again after
        # TUNING_REFRESH of simulated time, not of real time (the weeks take a minute). Each of
        # the tuner's refreshes stores the allocation (the dashboard's chart), and working out
        # each arm's chance of being best takes a fifth of a second.
        now = self.clock.now
        self.engine.tuner = tuning.Tuner(
            random.Random(seed), lambda: now().timestamp(), refresh=TUNING_REFRESH
        )
        self.engine.send_times = sendtime.SendTimes(
            random.Random(seed), lambda: now().timestamp(), refresh=TUNING_REFRESH
        )
        self._last_enrollment = 0
        self._steps: dict[tuple[int, str], dict[str, Any]] = {}
        self._journeys: dict[int, str] = {}
        self._acted: set[tuple[str, int]] = set()
        self._dropped: set[int] = set()

    # ---------------------------------------------------------------- the loop

    def passes(self) -> int:
        return int((self.end - self.start) / PASS)

    def run(self, progress: Callable[[int], None] | None = None) -> WeeksResult:
        """Pass by pass (every :data:`PASS`): sign up the new customers due, run the actions
        due, tick, and react to what the tick sent and to who entered."""
        with self.services.sessions() as session:
            self._last_message = session.scalar(select(Message.id).order_by(Message.id.desc())) or 0
            self._last_enrollment = (
                session.scalar(select(Enrollment.id).order_by(Enrollment.id.desc())) or 0
            )
            self._load_journeys(session)
            drops = session.execute(
                select(Account.id, Account.contract_start).where(Account.tier == "tech_touch")
            ).all()
        for account_id, started in drops:
            self._plan_drop(account_id, started)
        for _ in range(self.passes()):
            self._arrive()
            self._run_due()
            result = self.engine.tick()
            self.result.ticks += 1
            self.result.advanced += result.claimed
            self._react()
            self._run_due()
            self.hits.flush()
            self.clock.advance(PASS)
            if progress is not None:
                progress(1)
        self._run_due()
        self.hits.flush()
        self.result.hits = self.hits.written
        return self.result

    def _later(self, delay: timedelta, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.queue, _Due(self.clock.now() + delay, self._seq, action))

    def _run_due(self) -> None:
        now = self.clock.now()
        while self.queue and self.queue[0].at <= now:
            heapq.heappop(self.queue).action()

    def _load_journeys(self, session: Session) -> None:
        for journey_id, key, definition in session.execute(
            select(JourneyRow.id, JourneyRow.key, JourneyVersion.definition).join(
                JourneyVersion, JourneyVersion.id == JourneyRow.current_version_id
            )
        ):
            self._journeys[journey_id] = key
            for step in definition.get("steps", []):
                if isinstance(step, dict) and "id" in step:
                    self._steps[(journey_id, step["id"])] = step

    # ---------------------------------------------------------------- sign-ups and product events

    def _arrive(self) -> None:
        now = self.clock.now()
        due = []
        while self.arrivals and self.arrivals[0].at <= now:
            due.append(self.arrivals.pop(0).account)
        if not due:
            return
        self.import_accounts(due)
        self.result.arrivals += len(due)
        with self.services.sessions() as session:
            rows = session.execute(
                select(Account.id, Account.contract_start).where(
                    Account.external_id.in_([a.row[0] for a in due])
                )
            ).all()
        for account_id, started in rows:
            self._plan_drop(account_id, started)

    def _plan_drop(self, account_id: int, started: date | None) -> None:
        """Some tech-touch accounts' usage drops once, on a working day at any hour."""
        if self.rng.random() >= DROPS:
            return
        first = self.start
        if started is not None:
            first = max(first, datetime.combine(started, datetime.min.time(), UTC) + timedelta(9))
        if first >= self.end:
            return
        at = first + (self.end - first) * self.rng.random()
        self._seq += 1
        heapq.heappush(
            self.queue,
            _Due(at, self._seq, lambda: self._event("usage_dropped", account_id=account_id)),
        )

    def _event(self, name: str, *, account_id: int | None = None, contact_id: int | None = None):
        with self.services.sessions() as session, session.begin():
            self.engine.record_event(
                session,
                kind=EventKind.CUSTOM,
                name=name,
                account_id=account_id,
                contact_id=contact_id,
            )
        self.result.events += 1

    def _entered(self, session: Session) -> None:
        """New entrants of the journeys with a product goal: some reach it anyway (the held-out
        and global-control ones too), which is what a holdout's lift is measured against."""
        rows = session.execute(
            select(
                Enrollment.id, Enrollment.journey_id, Enrollment.contact_id, Enrollment.account_id
            )
            .where(Enrollment.id > self._last_enrollment)
            .order_by(Enrollment.id)
        ).all()
        for enrollment_id, journey_id, contact_id, account_id in rows:
            self._last_enrollment = max(self._last_enrollment, enrollment_id)
            key = self._journeys.get(journey_id)
            if key == "tech_touch_onboarding" and contact_id and self.rng.random() < 0.12:
                self._later(
                    timedelta(hours=self.rng.randint(48, 24 * 25)),
                    partial(self._event, "first_report_created", contact_id=contact_id),
                )
            elif key == "tech_touch_usage_drop" and account_id and self.rng.random() < 0.2:
                self._later(
                    timedelta(hours=self.rng.randint(24, 24 * 8)),
                    partial(self._event, "login", account_id=account_id),
                )

    def _goal(self, journey: str, contact_id: int, account_id: int | None) -> None:
        """A person who followed a journey's link is likelier to do what it asks."""
        if journey == "tech_touch_onboarding" and ("report", contact_id) not in self._acted:
            self._acted.add(("report", contact_id))
            if self.rng.random() < 0.5:
                self._later(
                    timedelta(hours=self.rng.randint(2, 72)),
                    lambda: self._event("first_report_created", contact_id=contact_id),
                )
        elif journey == "tech_touch_usage_drop" and account_id and account_id not in self._dropped:
            self._dropped.add(account_id)
            if self.rng.random() < 0.6:
                self._later(
                    timedelta(hours=self.rng.randint(1, 48)),
                    lambda: self._event("login", account_id=account_id),
                )

    # ---------------------------------------------------------------- the recipients

    def _react(self) -> None:
        with self.services.sessions() as session:
            self._entered(session)
            rows = session.execute(
                select(Message, Contact, Account.tier)
                .join(Contact, Contact.id == Message.contact_id)
                .outerjoin(Account, Account.id == Contact.account_id)
                .where(
                    # Sent by this pass (the clock stands still during a pass), however long
                    # ago the row was made: a held message is sent when its window opens.
                    Message.sent_at == self.clock.now(),
                    Message.channel == Channel.EMAIL,
                    Message.status == MessageStatus.SENT,
                )
                .order_by(Message.id)
            ).all()
        for message, contact, tier in rows:
            self._recipient(message, contact, tier or "tech_touch")

    def _recipient(self, message: Message, contact: Contact, tier: str) -> None:
        address = contact.email
        if _share(f"bounce:{address}") < BOUNCING:
            self._later(HOUR, lambda: self._bounce(message, address))
            return
        mpp = _share(f"mpp:{address}") < MPP
        scanned = _share(f"scanner:{contact.account_id}") < SCANNED
        if mpp:  # on delivery, whether or not anyone reads it
            self._get(
                self.tracking.tokens.open_url(message.id), MPP_AGENT, f"17.58.{message.id % 250}.7"
            )
        if scanned:
            for link in range(len(message.links or [])):
                self._get(
                    self.tracking.tokens.click_url(message.id, link), SCANNER_AGENT, "198.51.100.9"
                )
        step = self._steps.get((message.journey_id or 0, message.step_id), {})
        zone = contact.time_zone or "UTC"
        try:
            local = (
                (message.sent_at or self.clock.now()).replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
            )
        except (KeyError, ValueError):
            local = self.clock.now()
        factor = hour_factor(local.hour) * PERSONA.get(contact.role or "", 1.0)
        if self.rng.random() >= min(0.95, OPEN[tier] * factor):
            return
        agent = self.rng.choice(HUMAN_AGENTS)
        ip = f"203.0.113.{message.id % 250}"
        opened_after = timedelta(minutes=self.rng.randint(60, 60 * 20))
        if not mpp:
            open_agent = (
                GMAIL_PROXY
                if address.endswith("example.com") and self.rng.random() < 0.3
                else agent
            )
            self._later(
                opened_after,
                partial(self._open, message.id, open_agent, ip),
            )
        acted = opened_after + timedelta(minutes=self.rng.randint(1, 50))
        journey = self._journeys.get(message.journey_id or 0, "")
        answer: int | str | None = None
        kind = step.get("type")
        if kind == "survey" and self.rng.random() < ANSWER * factor:
            scale = (step.get("blocks") or {}).get("survey", {}).get("scale", "nps")
            answer = self._score(scale, tier, contact)
        elif kind == "invite" and self.rng.random() < ANSWER * factor:
            answer = "yes" if self.rng.random() < 0.7 else "no"
        if answer is not None:
            self._later(acted, partial(self._answer, message.id, answer, agent, ip))
        links = len(message.links or [])
        rate = CLICK[tier] * factor * VARIANT.get(message.variant or "", 1.0)
        if links and self.rng.random() < min(0.95, rate):
            link = self.rng.randrange(links)
            self._later(
                acted,
                lambda: self._click(
                    message.id, link, agent, ip, journey, contact.id, contact.account_id
                ),
            )
        if self.rng.random() < UNSUBSCRIBE * (2 if tier == "tech_touch" else 1):
            self._later(acted + HOUR, lambda: self._unsubscribe(message.id, agent, ip))

    def _score(self, scale: str, tier: str, contact: Contact) -> int:
        """Tech touch is the most critical, high touch the warmest; admins like it best."""
        mood = {"high_touch": 0.6, "low_touch": 0.45, "tech_touch": 0.3}[tier]
        if contact.role in ("admin", "technical", "champion"):
            mood += 0.15
        draw = self.rng.random()
        if scale == "nps":
            if draw < mood:
                return self.rng.choice((9, 10))
            if draw < mood + 0.3:
                return self.rng.choice((7, 8))
            return self.rng.randint(0, 6)
        return 5 if draw < mood else 4 if draw < mood + 0.3 else self.rng.randint(1, 3)

    # ---------------------------------------------------------------- the requests

    def _get(self, url: str, agent: str, ip: str, method: str = "GET") -> int:
        response = self.client.open(
            url, method=method, headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": ip}
        )
        response.close()
        return response.status_code

    def _open(self, message: int, agent: str, ip: str) -> None:
        self._get(self.tracking.tokens.open_url(message), agent, ip)

    def _click(
        self,
        message: int,
        link: int,
        agent: str,
        ip: str,
        journey: str,
        contact: int,
        account: int | None,
    ) -> None:
        if self._get(self.tracking.tokens.click_url(message, link), agent, ip) == 302:
            self._goal(journey, contact, account)

    def _answer(self, message: int, value: int | str, agent: str, ip: str) -> None:
        url = self.tracking.tokens.answer_url(message, value)
        self._get(url, agent, ip)  # the confirm page
        self.client.post(
            url,
            data={"csrf": self.tracking.form_token(message, "answer")},
            headers={"User-Agent": agent},
            environ_base={"REMOTE_ADDR": ip},
        ).close()

    def _unsubscribe(self, message: int, agent: str, ip: str) -> None:
        self.client.post(
            self.tracking.tokens.unsubscribe_url(message),
            data={"List-Unsubscribe": "One-Click"},
            headers={"User-Agent": agent},
            environ_base={"REMOTE_ADDR": ip},
        ).close()

    def _bounce(self, message: Message, address: str) -> None:
        if not message.message_id:
            return
        notice = Notice(
            index=0,
            kind=EventKind.BOUNCE,
            email=address,
            hard=True,
            message_ids=(message.message_id,),
            diagnostic="550 5.1.1 mailbox unavailable",
            source="webhook",
            key=f"demo-bounce:{message.id}",
        )
        with self.services.sessions() as session, session.begin():
            store_notices(session, [notice], self.clock.now())
        self.result.bounces += 1


def arrivals_between(
    start: datetime, end: datetime, first_number: int, per_week: int, seed: int = 7
) -> Iterator[Arrival]:
    """``per_week`` new tech-touch customers a week from ``start`` to ``end``, numbered from
    ``first_number``, each signing up at a random hour of its day."""
    from campaigns.imports.samples import make_arrival

    rng = random.Random(f"{seed}:arrivals")
    count = int((end - start) / timedelta(weeks=1) * per_week)
    for i in range(count):
        at = start + (end - start) * ((i + rng.random()) / max(count, 1))
        yield Arrival(at, make_arrival(first_number + i, at.date(), seed))


def import_samples(
    sessions: sessionmaker[Session], currencies: Any, clock: Clock
) -> Callable[[list[Any]], None]:
    """A CRM import of some sample accounts and their contacts (what a sync each hour does),
    who opted in on the way (:func:`record_sample_consent`)."""
    from campaigns.imports.importer import import_csv
    from campaigns.imports.samples import write_arrivals

    def run(accounts: list[Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="campaigns-demo-") as folder:
            accounts_csv, contacts_csv = write_arrivals(Path(folder), accounts)
            import_csv("accounts", accounts_csv, sessions, currencies=currencies)
            import_csv("contacts", contacts_csv, sessions, currencies=currencies)
        record_sample_consent(sessions, clock.now())

    return run


def record_sample_consent(sessions: sessionmaker[Session], at: datetime) -> int:
    """Give the subscribed sample contacts that have no consent basis an opt-in (as if they
    had ticked the box on a sign-up form), recorded in their consent history, so that the
    demo's marketing mail reaches them under the default rules; the number recorded."""
    with sessions() as session, session.begin():
        contacts = session.scalars(
            select(Contact).where(Contact.consent_basis.is_(None), Contact.subscribed)
        ).all()
        for contact in contacts:
            consent.record(
                session,
                contact,
                ConsentBasis.OPT_IN,
                at=at,
                source="demo:sign-up form",
                wording=defaults.CONSENT_WORDING_VERSION,
                actor="cli:demo",
            )
    return len(contacts)
