"""Hostile YAML costs what its size costs: anchors and aliases (the "billion laughs"), huge
files and deep nesting are refused with a located problem before they are expanded or read
whole, in journey, segments and links files alike, and nothing but our own error escapes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import config as settings_module
from campaigns import defaults
from campaigns.content.project import Project
from campaigns.exceptions import JourneyError, Problem, SegmentError
from campaigns.journeys.parse import load_journey, parse_journey
from campaigns.journeys.segments import load_segments, parse_segments
from campaigns.journeys.yamlsource import YamlProblem, load, read

SEGMENTS = "tiers:\n  low_touch: {when: arr >= 1000000}\n  tech_touch: {when: true}\n"
HEAD = "journey: laughs\nname: Laughs\nsegments: [low_touch]\nentry: {trigger: segment}\n"
NO_ANCHORS = (
    "write the value out in full where it is needed: anchors and aliases (&name / "
    "*name) are not allowed in journey, segments and links files"
)
TOO_LARGE = (
    "journey, segments and links files are a few KB: check that this is the right file, "
    "or split it into several journeys"
)


def billion_laughs(levels: int = 16, fan_out: int = 30) -> str:
    """A journey whose last step note expands to ``fan_out ** levels`` strings."""
    lines = [HEAD.rstrip("\n"), "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * fan_out)}]")
    lines.append(f"steps:\n  - {{id: rest, wait: 1 day, note: *l{levels - 1}}}")
    return "\n".join(lines) + "\n"


def problems(text: str) -> list[str]:
    with pytest.raises(JourneyError) as caught:
        parse_journey(text, "j.yaml")
    return [str(p) for p in caught.value.problems]


# ---------------------------------------------------------------------------- anchors and aliases

# Measured in a child process under a 1 GiB address-space limit: if the refusal ever regressed
# to expanding the aliases, this test fails with a MemoryError instead of eating the machine.
_MEASURE = """
import json, resource, sys, time, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
from campaigns.journeys.parse import parse_journey
from campaigns.exceptions import JourneyError
text = sys.stdin.read()
tracemalloc.start()
started = time.perf_counter()
try:
    parse_journey(text, "laughs.yaml")
    found = []
except JourneyError as exc:
    found = [str(p) for p in exc.problems]
seconds = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": seconds, "peak": peak, "problems": found}))
"""


def test_a_billion_laughs_journey_is_refused_in_milliseconds_with_flat_memory():
    text = billion_laughs()
    assert (
        2_500 < len(text.encode()) < 4_000
    )  # the 3 KB file of the issue: 30 ** 16 strings once expanded
    child = subprocess.run(
        [sys.executable, "-c", _MEASURE], input=text, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr[-2000:]
    measured = json.loads(child.stdout)
    assert measured["problems"] == [
        f"laughs.yaml:5:5: YAML anchor '&l0' is not allowed ({NO_ANCHORS})"
    ]
    assert measured["seconds"] < 2.0
    assert measured["peak"] < 50 * 2**20


def test_a_single_alias_is_refused_at_its_line_and_column():
    text = HEAD + "steps:\n  - {id: rest, wait: *pause}\n"
    assert problems(text) == [f"j.yaml:6:22: YAML alias '*pause' is not allowed ({NO_ANCHORS})"]


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("sending_window: &office {days: weekdays, hours: '09:00-18:00'}", 17),  # a mapping
        ("exit_when: &exits\n  - event: churned", 12),  # a block sequence
        ("description: &why The quarterly survey", 14),  # a scalar
        ("description: !!str &why The quarterly survey", 14),  # after a tag: where the node starts
    ],
)
def test_an_anchor_alone_is_refused_even_when_nothing_refers_to_it(line, where):
    text = HEAD + line + "\nsteps:\n  - {id: rest, wait: 1 day}\n"
    [problem] = problems(text)
    assert problem.startswith(f"j.yaml:5:{where}: YAML anchor '&")
    assert problem.endswith(f"is not allowed ({NO_ANCHORS})")


def test_plain_text_with_ampersands_and_asterisks_is_not_an_anchor():
    journey = parse_journey(
        HEAD + "description: Q&A *live* & recorded, 5 * 3\nsteps:\n  - {id: rest, wait: 1 day}\n",
        "j.yaml",
    )
    assert journey.description == "Q&A *live* & recorded, 5 * 3"


def test_segments_and_links_files_refuse_anchors_too(tmp_path):
    with pytest.raises(SegmentError) as caught:
        parse_segments(
            "tiers:\n  low_touch: &rule {when: arr >= 1000000}\n  tech_touch: *rule\n",
            "segments.yaml",
        )
    assert [str(p) for p in caught.value.problems] == [
        f"segments.yaml:2:14: YAML anchor '&rule' is not allowed ({NO_ANCHORS})"
    ]

    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "links.yaml").write_text(
        "docs: &docs https://docs.example.com/\nhelp: *docs\n", encoding="utf-8"
    )
    project = Project(settings_module.load({}, root=tmp_path))
    with pytest.raises(JourneyError) as caught:
        project.links()
    assert [str(p) for p in caught.value.problems] == [
        f"{templates / 'links.yaml'}:1:7: YAML anchor '&docs' is not allowed ({NO_ANCHORS})"
    ]


# ---------------------------------------------------------------------------- size and depth


def test_a_file_over_the_limit_is_refused_at_1_1(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(HEAD.encode() + b"#" * (defaults.MAX_SOURCE_BYTES - len(HEAD)) + b"\n")
    with pytest.raises(JourneyError) as caught:
        load_journey(path)
    assert caught.value.problems == [
        Problem(
            str(path),
            1,
            1,
            f"the file is larger than {defaults.MAX_SOURCE_BYTES:,} bytes",
            TOO_LARGE,
        )
    ]
    segments = tmp_path / "segments.yaml"
    segments.write_bytes(SEGMENTS.encode() + b" " * defaults.MAX_SOURCE_BYTES)
    with pytest.raises(SegmentError) as caught:
        load_segments(segments)
    assert [(p.line, p.col, p.hint) for p in caught.value.problems] == [(1, 1, TOO_LARGE)]


def test_a_file_of_exactly_the_limit_is_read():
    text = HEAD + "steps:\n  - {id: rest, wait: 1 day}\n"
    padded = text + "#" * (defaults.MAX_SOURCE_BYTES - len(text.encode()))
    assert parse_journey(padded, "j.yaml").key == "laughs"


@pytest.mark.parametrize("size", [50 * 2**20, 2**40])  # 50 MiB, 1 TiB: sparse, they take no disk
def test_a_huge_file_is_refused_having_read_no_more_than_the_limit(tmp_path, size):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(size)
    tracemalloc.start()
    try:
        with pytest.raises(YamlProblem) as caught:
            read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (caught.value.pos.line, caught.value.pos.col) == (1, 1)
    assert peak < 3 * defaults.MAX_SOURCE_BYTES


def test_an_endless_file_is_refused_too():
    with pytest.raises(YamlProblem, match="larger than"):
        read(Path("/dev/zero"))


def test_a_text_over_the_limit_is_refused_however_its_characters_are_counted():
    # A stored version or an API body never went through read(): load() checks the text.
    assert problems("#" * (defaults.MAX_SOURCE_BYTES + 1)) == [
        f"j.yaml:1:1: the file is larger than {defaults.MAX_SOURCE_BYTES:,} bytes ({TOO_LARGE})"
    ]
    japanese = "# " + "日" * (
        defaults.MAX_SOURCE_BYTES // 3
    )  # fewer characters than the limit, more bytes
    assert len(japanese) < defaults.MAX_SOURCE_BYTES < len(japanese.encode())
    assert problems(japanese)[0].startswith("j.yaml:1:1: the file is larger than")


def test_nesting_deeper_than_the_limit_is_refused_where_it_goes_too_deep():
    depth = defaults.MAX_SOURCE_DEPTH
    deep = problems(HEAD + "steps: " + "[" * (depth + 10) + "]" * (depth + 10) + "\n")
    # The document is level 1 and `steps:` opens level 2: the (depth)th bracket is one too many.
    assert deep == [
        f"j.yaml:5:{len('steps: ') + depth}: nested more than {depth} levels deep (journeys, "
        "segments and links need a few levels of lists and mappings; check the brackets and the "
        "indentation)"
    ]
    shallow = problems(HEAD + "steps: " + "[" * (depth - 2) + "]" * (depth - 2) + "\n")
    assert not any("nested" in p for p in shallow)


def test_a_megabyte_of_brackets_is_refused_quickly():
    started = time.perf_counter()
    [problem] = problems("[" * (defaults.MAX_SOURCE_BYTES - 1))
    assert "nested more than" in problem
    assert time.perf_counter() - started < 2.0


# ---------------------------------------------------------------------------- the command line


@pytest.fixture
def hostile(cli):
    """The CLI in a project folder whose journeys include a YAML bomb, an alias and a file too
    large to read."""
    journeys = cli.folder / "journeys"
    (cli.folder / "templates" / "en").mkdir()
    (journeys / "segments.yaml").write_text(SEGMENTS, encoding="utf-8")
    (journeys / "pause.yaml").write_text(
        HEAD.replace("laughs", "pause") + "steps:\n  - {id: rest, wait: 1 day}\n", encoding="utf-8"
    )
    (journeys / "bomb.yaml").write_text(billion_laughs(), encoding="utf-8")
    (journeys / "alias.yaml").write_text(
        HEAD.replace("laughs", "alias") + "steps:\n  - {id: rest, wait: *pause}\n", encoding="utf-8"
    )
    (journeys / "huge.yaml").write_bytes(b"#" * (defaults.MAX_SOURCE_BYTES + 1))
    return cli


def test_validate_prints_one_line_per_hostile_file_and_exits_1(hostile):
    started = time.perf_counter()
    result = hostile("validate")
    assert time.perf_counter() - started < 5.0
    assert result.exit_code == 1, result.output
    journeys = hostile.folder / "journeys"
    assert result.stderr.splitlines() == [
        f"{journeys / 'alias.yaml'}:6:22: YAML alias '*pause' is not allowed ({NO_ANCHORS})",
        f"{journeys / 'bomb.yaml'}:5:5: YAML anchor '&l0' is not allowed ({NO_ANCHORS})",
        f"{journeys / 'huge.yaml'}:1:1: the file is larger than {defaults.MAX_SOURCE_BYTES:,} "
        f"bytes ({TOO_LARGE})",
        "3 problems found",
    ]


def test_deploy_refuses_hostile_files_and_creates_no_database(hostile):
    result = hostile("deploy")
    assert result.exit_code == 1
    assert (
        "nothing deployed" in result.stderr and "bomb.yaml:5:5: YAML anchor '&l0'" in result.stderr
    )
    assert not (hostile.folder / "campaigns.db").exists()


# ---------------------------------------------------------------------------- anything at all

PIECES = [
    "&a ",
    "*a",
    "&b [1, *a]",
    "<<: *a",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!timestamp ",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "!local ",
    "%YAML 1.2\n",
    "%TAG ! tag:x,2000:\n",
    "---\n",
    "...\n",
    "? ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "|\n",
    ">-\n",
    "#",
    "\n",
    "  ",
    "\t",
    "\\",
    "key",
    "steps",
    "2026-13-45",
    "0x",
    "0o9",
    "1e999",
    "9" * 30,
    ".nan",
    "~",
    "null",
    "true",
    "yes",
    "日本",
    "\x00",
    "\x07",
    "\x85",
    "\u2028",
    "\ufeff",
    "\ud800",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=40).map("".join))
def test_yaml_ish_text_gives_a_value_or_one_located_problem(text):
    try:
        load(text)
    except YamlProblem as exc:
        assert exc.pos.line >= 1 and exc.pos.col >= 1
        assert exc.message.strip() and "\n" not in exc.message and "\n" not in (exc.hint or "")
    for parse in (parse_segments, parse_journey):
        try:
            parse(text, "f.yaml")
        except JourneyError as exc:  # SegmentError is one
            assert all(str(p).startswith("f.yaml:") and "\n" not in str(p) for p in exc.problems)
