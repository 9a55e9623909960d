"""The scorecards file: every mistake reported at its file:line:col with a hint, as the
journeys and segments are; garbage never crashes the reader."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.exceptions import ScorecardError
from campaigns.journeys.scorecards import Bands, Linear, parse_scorecards
from campaigns.journeys.segments import parse_segments

SEGMENTS = parse_segments(
    "tiers:\n  high_touch: {when: 'arr >= 5000000'}\n  tech_touch: {when: true}\n"
)

GOOD = """\
bands: {red: 0, yellow: 40, green: 70}
scorecards:
  tech:
    label: {en: Tech touch, ja: テックタッチ}
    tiers: [tech_touch]
    default: true
    measures:
      users:
        label: {en: Active users, ja: アクティブユーザー}
        usage: active_users
        window: 30 days
        aggregate: avg
        score: {linear: [0, 20]}
        weight: 30
      nps:
        survey: nps
        window: 180日
        score: {bands: [{below: 0, score: 0}, {below: 30, score: 50}, {score: 100}]}
        weight: 20
      admins: {contacts: count, when: "contact.role == 'admin'", score: {linear: [0, 2]}, weight: 1}
      seats: {field: attributes.seats, missing: 0, score: {linear: [0, 50]}, weight: 1}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ScorecardError) as info:
        parse_scorecards(text, "journeys/scorecards.yaml", SEGMENTS)
    return [str(p) for p in info.value.problems]


def broken(measure: str, card_extra: str = "", top: str = "") -> str:
    return (
        f"{top}scorecards:\n  tech:\n    tiers: [tech_touch]\n{card_extra}    measures:\n"
        f"      m: {measure}\n"
    )


def test_a_good_scorecard_reads_as_plain_data():
    cards = parse_scorecards(GOOD, "scorecards.yaml", SEGMENTS)
    card = cards.get("tech")
    assert cards.for_tier("tech_touch") is card and cards.for_tier("high_touch") is card
    assert card.label_for("ja") == "テックタッチ"
    users, nps, admins, seats = card.measures
    assert (users.source, users.what, users.aggregate, users.window_days) == (
        "usage",
        "active_users",
        "avg",
        30,
    )
    assert users.scoring == Linear(0, 20) and users.weight == 30
    assert (nps.aggregate, nps.window_days) == ("nps", 180)  # the default aggregate, 日 days
    assert isinstance(nps.scoring, Bands) and nps.points(29.9) == 50 and nps.points(30) == 100
    assert admins.when == "contact.role == 'admin'" and admins.when_expr is not None
    assert seats.points(None) == 0  # missing: 0
    # no data for nps: left out, the weights of the rest re-normalised
    assert card.combine({"users": 50, "nps": None, "admins": 100, "seats": 0}) == pytest.approx(
        round((30 * 50 + 100 + 0) / 32, 1)
    )


@pytest.mark.parametrize(
    ("text", "needle", "message"),
    [
        (
            broken("{field: days_to_renewl, score: {linear: [0, 1]}, weight: 1}"),
            "days_to_renewl",
            "unknown field 'days_to_renewl' (did you mean 'days_to_renewal'?)",
        ),
        (
            broken("{field: plan, score: {linear: [0, 1]}, weight: 1}"),
            "plan",
            "'plan' is not a number a measure can read",
        ),
        (
            broken("{tasks: overdue, score: {linear: [3, 0]}, weight: thirty}"),
            "thirty",
            "the weight of measure 'm' must be a number, not str 'thirty'",
        ),
        (
            broken("{tasks: overdue, score: {linear: [3, 0]}, weight: '30'}"),
            "'30'",
            "the weight of measure 'm' must be a number, not str '30'",
        ),
        (
            broken("{tasks: overdue, score: {linear: [3, 0]}, weight: -5}"),
            "-5",
            "the weight of measure 'm' is negative",
        ),
        (
            broken("{tasks: overdue, score: {linear: [3, 0]}, weight: 0}"),
            "m:",
            "every weight of scorecard 'tech' is 0",
        ),
        (
            broken(
                "{tasks: open, score: {bands: [{below: 5, score: 0}, {below: 5, score: 50}, {score: 100}]}, weight: 1}"
            ),
            "5, score: 50",
            "bands overlap: below 5 comes after below 5",
        ),
        (
            broken(
                "{tasks: open, score: {bands: [{below: 9, score: 0}, {below: 2, score: 50}, {score: 100}]}, weight: 1}"
            ),
            "2, score: 50",
            "bands overlap: below 2 comes after below 9",
        ),
        (
            broken("{tasks: open, score: {bands: [{below: 9, score: 0}]}, weight: 1}"),
            "{below: 9",
            "values of 9 and more get no score",
        ),
        (
            broken("{tasks: open, score: {linear: [1, 1]}, weight: 1}"),
            "[1, 1]",
            "linear from 1 to 1 is no range",
        ),
        (
            broken(
                "{tasks: open, score: {linear: [0, 1]}, weight: 1}",
                top="bands: {red: 0, yellow: 80, green: 60}\n",
            ),
            "60",
            "the bands overlap: red from 0, yellow from 80, green from 60",
        ),
        (
            broken(
                "{tasks: open, score: {linear: [0, 1]}, weight: 1}",
                top="bands: {red: 10, yellow: 40, green: 70}\n",
            ),
            "10",
            "the red band starts at 0",
        ),
        (
            broken(
                "{usage: logins, window: 30 days, aggregate: mean, score: {linear: [0, 1]}, weight: 1}"
            ),
            "mean",
            "unknown aggregate 'mean' (did you mean 'avg'?)",
        ),
        (
            broken(
                "{survey: csat, window: 30 days, aggregate: nps, score: {linear: [0, 1]}, weight: 1}"
            ),
            "nps",
            "unknown aggregate 'nps' (one of: avg, min)",
        ),
        (
            broken(
                "{usage: logins, window: 30 dayz, aggregate: sum, score: {linear: [0, 1]}, weight: 1}"
            ),
            "30 dayz",
            "bad window: unknown unit 'dayz' in '30 dayz'",
        ),
        (
            broken(
                "{usage: logins, window: 12 hours, aggregate: sum, score: {linear: [0, 1]}, weight: 1}"
            ),
            "12 hours",
            "a window is whole days, not '12 hours'",
        ),
        (
            broken("{usage: logins, aggregate: sum, score: {linear: [0, 1]}, weight: 1}"),
            "usage",
            "measure 'm' needs a 'window' (e.g. window: 30 days)",
        ),
        (
            "scorecards:\n  tech:\n    tiers: [tech_tuch]\n    measures:\n      m: {tasks: open, score: {linear: [0, 1]}, weight: 1}\n",
            "tech_tuch",
            "unknown tier 'tech_tuch' (did you mean 'tech_touch'?)",
        ),
        (
            broken("{tasks: open, scor: {linear: [0, 1]}, weight: 1}"),
            "scor:",
            "unknown key 'scor' in measure 'm' (did you mean 'score'?)",
        ),
        (
            broken(
                "{contacts: count, when: \"contact.rol == 'admin'\", score: {linear: [0, 1]}, weight: 1}"
            ),
            "rol ",
            "unknown contact field 'rol' (did you mean 'role'?)",
        ),
        (
            broken("{tasks: open, window: 3 days, score: {linear: [0, 1]}, weight: 1}"),
            "window",
            "'window' does not go with 'tasks'",
        ),
        (
            broken("{email: open_rate, tasks: open, score: {linear: [0, 1]}, weight: 1}"),
            "tasks",
            "measure 'm' reads both 'email' and 'tasks'",
        ),
        ("base: &b {tasks: open}\nscorecards: {}\n", "&b", "YAML anchor '&b' is not allowed"),
    ],
)
def test_a_broken_scorecard_names_the_place_and_a_fix(text, needle, message):
    """Each problem points at the offending word: its line and column are where ``needle``
    first stands in the text."""
    before = text[: text.index(needle)]
    line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
    found = problems(text)
    assert any(p.startswith(f"journeys/scorecards.yaml:{line}:{col}: {message}") for p in found), (
        line,
        col,
        found,
    )


def test_two_scorecards_for_one_tier_and_two_defaults_are_refused():
    text = (
        "scorecards:\n"
        "  a:\n    tiers: [tech_touch]\n    default: true\n"
        "    measures: {m: {tasks: open, score: {linear: [0, 1]}, weight: 1}}\n"
        "  b:\n    tiers: [tech_touch]\n    default: true\n"
        "    measures: {m: {tasks: open, score: {linear: [0, 1]}, weight: 1}}\n"
    )
    assert problems(text) == [
        "journeys/scorecards.yaml:7:13: tier 'tech_touch' already has scorecard 'a'"
        " (name each tier in one scorecard)",
        "journeys/scorecards.yaml:8:14: scorecard 'a' is the default already"
        " (keep default: true on one scorecard)",
    ]


def test_validate_checks_the_scorecards_file(cli):
    (cli.folder / "journeys" / "scorecards.yaml").write_text(
        "scorecards:\n  all:\n    default: true\n    measures:\n"
        "      m: {tasks: overdue, score: {linear: [3, 0]}, weight: heavy}\n",
        encoding="utf-8",
    )
    result = cli("validate")
    assert result.exit_code == 1
    assert "scorecards.yaml:5:60: the weight of measure 'm' must be a number" in result.output


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_is_read_or_refused_with_problems(text):
    try:
        parse_scorecards(text, "s.yaml", SEGMENTS)
    except ScorecardError as exc:
        assert exc.problems and all(p.line >= 1 and p.col >= 1 for p in exc.problems)


KEYS = st.sampled_from(
    [
        "bands",
        "scorecards",
        "tech",
        "tiers",
        "default",
        "measures",
        "m",
        "field",
        "usage",
        "survey",
        "email",
        "tasks",
        "contacts",
        "window",
        "aggregate",
        "when",
        "score",
        "weight",
        "missing",
        "linear",
        "below",
        "red",
        "yellow",
        "green",
        "label",
        "en",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "avg",
            "nps",
            "csat",
            "30 days",
            "tech_touch",
            "count",
            "open_rate",
            "overdue",
            "days_to_renewal",
            "attributes.x",
            "contact.role == 'admin'",
            "{{",
            "",
            "日",
        ]
    ),
    st.text(max_size=10),
)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, TREES, max_size=3))
def test_garbage_shaped_like_a_scorecard_is_refused_not_crashed_on(tree):
    text = yaml.safe_dump(tree, allow_unicode=True)
    try:
        cards = parse_scorecards(text, "s.yaml", SEGMENTS)
    except ScorecardError as exc:
        assert exc.problems
    else:
        for card in cards.scorecards:
            assert sum(m.weight for m in card.measures) > 0 or not card.measures


def test_the_docs_worked_example_and_the_shipped_scorecards_are_valid():
    from pathlib import Path

    from campaigns.journeys.scorecards import load_scorecards
    from campaigns.journeys.segments import load_segments

    root = Path(__file__).resolve().parent.parent
    shipped = load_segments(root / "journeys" / "segments.yaml")
    doc = (root / "docs" / "health.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    card = parse_scorecards(example, "docs/health.md", shipped).get("tech_touch")
    assert [m.name for m in card.measures] == ["active_users", "nps", "overdue"]
    # the arithmetic of the docs' example: 6 users, NPS 33, 1 overdue -> 70.0
    points = {"active_users": 60.0, "nps": 100.0, "overdue": 50.0}
    assert [m.points(v) for m, v in zip(card.measures, (6, 33.3, 1), strict=True)] == list(
        points.values()
    )
    assert card.combine(points) == 70.0 and card.bands.band(70.0) == "green"
    cards = load_scorecards(root / "journeys" / "scorecards.yaml", shipped)
    assert {t for c in cards.scorecards for t in c.tiers} == {t.name for t in shipped.tiers}
    for key in ("field", "contacts", "usage", "survey", "email", "tasks", "missing", "when"):
        assert f"`{key}" in doc, key
