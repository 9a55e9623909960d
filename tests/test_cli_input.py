"""What the command line refuses before a command runs, each in one line and exit 2: paths
that cannot name a file (empty, or holding a NUL byte), report flags that would change
nothing, a simulation of a file with no journey; and what the day flags count: the tasks'
days in the team's time zone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import select

from campaigns.engine.deploy import deploy
from campaigns.insight import stats
from campaigns.journeys.parse import parse_journey
from campaigns.store.models import Journey

JOURNEY = textwrap.dedent(
    """\
    journey: {key}
    name: {name}
    segments: [everyone]
    entry: {{trigger: segment}}
    steps:
      - {{id: hello, email: {{template: onboarding_tips, subject: Tips}}}}
    """
)


def one_line_exit_2(result, starts: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.output.count("\n") == 1 and result.output.startswith(starts), result.output
    assert "internal error" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("path", ["\x00", "a\x00b", "journeys/\x00.yaml"])
@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["validate"], "PATHS"),
        (["deploy"], "PATHS"),
        (["import", "contacts"], "FILE"),
        (["import", "accounts"], "FILE"),
    ],
)
def test_a_path_with_a_nul_byte_is_refused_in_one_line(cli, command, name, path):
    result = cli(*command, path)
    one_line_exit_2(result, f"campaigns: {name}: {path!r} contains a NUL byte")


@pytest.mark.parametrize(
    ("command", "name"),
    [(["validate"], "PATHS"), (["deploy"], "PATHS"), (["import", "contacts"], "FILE")],
)
def test_an_empty_path_is_refused_in_one_line(cli, command, name):
    # What a shell passes for $'\x00': bash drops the NUL and leaves an empty argument.
    result = cli(*command, "")
    one_line_exit_2(result, f"campaigns: {name}: an empty file name")


def test_the_console_script_refuses_an_empty_path_in_one_line(cli):
    done = subprocess.run(
        [sys.executable, "-m", "campaigns", "validate", ""],
        cwd=cli.folder,
        env={k: v for k, v in cli.env.items() if v is not None} | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == "campaigns: PATHS: an empty file name\n"


def test_valid_paths_still_pass(cli):
    result = cli("validate", "journeys")
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------- report flags


@pytest.fixture
def two_journeys(db, cli):
    """Journeys ``first`` (5 sent on 1 Nov, 3 on 8 Nov) and ``second`` (2 sent on 8 Nov)."""
    with db.session() as s, s.begin():
        for key, name in (("first", "はじめ"), ("second", "Second")):
            text = JOURNEY.format(key=key, name=name)
            deploy(s, parse_journey(text, f"{key}.yaml"), text, f"{key}.yaml")
        ids = {key: id_ for key, id_ in s.execute(select(Journey.key, Journey.id))}
        rows: Counter[stats.Key] = Counter()
        for key, day, sent in (("first", 1, 5), ("first", 8, 3), ("second", 8, 2)):
            rows[(ids[key], "hello", "email", "", "everyone", "", date(2026, 11, day), "sent")] = (
                sent
            )
        stats.add(s, rows)
    cli.env["DATABASE_URL"] = db.url
    return ids


def sent_by_journey(result) -> dict[str, int]:
    assert result.exit_code == 0, (result.output, result.exception)
    document = json.loads(result.output)
    return {j["journey"]: j["counts"].get("sent", 0) for j in document["journeys"]}


@pytest.mark.parametrize("flags", [["--by", "day"], ["--since", "2026-11-02"]])
def test_report_flags_without_a_journey_are_refused_in_one_line(cli, two_journeys, flags):
    result = cli("report", *flags)
    one_line_exit_2(result, f"campaigns: {flags[0]} need a JOURNEY")
    assert sent_by_journey(cli("report", "--format", "json")) == {"first": 8, "second": 2}
    assert cli("report", "first", *flags, "--format", "json").exit_code == 0


def test_report_since_after_until_is_refused(cli, two_journeys):
    result = cli("report", "first", "--since", "2026-11-09", "--until", "2026-11-01")
    one_line_exit_2(result, "campaigns: --since 2026-11-09 comes after --until 2026-11-01")
    ok = cli(
        "report", "first", "--since", "2026-11-08", "--until", "2026-11-08", "--format", "json"
    )
    assert json.loads(ok.output)["totals"]["counts"]["sent"] == 3


def test_report_of_a_journey_without_a_goal_says_so(cli, two_journeys, db):
    with db.session() as s, s.begin():
        rows: Counter[stats.Key] = Counter()
        rows[(two_journeys["first"], "", "", "", "everyone", "", date(2026, 11, 1), "enrolled")] = 8
        stats.add(s, rows)
    result = cli("report", "first")
    assert result.exit_code == 0, result.output
    assert "goal: none (add goal: to the journey to measure one)" in result.output
    assert "goal: 0 of" not in result.output


def test_flush_with_an_unreachable_redis_is_one_line_and_exit_2(cli):
    from tests.conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # a loopback port nobody listens on
    cli.env["REDIS_URL"] = url
    done = subprocess.run(
        [sys.executable, "-m", "campaigns", "flush"],
        cwd=cli.folder,
        env={k: v for k, v in cli.env.items() if v is not None} | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"campaigns: REDIS_URL: no answer from {url} (Connection refused); is Redis running?\n"
    )


def test_simulating_a_file_that_holds_no_journey_is_one_line(cli):
    assert cli("migrate").exit_code == 0
    done = subprocess.run(
        [sys.executable, "-m", "campaigns", "simulate", "journeys/segments.yaml"],
        cwd=cli.folder,
        env={k: v for k, v in cli.env.items() if v is not None} | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "campaigns: journeys/segments.yaml: holds no journey; name a journey's file or key\n"
    )


def test_tasks_due_week_takes_in_the_seventh_day_in_the_teams_zone(db, cli):
    from datetime import UTC, datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from campaigns.store.enums import TaskStatus
    from campaigns.store.models import Account, Task

    tokyo = ZoneInfo("Asia/Tokyo")
    now = datetime.now(UTC)
    day_eight = datetime.combine(now.astimezone(tokyo).date() + timedelta(days=8), time(0), tokyo)
    with db.session() as s, s.begin():
        account = Account(external_id="ACME", name="株式会社アクメ")
        s.add(account)
        s.flush()
        for title, due in (
            ("in seven days", now + timedelta(days=7, minutes=5)),
            ("a minute before day eight", day_eight - timedelta(minutes=1)),
            ("day eight", day_eight),
            ("early on day seven", day_eight - timedelta(hours=17)),  # 22:00 UTC the day before
        ):
            s.add(
                Task(
                    account_id=account.id,
                    kind="call",
                    title=title,
                    status=TaskStatus.OPEN,
                    due_at=due,
                    created_at=now,
                )
            )
    cli.env.update(DATABASE_URL=db.url, TASK_TIME_ZONE="Asia/Tokyo")
    result = cli("tasks", "--due", "week")
    assert result.exit_code == 0, result.output
    rows = {line.split("  ")[2].strip(): line for line in result.output.splitlines()[2:]}
    assert set(rows) == {"in seven days", "a minute before day eight", "early on day seven"}
    seventh = (day_eight - timedelta(days=1)).date().isoformat()
    assert seventh in rows["early on day seven"]  # the due day as the team reads it, not UTC's
