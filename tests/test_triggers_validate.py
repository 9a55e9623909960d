"""A broken ``journeys/triggers.yaml`` is reported by ``campaigns validate`` as
``path:line:col: message (hint)``, every problem at once; the shipped file is valid; a tick
with a broken file still escalates and sends digests. ``campaigns users set`` sets a user's
task mail, escalation address and team, and refuses garbage in one line."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.exceptions import JourneyError
from campaigns.journeys.segments import load_segments
from campaigns.journeys.triggers import load_triggers, parse_triggers

ROOT = Path(__file__).resolve().parent.parent

GARBAGE = textwrap.dedent(
    """\
    escalation:
      default: not-an-address
      teams: [enterprise]
    triggers:
      health_red:
        on: {helth: red}
        when: tierr == 'high_touch'
        priority: urgnt
        title: "Call {{ account.name | nope }}"
      usage_drop:
        on: {usage: active_users, drop: 130%, days: 0}
        due: 3 parsecs
        title: x
      Bad-Name: {on: {event: x}, title: y}
    """
)


def test_garbage_triggers_yaml_reports_every_problem_at_its_line_and_column(cli):
    (cli.folder / "journeys" / "triggers.yaml").write_text(GARBAGE, encoding="utf-8")
    result = cli("validate")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "triggers.yaml:" in line]
    where = [line.split(": ", 1)[0].rsplit("triggers.yaml:", 1)[1] for line in lines]
    assert where == [
        "2:12",  # the default address
        "3:10",  # teams: a list
        "6:10",  # helth
        "7:11",  # tierr
        "8:15",  # urgnt
        "9:36",  # the filter nope
        "11:37",  # 130%
        "11:49",  # days: 0
        "12:10",  # parsecs
        "14:3",  # Bad-Name
    ]
    text = "\n".join(lines)
    assert "unknown key 'helth' in 'on' (did you mean 'health'?)" in text
    assert "unknown field 'tierr' (did you mean 'tier'?)" in text
    assert "unknown priority 'urgnt' (did you mean 'urgent'?)" in text
    assert "bad due: unknown unit 'parsecs'" in text and "business days" in text
    assert "bad trigger name 'Bad-Name'" in text


def test_the_shipped_triggers_file_is_valid_against_the_shipped_segments():
    segments = load_segments(ROOT / "journeys" / "segments.yaml")
    found = load_triggers(ROOT / "journeys" / "triggers.yaml", segments)
    assert [t.key for t in found.triggers] == ["health_red", "detractor", "usage_drop"]
    assert {t.key: t.priority for t in found.triggers} == {
        "health_red": "urgent",
        "detractor": "high",
        "usage_drop": "normal",
    }
    assert found.escalation.default and found.fallback_owner


def test_validate_passes_the_shipped_project(cli):
    shutil.copy(ROOT / "journeys" / "segments.yaml", cli.folder / "journeys" / "segments.yaml")
    shutil.copy(ROOT / "journeys" / "triggers.yaml", cli.folder / "journeys" / "triggers.yaml")
    result = cli("validate")
    assert result.exit_code == 0, result.output


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_triggers_or_problems_with_places(text):
    try:
        parse_triggers(text, "triggers.yaml")
    except JourneyError as exc:
        assert exc.problems
        assert all(p.line >= 1 and p.col >= 1 and p.path == "triggers.yaml" for p in exc.problems)


@pytest.fixture
def with_user(cli):
    assert cli("migrate").exit_code == 0
    result = cli("user", "add", "dana@example.com", "--password-stdin", input="correct horse!\n")
    assert result.exit_code == 0, result.output
    return cli


def test_users_set_changes_task_mail_escalation_and_team(with_user):
    cli = with_user
    result = cli(
        "users",
        "set",
        "Dana@Example.com",
        "--task-mail",
        "digest",
        "--escalate-to",
        "Boss@Example.com",
        "--team",
        "enterprise",
    )
    assert result.exit_code == 0, result.output
    assert "task mail digest, escalates to boss@example.com, team enterprise" in result.output
    listing = cli("user", "list").output
    assert "digest" in listing and "boss@example.com" in listing and "enterprise" in listing
    cleared = cli("users", "set", "dana@example.com", "--escalate-to", "", "--task-mail", "each")
    assert "escalates to (team or default)" in cleared.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task-mail", "weekly"], "Invalid value for '--task-mail'"),
        (["--escalate-to", "nobody"], "not an email address"),
        (["--escalate-to", "dana@example.com"], "cannot escalate to themselves"),
        (["--team", "Sales Team!"], "bad team"),
        ([], "nothing to set"),
    ],
)
def test_users_set_refuses_garbage_in_one_line(with_user, args, message):
    result = with_user("users", "set", "dana@example.com", *args)
    assert result.exit_code != 0
    said(result, message)


def said(result, message: str) -> None:
    """The command's one line: printed (click's own checks), or the user error the console
    script prints as ``campaigns: ...`` (campaigns.cli.main), never anything else."""
    from campaigns.exceptions import CampaignsError

    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert isinstance(result.exception, CampaignsError), result.exception
        assert message in str(result.exception)
    else:
        assert message in result.output


def test_users_set_an_unknown_user_is_one_line(with_user):
    result = with_user("users", "set", "nobody@example.com", "--task-mail", "digest")
    assert result.exit_code != 0
    said(result, "no user with email nobody@example.com")
