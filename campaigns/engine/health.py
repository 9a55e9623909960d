"""Health scores: every account's scorecard worked out for a day, set-based.

:func:`compute` scores all accounts for one day in a handful of statements, whatever their
number, on SQLite and PostgreSQL alike:

1. one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` into ``health_scores`` (a rerun the
   same day replaces the day's rows). Its ``SELECT`` reads each kind of measure once, with one
   ``GROUP BY account_id`` per kind (usage metrics, survey answers, customer email, tasks,
   contacts; account fields need none), every measure of that kind a column of it; then maps
   each value to 0-100 (``linear`` or ``bands``), leaves out the measures without data,
   re-normalises the weights of the rest, rounds, bands, and writes each measure's value,
   score, weight and contribution as the row's ``measures`` JSON: all in SQL;
2. one ``UPDATE`` of the accounts' ``health_score``, ``health_band``, ``health_change_7d``,
   ``health_change_30d`` and ``health_scored_on`` (a backfill of an older day never
   overwrites a newer one; an account whose measures all lack data keeps what it has);
3. one ``INSERT ... SELECT`` of the band changes against the previous scored day, as product
   events of the account (``kind=custom``): ``health_band_changed`` for every change,
   ``health_dropped`` when the band got worse, ``health_red`` / ``health_yellow`` /
   ``health_green`` for the band entered; ``dedupe_key`` ``health:<account>:<day>:<name>``, so
   a rerun records nothing twice. Journeys enter on them (``entry: {trigger: event, event:
   health_red}``) and running ones are woken, as for any product event.

The schedule (:func:`on_tick`): the first scheduler pass of each day (UTC) scores that day;
the later passes of the day do nothing. A window of N days is the N days that end with the
scored day (usage rows by their ``day``; answers and emails by their UTC time).
"""

from __future__ import annotations

import json
import logging
import time as time_
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    Float,
    Integer,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import column as column_clause
from sqlalchemy.sql.expression import table as table_clause
from sqlalchemy.sql.selectable import CTE, FromClause

from campaigns.engine.audience import RuleCompiler
from campaigns.exceptions import JourneyError
from campaigns.journeys.rules import Column as RuleColumn
from campaigns.journeys.scorecards import (
    Bands,
    HealthBands,
    Linear,
    Measure,
    Scorecard,
    ScorecardSet,
)
from campaigns.journeys.segments import SegmentSet
from campaigns.store.enums import (
    Channel,
    Classification,
    EnrollmentState,
    EventKind,
    TaskStatus,
)
from campaigns.store.models import (
    Account,
    Contact,
    Enrollment,
    Event,
    HealthScore,
    JourneyVersion,
    Message,
    Task,
    UsageMetric,
    UTCDateTime,
)

log = logging.getLogger("campaigns.engine.health")

BAND_ORDER = {"red": 0, "yellow": 1, "green": 2}
EVENT_CHANGED = "health_band_changed"
EVENT_DROPPED = "health_dropped"
ANSWER_VALUES = tuple(str(n) for n in range(11))
"""The answers a survey step can record (NPS 0-10, CSAT 1-5): any other value is not read."""


@dataclass
class HealthRun:
    """What one day's scoring did."""

    day: date
    scored: int = 0  # health_scores rows written (accounts with a scorecard)
    updated: int = 0  # accounts whose health fields were set
    bands: dict[tuple[str | None, str | None], int] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)  # band-change events recorded
    previous_day: date | None = None  # the day the bands were compared with
    seconds: dict[str, float] = field(default_factory=dict)  # per statement, for benchmarks

    @property
    def changed(self) -> int:
        return self.events[EVENT_CHANGED]

    @property
    def dropped(self) -> int:
        return self.events[EVENT_DROPPED]


def on_tick(
    sessions: sessionmaker[Session],
    scorecards: Callable[[], ScorecardSet | None] | None,
    segset: SegmentSet,
    now: datetime,
) -> HealthRun | None:
    """The scheduler's part: score today (UTC) unless a pass did it already. A scorecards
    file with problems is logged and skipped (the tick goes on); None when nothing ran."""
    if scorecards is None:
        return None
    day = now.astimezone(UTC).date()
    with sessions() as session:
        done = session.scalar(select(HealthScore.day).where(HealthScore.day == day).limit(1))
    if done is not None:
        return None
    try:
        cards = scorecards()
    except JourneyError as exc:
        log.error("health scores not computed: the scorecards file has problems: %s", exc)
        return None
    if cards is None:
        return None
    with sessions() as session, session.begin():
        return compute(session, cards, segset, day, now)


def compute(
    session: Session, cards: ScorecardSet, segset: SegmentSet, day: date, now: datetime
) -> HealthRun:
    """Score every account with a scorecard for ``day`` (see the module's docstring); the
    caller commits. ``now`` is when: it stamps the rows, and tasks are overdue against it
    (or against the end of ``day``, for a day in the past)."""
    run = HealthRun(day)
    if not cards.scorecards:
        return run
    spell = _Spell(session, cards, segset, day, now)
    if spell.postgres:
        # The statements are wide (a CASE per measure and scorecard): PostgreSQL's JIT spends
        # seconds compiling them, more than running them takes. For this transaction only.
        # And the GROUP BYs over millions of rows sort in memory rather than on disk.
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '64MB'"))
    clock = time_.perf_counter
    started = clock()
    spell.upsert_scores()
    run.seconds["scores"], started = clock() - started, clock()
    run.updated = spell.update_accounts()
    run.seconds["accounts"], started = clock() - started, clock()
    run.previous_day, run.events = spell.record_changes()
    run.seconds["band changes"], started = clock() - started, clock()
    run.bands = spell.band_counts()
    run.seconds["counts"] = clock() - started
    run.scored = sum(run.bands.values())
    return run


def survey_steps(session: Session) -> dict[str, list[tuple[int, str]]]:
    """The survey steps of every stored journey version by scale: ``{"nps": [(journey id,
    step id), ...], "csat": [...]}`` (a few rows per journey, read in Python)."""
    found: dict[str, set[tuple[int, str]]] = {"nps": set(), "csat": set()}
    for journey_id, definition in session.execute(
        select(JourneyVersion.journey_id, JourneyVersion.definition)
    ):
        for step in (definition or {}).get("steps", []):
            if not isinstance(step, dict):
                continue
            blocks = step.get("blocks") or {}
            survey = blocks.get("survey") if isinstance(blocks, dict) else None
            if isinstance(survey, dict) and survey.get("scale") in found:
                found[survey["scale"]].add((journey_id, str(step.get("id"))))
    return {scale: sorted(steps) for scale, steps in found.items()}


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


# ---------------------------------------------------------------------------- the SQL


def _num(value: float) -> ColumnElement[float]:
    """A number written into the statement (a float, so that SQLite never divides integers)."""
    return literal_column(repr(float(value)), Float())


def _text(value: str) -> ColumnElement[str]:
    """A constant text written into the statement (names checked by the scorecard reader)."""
    return literal_column("'" + value.replace("'", "''") + "'", String())


class _Spell:
    """The statements of one day's scoring, spelled for the session's database."""

    def __init__(
        self, session: Session, cards: ScorecardSet, segset: SegmentSet, day: date, now: datetime
    ) -> None:
        self.session = session
        self.cards = cards
        self.day = day
        self.now = now
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.compiler = RuleCompiler(segset, day)
        self.as_of = min(now, day_start(day + timedelta(days=1)))
        # Every measure of every scorecard, numbered: column v<i> holds its value, s<i> its score.
        self.measures: list[tuple[Scorecard, Measure]] = [
            (card, m) for card in cards.scorecards for m in card.measures
        ]
        self._scoped: FromClause | None = None

    # ------------------------------------------------------------------ accounts

    def scoped(self) -> FromClause:
        """Each account's id, tier (by the tier rules on the day) and scorecard."""
        if self._scoped is None:
            tier = self.compiler.tier_case()
            arms = {t: c.name for c in self.cards.scorecards for t in c.tiers}
            default = self.cards.default
            other = _text(default.name) if default is not None else null()
            card: ColumnElement[Any] = (
                case({t: _text(n) for t, n in arms.items()}, value=tier, else_=other)
                if arms
                else other
            )
            # Staged on PostgreSQL: the scoring and the band counts both read it, and the
            # tier rules are worked out once per account.
            self._scoped = self.stage(
                select(Account.id.label("account_id"), tier.label("tier"), card.label("card")),
                "scoped",
            )
        return self._scoped

    # ------------------------------------------------------------------ values

    def values(self) -> CTE:
        """Per account with a scorecard: its tier, scorecard and every measure's value."""
        scoped = self.scoped()
        joined: Any = scoped.join(Account, Account.id == scoped.c.account_id)
        columns: list[ColumnElement[Any]] = []
        sources = _Sources(self)
        for index, (_, measure) in enumerate(self.measures):
            value = sources.value(measure)
            if measure.missing is not None:
                value = func.coalesce(value, _num(measure.missing))
            columns.append(cast(value, Float).label(f"v{index}"))
        for subquery in sources.subqueries():
            joined = joined.outerjoin(subquery, subquery.c.account_id == scoped.c.account_id)
        return (
            select(scoped.c.account_id, scoped.c.tier, scoped.c.card, *columns)
            .select_from(joined)
            .where(scoped.c.card.is_not(None))
            .cte("measure_values")
            .prefix_with("MATERIALIZED")
        )

    # ------------------------------------------------------------------ scores

    def scores(self) -> CTE:
        values = self.values()
        columns: list[ColumnElement[Any]] = []
        for index, (_, measure) in enumerate(self.measures):
            v = values.c[f"v{index}"]
            columns.append(v.label(f"v{index}"))
            columns.append(_points(measure, v).label(f"s{index}"))
        # Materialized, each layer: folded into one another, every score's CASE would be
        # spelled again inside every weight sum and contribution that reads it.
        return (
            select(values.c.account_id, values.c.tier, values.c.card, *columns)
            .cte("measure_scores")
            .prefix_with("MATERIALIZED")
        )

    def totals(self) -> CTE:
        """Per account: the weights of its measures with data (``den``) and the weighted mean
        of their scores (``raw``)."""
        scores = self.scores()
        num_arms: dict[str, ColumnElement[Any]] = {}
        den_arms: dict[str, ColumnElement[Any]] = {}
        for card in self.cards.scorecards:
            num: ColumnElement[Any] = _num(0)
            den: ColumnElement[Any] = _num(0)
            for index, (owner, measure) in enumerate(self.measures):
                if owner is not card:
                    continue
                s = scores.c[f"s{index}"]
                num = num + func.coalesce(s * _num(measure.weight), _num(0))
                den = den + case((s.is_not(None), _num(measure.weight)), else_=_num(0))
            den_arms[card.name] = den
            num_arms[card.name] = case((den > 0, num / den), else_=null())
        den_case = case({_text(k): v for k, v in den_arms.items()}, value=scores.c.card)
        raw_case = case({_text(k): v for k, v in num_arms.items()}, value=scores.c.card)
        passthrough = [c for c in scores.c if c.name not in ("account_id", "tier", "card")]
        return (
            select(
                scores.c.account_id,
                scores.c.tier,
                scores.c.card,
                *passthrough,
                den_case.label("den"),
                raw_case.label("raw"),
            )
            .cte("measure_totals")
            .prefix_with("MATERIALIZED")
        )

    def final(self) -> Any:
        """The rows of ``health_scores`` for the day."""
        totals = self.totals()
        score = self.round(totals.c.raw, 1)
        band_arms = {_text(c.name): _band(c.bands, score) for c in self.cards.scorecards}
        json_arms = {_text(c.name): self.measures_json(c, totals) for c in self.cards.scorecards}
        return select(
            totals.c.account_id,
            literal(self.day, Date()).label("day"),
            totals.c.card.label("scorecard"),
            score.label("score"),
            case(band_arms, value=totals.c.card).label("band"),
            case(json_arms, value=totals.c.card).label("measures"),
            literal(self.now, UTCDateTime()).label("computed_at"),
        ).where(totals.c.account_id.is_not(None))

    def measures_json(self, card: Scorecard, totals: CTE) -> ColumnElement[Any]:
        pairs: list[ColumnElement[Any]] = []
        for index, (owner, measure) in enumerate(self.measures):
            if owner is not card:
                continue
            v, s = totals.c[f"v{index}"], totals.c[f"s{index}"]
            contribution = case(
                (and_(s.is_not(None), totals.c.den > 0), s * _num(measure.weight) / totals.c.den),
                else_=null(),
            )
            if self.postgres:
                pairs.extend(
                    self.json_text(
                        ("," if pairs else "") + json.dumps(measure.name),
                        {
                            "value": self.round(v, 2),
                            "score": self.round(s, 1),
                            "weight": measure.weight,
                            "contribution": self.round(contribution, 2),
                        },
                    )
                )
                continue
            pairs += [
                _text(measure.name),
                self.json(
                    _text("value"),
                    self.round(v, 2),
                    _text("score"),
                    self.round(s, 1),
                    _text("weight"),
                    _num(measure.weight),
                    _text("contribution"),
                    self.round(contribution, 2),
                ),
            ]
        if self.postgres:  # one concat() of the pieces, read as JSON once
            return cast(func.concat(_text("{"), *pairs, _text("}")), JSONB)
        return self.json(*pairs)

    # ------------------------------------------------------------------ statements

    def upsert_scores(self) -> None:
        names = ["account_id", "day", "scorecard", "score", "band", "measures", "computed_at"]
        insert = (pg_insert if self.postgres else sqlite_insert)(HealthScore)
        statement = insert.from_select(names, self.final())
        statement = statement.on_conflict_do_update(
            index_elements=["account_id", "day"],
            set_={n: statement.excluded[n] for n in names[2:]},
        )
        self.session.execute(statement)

    def update_accounts(self) -> int:
        # The day's rows joined to those of 7 and 30 days before, in one UPDATE ... FROM: as
        # correlated subqueries, the two lookups per account were half the statement's time.
        cur = aliased(HealthScore, name="cur")
        prev7 = aliased(HealthScore, name="prev7")
        prev30 = aliased(HealthScore, name="prev30")
        rows = (
            select(
                cur.account_id,
                cur.score,
                cur.band,
                (cur.score - prev7.score).label("change_7d"),
                (cur.score - prev30.score).label("change_30d"),
            )
            .select_from(cur)
            .outerjoin(
                prev7,
                and_(
                    prev7.account_id == cur.account_id,
                    prev7.day == self.day - timedelta(days=7),
                ),
            )
            .outerjoin(
                prev30,
                and_(
                    prev30.account_id == cur.account_id,
                    prev30.day == self.day - timedelta(days=30),
                ),
            )
            .where(cur.day == self.day, cur.score.is_not(None))
            .subquery("day_scores")
        )
        statement = (
            update(Account)
            .where(
                Account.id == rows.c.account_id,
                or_(Account.health_scored_on.is_(None), Account.health_scored_on <= self.day),
            )
            .values(
                health_score=cast(func.round(rows.c.score), Integer),
                health_band=rows.c.band,
                health_change_7d=self.round(rows.c.change_7d, 1),
                health_change_30d=self.round(rows.c.change_30d, 1),
                health_scored_on=self.day,
            )
        )
        result = self.session.execute(statement, execution_options={"synchronize_session": False})
        return int(getattr(result, "rowcount", 0) or 0)

    def record_changes(self) -> tuple[date | None, Counter[str]]:
        """The band-change events against the previous scored day (see the module)."""
        previous = self.session.scalar(
            select(func.max(HealthScore.day)).where(HealthScore.day < self.day)
        )
        if previous is None:
            return None, Counter()
        cur, prev = aliased(HealthScore, name="cur"), aliased(HealthScore, name="prev")

        def rank(band: Any) -> ColumnElement[Any]:
            return case({_text(b): n for b, n in BAND_ORDER.items()}, value=band)

        when = day_start(self.day) if self.day < self.now.astimezone(UTC).date() else self.now
        # The accounts whose band changed, found once (on PostgreSQL, into a temporary
        # table): the three kinds of event below are each a pass over them, not a join of
        # the day's rows with the previous day's each.
        ch = self.stage(
            select(
                cur.account_id.label("account_id"),
                cur.band.label("band"),
                cur.score.label("score"),
                prev.band.label("previous_band"),
                prev.score.label("previous_score"),
            )
            .select_from(cur)
            .join(prev, and_(prev.account_id == cur.account_id, prev.day == previous))
            .where(
                cur.day == self.day,
                cur.band.is_not(None),
                prev.band.is_not(None),
                cur.band != prev.band,
            ),
            "band_changes",
        )
        data = self.json(
            _text("from"),
            ch.c.previous_band,
            _text("to"),
            ch.c.band,
            _text("score"),
            ch.c.score,
            _text("previous_score"),
            ch.c.previous_score,
        )

        def rows(name: ColumnElement[Any], *where: ColumnElement[bool]) -> Any:
            key = (
                literal("health:")
                + cast(ch.c.account_id, String)
                + literal(f":{self.day.isoformat()}:")
                + name
            )
            return select(
                _text(EventKind.CUSTOM.value).label("kind"),
                name.label("name"),
                ch.c.account_id.label("account_id"),
                _text(Classification.HUMAN.value).label("classification"),
                key.label("dedupe_key"),
                data.label("data"),
                literal(when, UTCDateTime()).label("occurred_at"),
                literal(self.now, UTCDateTime()).label("recorded_at"),
            ).where(true(), *where)  # a WHERE: SQLite reads "ON CONFLICT" after it only

        every = union_all(
            rows(_text(EVENT_CHANGED)),
            rows(_text(EVENT_DROPPED), rank(ch.c.band) < rank(ch.c.previous_band)),
            rows(literal_column("'health_'", String()) + ch.c.band),
        )
        names = [
            "kind",
            "name",
            "account_id",
            "classification",
            "dedupe_key",
            "data",
            "occurred_at",
            "recorded_at",
        ]
        insert = (pg_insert if self.postgres else sqlite_insert)(Event)
        statement = (
            insert.from_select(names, every)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(Event.name)
        )
        recorded = Counter(str(n) for n in self.session.execute(statement).scalars())
        if recorded:
            self.wake(when)
        return previous, recorded

    def wake(self, when: datetime) -> int:
        """Make the running and waiting enrollments at the accounts whose band changed due now
        (their goals, exits and waits look at product events), as
        :func:`campaigns.tracking.events.wake` does for one account's event."""
        key = f"health:%:{self.day.isoformat()}:{EVENT_CHANGED}"
        accounts = select(Event.account_id).where(
            Event.name == EVENT_CHANGED, Event.dedupe_key.like(key)
        )
        members = select(Contact.id).where(Contact.account_id.in_(accounts))
        result = self.session.execute(
            update(Enrollment)
            .where(
                Enrollment.state.in_([EnrollmentState.WAITING, EnrollmentState.ACTIVE]),
                Enrollment.next_run_at > self.now,
                or_(Enrollment.account_id.in_(accounts), Enrollment.contact_id.in_(members)),
            )
            .values(next_run_at=self.now),
            execution_options={"synchronize_session": False},
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def band_counts(self) -> dict[tuple[str | None, str | None], int]:
        scoped = self.scoped()
        rows = self.session.execute(
            select(scoped.c.tier, HealthScore.band, func.count())
            .select_from(scoped)
            .join(
                HealthScore,
                and_(HealthScore.account_id == scoped.c.account_id, HealthScore.day == self.day),
            )
            .group_by(scoped.c.tier, HealthScore.band)
        )
        return {(tier, band): int(n) for tier, band, n in rows}

    # ------------------------------------------------------------------ dialect

    def stage(self, query: Any, name: str) -> FromClause:
        """One kind's aggregate, to join to the accounts. On PostgreSQL it is worked out
        first, on its own, into a temporary table (``CREATE TEMPORARY TABLE ... AS``, dropped
        at commit): there it runs once, as a parallel aggregate; as a subquery of the
        ``INSERT``, each parallel worker of the join built every aggregate again (and an
        ``INSERT`` runs no parallel plan of its own). On SQLite, a subquery."""
        if not self.postgres:
            return query.subquery(name)
        table = f"health_{name}"
        sql = query.compile(
            dialect=self.session.get_bind().dialect,
            compile_kwargs={"render_postcompile": True},
        )
        connection = self.session.connection()
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {table} ON COMMIT DROP AS {sql}", sql.params
        )
        connection.exec_driver_sql(f"ANALYZE {table}")
        return table_clause(table, *(column_clause(c.name) for c in query.selected_columns))

    def round(self, value: ColumnElement[Any], digits: int) -> ColumnElement[Any]:
        """``value`` rounded to ``digits`` decimals, half away from zero, as a float. On
        PostgreSQL in floating point: ``round(x::numeric, d)`` converts each float to a
        numeric, and a quarter of a million rows of a dozen measures spent seconds on it."""
        if self.postgres:
            scale = _num(10.0**digits)
            return func.sign(value) * func.floor(func.abs(value) * scale + _num(0.5)) / scale
        return func.round(value, digits)

    def json_text(self, key: str, fields: dict[str, Any]) -> list[ColumnElement[Any]]:
        """The pieces of ``"name": {"field": number, ...}`` (``key`` is ``"name"`` spelled
        in JSON, with its comma if it is not the first), for PostgreSQL to read as JSON
        once: built with ``jsonb_build_object``, every float became a numeric one by one, the
        slowest part of scoring 250k accounts (bench/health.py). A float that is not a JSON
        number (NaN, infinite) or none is written ``null`` (in PostgreSQL, NaN sorts above
        infinity, so ``abs(x) < 'Infinity'`` holds for finite numbers only)."""
        pieces: list[ColumnElement[Any]] = [_text(key + ":{")]
        for n, (key, value) in enumerate(fields.items()):
            pieces.append(_text(("," if n else "") + json.dumps(key) + ":"))
            if isinstance(value, int | float):
                pieces.append(_text(json.dumps(float(value))))
            else:
                finite = func.abs(value) < literal_column("'Infinity'::float8", Float())
                pieces.append(case((finite, cast(value, Text)), else_=_text("null")))
        pieces.append(_text("}"))
        return pieces

    def json(self, *pairs: Any) -> ColumnElement[Any]:
        return func.jsonb_build_object(*pairs) if self.postgres else func.json_object(*pairs)

    def json_number(self, column: Any, name: str) -> ColumnElement[Any]:
        """The JSON attribute ``name`` when it is a number; NULL when it is anything else."""
        if self.postgres:
            return case(
                (func.jsonb_typeof(column[name]) == "number", column[name].as_float()),
                else_=null(),
            )
        path = f'$."{name}"'
        return case(
            (
                func.json_type(column, path).in_(["integer", "real"]),
                func.json_extract(column, path),
            ),
            else_=null(),
        )

    def days_from(self, column: Any, sign: int) -> ColumnElement[Any]:
        """``column - day`` in days (``sign`` 1), or ``day - column`` (-1)."""
        if self.postgres:
            diff: ColumnElement[Any] = column - literal(self.day, Date())
        else:
            diff = func.julianday(column) - func.julianday(literal(self.day.isoformat()))
        return diff if sign > 0 else -diff


def _points(measure: Measure, v: ColumnElement[Any]) -> ColumnElement[Any]:
    """The measure's score (0-100) for the value column ``v``; NULL without a value."""
    scoring = measure.scoring
    if isinstance(scoring, Linear):
        x = (v - _num(scoring.low)) * _num(100.0 / (scoring.high - scoring.low))
        return case((v.is_(None), null()), (x < 0, _num(0)), (x > 100, _num(100)), else_=x)
    assert isinstance(scoring, Bands)
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    last = _num(scoring.bands[-1].score)
    for band in scoring.bands:
        if band.below is None:
            last = _num(band.score)
            break
        whens.append((v < _num(band.below), _num(band.score)))
    return case((v.is_(None), null()), *whens, else_=last)


def _band(bands: HealthBands, score: ColumnElement[Any]) -> ColumnElement[Any]:
    return case(
        (score.is_(None), null()),
        (score >= _num(bands.green), _text("green")),
        (score >= _num(bands.yellow), _text("yellow")),
        else_=_text("red"),
    )


# ---------------------------------------------------------------------------- the sources


class _Sources:
    """The subqueries that read the measures, one per kind (``GROUP BY account_id``), and the
    expression of each measure's value over them. Measures that read the same thing (the
    same :attr:`Measure.key`) share one column."""

    def __init__(self, spell: _Spell) -> None:
        self.spell = spell
        self.day = spell.day
        self._columns: dict[str, dict[tuple[object, ...], tuple[str, ColumnElement[Any]]]] = {}
        self._extra: list[FromClause] = []  # usage `last`: a subquery of its own each
        self._built: dict[str, FromClause] = {}
        self._last: dict[tuple[object, ...], FromClause] = {}
        self._steps: dict[str, list[tuple[int, str]]] | None = None
        for _, m in spell.measures:  # every column first: each kind's subquery is built once
            if m.source != "field" and not (m.source == "usage" and m.aggregate == "last"):
                columns = self._columns.setdefault(m.source, {})
                if m.key not in columns:
                    columns[m.key] = (f"{m.source}_{len(columns)}", self._aggregate(m))

    def value(self, m: Measure) -> ColumnElement[Any]:
        if m.source == "field":
            return self.field(m.what)
        if m.source == "usage" and m.aggregate == "last":
            return self.last(m)
        column = self.built(m.source).c[self._columns[m.source][m.key][0]]
        if m.source in ("tasks",) or (m.source == "contacts" and m.what == "count"):
            return func.coalesce(column, _num(0))  # none is a count of 0
        return column

    def subqueries(self) -> list[FromClause]:
        return [self.built(kind) for kind in self._columns] + self._extra

    def built(self, kind: str) -> FromClause:
        if kind not in self._built:
            columns = [expr.label(label) for label, expr in self._columns[kind].values()]
            query = getattr(self, f"_{kind}_query")(columns)
            self._built[kind] = self.spell.stage(query, f"{kind}_agg")
        return self._built[kind]

    # ------------------------------------------------------------------ fields

    def field(self, name: str) -> ColumnElement[Any]:
        spell = self.spell
        if name.startswith("attributes."):
            return spell.json_number(Account.attributes, name.removeprefix("attributes."))
        if name == "days_to_renewal":
            return spell.days_from(Account.renewal_date, 1)
        if name == "days_since_start":
            return spell.days_from(Account.contract_start, -1)
        return spell.compiler.column(RuleColumn("account", name))

    # ------------------------------------------------------------------ aggregates

    def _aggregate(self, m: Measure) -> ColumnElement[Any]:
        return getattr(self, f"_{m.source}")(m)

    def _usage(self, m: Measure) -> ColumnElement[Any]:
        assert m.window_days is not None
        u = UsageMetric
        inside = and_(u.metric == m.what, u.day > self.day - timedelta(days=m.window_days))
        value = u.value
        if m.aggregate == "days":
            rows = func.count(case((inside, 1)))
            return case((rows == 0, null()), else_=func.count(case((and_(inside, value > 0), 1))))
        if m.aggregate == "change":
            start = self.day - timedelta(days=2 * m.window_days)
            before = and_(
                u.metric == m.what,
                u.day > start,
                u.day <= self.day - timedelta(days=m.window_days),
            )
            now_avg, then_avg = func.avg(case((inside, value))), func.avg(case((before, value)))
            return case(
                (then_avg > 0, (now_avg - then_avg) * _num(100) / then_avg),
                (and_(then_avg == 0, now_avg == 0), _num(0)),
                else_=null(),
            )
        aggregate: ColumnElement[Any] = getattr(func, str(m.aggregate))(case((inside, value)))
        return aggregate

    def _usage_query(self, columns: Sequence[ColumnElement[Any]]) -> Any:
        usage = [m for _, m in self.spell.measures if m.source == "usage"]
        span = max((m.window_days or 0) * (2 if m.aggregate == "change" else 1) for m in usage)
        return (
            select(UsageMetric.account_id.label("account_id"), *columns)
            .where(
                UsageMetric.metric.in_(sorted({m.what for m in usage})),
                UsageMetric.day > self.day - timedelta(days=span),
                UsageMetric.day <= self.day,
            )
            .group_by(UsageMetric.account_id)
        )

    def last(self, m: Measure) -> ColumnElement[Any]:
        """The value on the latest day of the window with a row: a subquery of its own."""
        if m.key not in self._last:
            assert m.window_days is not None
            u = UsageMetric
            latest = (
                select(u.account_id, func.max(u.day).label("day"))
                .where(
                    u.metric == m.what,
                    u.day > self.day - timedelta(days=m.window_days),
                    u.day <= self.day,
                )
                .group_by(u.account_id)
                .subquery(f"usage_latest_{len(self._last)}")
            )
            name = f"usage_last_{len(self._last)}"
            row = aliased(UsageMetric, name=f"usage_row_{len(self._last)}")
            sub = self.spell.stage(
                select(latest.c.account_id, row.value.label("value")).join(
                    row,
                    and_(
                        row.account_id == latest.c.account_id,
                        row.metric == m.what,
                        row.day == latest.c.day,
                    ),
                ),
                name,
            )
            self._last[m.key] = sub
            self._extra.append(sub)
        return self._last[m.key].c.value

    def steps(self) -> dict[str, list[tuple[int, str]]]:
        if self._steps is None:
            self._steps = survey_steps(self.spell.session)
        return self._steps

    def _of_scale(self, scale: str) -> ColumnElement[bool]:
        by_journey: dict[int, list[str]] = {}
        for journey_id, step_id in self.steps().get(scale, []):
            by_journey.setdefault(journey_id, []).append(step_id)
        if not by_journey:
            return literal(False)
        return or_(
            *(
                and_(Event.journey_id == j, Event.step_id.in_(ids))
                for j, ids in sorted(by_journey.items())
            )
        )

    def _survey(self, m: Measure) -> ColumnElement[Any]:
        assert m.window_days is not None
        start = day_start(self.day - timedelta(days=m.window_days - 1))
        inside = and_(self._of_scale(m.what), Event.occurred_at >= start)
        answer = cast(Event.value, Integer)
        if m.aggregate == "nps":
            promoters = func.sum(case((and_(inside, answer >= 9), 1), else_=0))
            detractors = func.sum(case((and_(inside, answer <= 6), 1), else_=0))
            answers = func.count(case((inside, 1)))
            return case((answers > 0, (promoters - detractors) * _num(100) / answers), else_=null())
        function = func.min if m.aggregate == "min" else func.avg
        return function(case((inside, cast(answer, Float))))

    def _survey_query(self, columns: Sequence[ColumnElement[Any]]) -> Any:
        surveys = [m for _, m in self.spell.measures if m.source == "survey"]
        span = max(m.window_days or 0 for m in surveys)
        scales = or_(*(self._of_scale(s) for s in sorted({m.what for m in surveys})))
        # Each contact's latest answer to each survey step in the window: one voice each.
        latest = (
            select(func.max(Event.id).label("id"))
            .where(
                Event.kind == EventKind.ANSWER,
                Event.classification != Classification.MACHINE,
                Event.value.in_(ANSWER_VALUES),
                Event.occurred_at >= day_start(self.day - timedelta(days=span - 1)),
                Event.occurred_at < day_start(self.day + timedelta(days=1)),
                Event.account_id.is_not(None),
                scales,
            )
            .group_by(Event.contact_id, Event.journey_id, Event.step_id)
            .subquery("latest_answers")
        )
        return (
            select(Event.account_id.label("account_id"), *columns)
            .select_from(Event)
            .join(latest, latest.c.id == Event.id)
            .group_by(Event.account_id)
        )

    def _email(self, m: Measure) -> ColumnElement[Any]:
        assert m.window_days is not None
        start = day_start(self.day - timedelta(days=m.window_days - 1))
        inside = Message.sent_at >= start
        sent = func.count(case((inside, 1)))
        flag = Message.clicked_at if m.what in ("click_rate", "clicks") else Message.opened_at
        hits = func.count(case((and_(inside, flag.is_not(None)), 1)))
        if m.what.endswith("_rate"):
            return case((sent > 0, hits * _num(100) / sent), else_=null())
        return case((sent > 0, hits), else_=null())

    def _email_query(self, columns: Sequence[ColumnElement[Any]]) -> Any:
        emails = [m for _, m in self.spell.measures if m.source == "email"]
        span = max(m.window_days or 0 for m in emails)
        return (
            select(Contact.account_id.label("account_id"), *columns)
            .select_from(Message)
            .join(Contact, Contact.id == Message.contact_id)
            .where(
                Message.channel == Channel.EMAIL,
                Message.sent_at >= day_start(self.day - timedelta(days=span - 1)),
                Message.sent_at < day_start(self.day + timedelta(days=1)),
                Contact.account_id.is_not(None),
            )
            .group_by(Contact.account_id)
        )

    def _tasks(self, m: Measure) -> ColumnElement[Any]:
        if m.what == "overdue":
            return func.count(case((Task.due_at < literal(self.spell.as_of, UTCDateTime()), 1)))
        return func.count()

    def _tasks_query(self, columns: Sequence[ColumnElement[Any]]) -> Any:
        return (
            select(Task.account_id.label("account_id"), *columns)
            .where(Task.status == TaskStatus.OPEN, Task.account_id.is_not(None))
            .group_by(Task.account_id)
        )

    def _contacts(self, m: Measure) -> ColumnElement[Any]:
        rule = self.spell.compiler.compile(m.when_expr) if m.when_expr is not None else true()
        if m.what == "count":
            return func.count(case((rule, 1)))
        if m.what == "share":
            return func.count(case((rule, 1))) * _num(100) / func.count()
        attribute = self.spell.json_number(Contact.attributes, m.what.removeprefix("attributes."))
        aggregate: ColumnElement[Any] = getattr(func, str(m.aggregate))(case((rule, attribute)))
        return aggregate

    def _contacts_query(self, columns: Sequence[ColumnElement[Any]]) -> Any:
        return (
            select(Contact.account_id.label("account_id"), *columns)
            .select_from(Contact)
            .join(Account, Account.id == Contact.account_id)
            .group_by(Contact.account_id)
        )
