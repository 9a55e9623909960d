"""Property tests: whatever a journey file contains, the validator answers with a journey or
a list of located problems, never an exception."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.exceptions import JourneyError
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments

SEGMENTS = parse_segments(
    "tiers:\n  low_touch: {when: arr >= 1000000}\n  tech_touch: {when: true}\n"
)
TEMPLATES = {"welcome", "nps_survey"}

VALID = """\
journey: fuzz
name: ファズ
segments: [low_touch]
audience: contact.role != 'billing'
entry:
  trigger: date
  field: renewal_date
  offset: 90 days before
re_entry: after 30 days
exit_when:
  - event: churned
  - condition: contract_status == 'churned'
goal: {event: renewed, within: 120 days}
sending_window: {days: weekdays, hours: "09:00-18:00", time_zone: Asia/Tokyo}
holdout: 10%
steps:
  - id: ask
    survey: {scale: nps, template: nps_survey, subject: {en: "Q", ja: "ご意見"}}
  - id: wait
    wait_until: {answered: ask, timeout: 7 days}
  - id: route
    branch:
      - when: answer('ask') is not none and answer('ask') <= 6
        goto: call
      - else: done
  - id: call
    channel: best_of [email, task]
    email: {template: welcome, subject: "Hi {{ contact.name }}", variants: [{id: a, subject: A},
        {id: b, subject: B}]}
    task: {kind: call, title: "Call {{ account.name }}", due: 2 days}
  - id: tag
    update: {set: {attributes.nps: low}, add_tags: [detractor]}
  - id: done
    exit: completed
"""

TOKENS = [
    ":",
    "-",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    "\t",
    "\n",
    "  ",
    "{{",
    "}}",
    "{%",
    "!!python/object:os.system",
    "*a",
    "&a",
    "<<: *a",
    "id",
    "goto",
    "when",
    "answer(",
    "wait",
    "yes",
    "no",
    "null",
    "~",
    "0",
    "-1",
    "1e309",
    "9" * 40,
    "日本語",
    "\x00",
    "\ufeff",
    "\u202e",
    "%",
    "#",
    "?",
    "|",
    ">",
]


def assert_clean(text: str) -> None:
    try:
        journey = parse_journey(text, "fuzz.yaml", segments=SEGMENTS, templates=TEMPLATES)
    except JourneyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.line >= 1 and problem.col >= 1
            assert problem.message.strip()
            assert str(problem).startswith("fuzz.yaml:")
    else:
        assert journey.key and journey.steps


def test_the_unmutated_file_is_valid():
    journey = parse_journey(VALID, "fuzz.yaml", segments=SEGMENTS, templates=TEMPLATES)
    assert [s.id for s in journey.steps] == ["ask", "wait", "route", "call", "tag", "done"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace_line", "swap", "dup"]))
        lines = text.split("\n")
        if op == "delete" and text:
            start = draw(st.integers(0, len(text) - 1))
            text = text[:start] + text[start + draw(st.integers(1, 30)) :]
        elif op == "insert":
            at = draw(st.integers(0, len(text)))
            piece = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)))
            text = text[:at] + piece + text[at:]
        elif op == "replace_line":
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = draw(st.one_of(st.text(max_size=30), st.sampled_from(TOKENS)))
            text = "\n".join(lines)
        elif op == "swap" and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif op == "dup":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_journeys_give_a_journey_or_located_problems(text):
    assert_clean(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_gives_located_problems(text):
    assert_clean(text)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=20,
    )
)
def test_arbitrary_yaml_structures_give_located_problems(value):
    import yaml

    assert_clean(
        yaml.safe_dump(
            {
                "journey": "x",
                "name": "x",
                "segments": ["low_touch"],
                "entry": {"trigger": "segment"},
                "steps": value,
            },
            allow_unicode=True,
        )
    )
    assert_clean(yaml.safe_dump(value, allow_unicode=True))
