"""The command line as a user meets it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.cli import main

SEGMENTS = "tiers:\n  low_touch: {when: arr >= 1000000}\n  tech_touch: {when: true}\n"
JOURNEY = textwrap.dedent(
    """\
    journey: pause
    name: A pause
    segments: [low_touch]
    entry: {trigger: segment}
    steps:
      - {id: rest, wait: 1 day}
    """
)


@pytest.fixture
def fresh_workdir(tmp_path: Path) -> Path:
    """A project folder whose database (the default SQLite file) does not exist yet."""
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates" / "en").mkdir(parents=True)
    (tmp_path / "journeys" / "segments.yaml").write_text(SEGMENTS, encoding="utf-8")
    (tmp_path / "journeys" / "pause.yaml").write_text(JOURNEY, encoding="utf-8")
    return tmp_path


@pytest.fixture
def workdir(fresh_workdir: Path) -> Path:
    """A project folder with its database migrated, as `campaigns migrate` leaves it."""
    from campaigns.store.db import make_engine, migrate

    database = make_engine(f"sqlite:///{fresh_workdir / 'campaigns.db'}")
    migrate(database)
    database.dispose()
    return fresh_workdir


def run(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "MAIL_URL", "SECRET_KEY", "MAIL_FROM")
    }
    environ.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "campaigns", *args],
        cwd=workdir,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_validate_passes_a_good_folder(workdir):
    result = run(workdir, "validate")
    assert result.returncode == 0, result.stderr
    assert "1 journey valid (pause)" in result.stdout


def test_validate_prints_every_problem_as_path_line_col_and_exits_1(workdir):
    bad = workdir / "journeys" / "bad.yaml"
    bad.write_text(
        JOURNEY.replace("pause", "bad")
        .replace("1 day", "1 dya")
        .replace("[low_touch]", "[low_tuch]"),
        encoding="utf-8",
    )
    result = run(workdir, "validate", "journeys/bad.yaml")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        lines[0] == "journeys/bad.yaml:3:12: unknown segment 'low_tuch' (did you mean 'low_touch'?)"
    )
    assert lines[1].startswith("journeys/bad.yaml:6:22: bad wait: unknown unit 'dya'")
    assert lines[-1] == "2 problems found"


def test_validate_a_missing_path_is_one_line(workdir):
    result = run(workdir, "validate", "nope.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == "campaigns: nope.yaml: no such file or folder"


def test_bad_configuration_values_are_one_line_errors(workdir):
    result = run(workdir, "segments", DATABASE_URL="mysql://root@localhost/x")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("campaigns: DATABASE_URL: unsupported scheme 'mysql'")
    result = run(workdir, "segments", SECRET_KEY="short")
    assert result.returncode == 2 and "SECRET_KEY: too short" in result.stderr
    result = run(workdir, "segments", MAIL_URL="carrier-pigeon://x")
    assert result.returncode == 2 and "MAIL_URL" in result.stderr
    result = run(workdir, "segments", GLOBAL_CONTROL_PERCENT="75")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "campaigns: GLOBAL_CONTROL_PERCENT: '75' is not a percentage from 0 to 50 (e.g. 5 or"
        " 2.5); 0 turns the global control group off"
    ]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "MAIL_FROM",
            "Customer \rBcc: v@x.org <cs@example.com>",
            "MAIL_FROM: contains the control character '\\r'",
        ),
        ("MAIL_FROM", "@", "MAIL_FROM: not an address: '@'"),
        ("MAIL_FROM", "cs@localhost.", "MAIL_FROM: not an address"),
        ("SECRET_KEY", " " * 20, "SECRET_KEY: only whitespace"),
        ("SECRET_KEY", "x" * 32, "SECRET_KEY: only 1 different characters"),
        ("DATABASE_URL", "postgresql://", "DATABASE_URL: no host in 'postgresql://'"),
        ("DATABASE_URL", "postgresql://db.internal", "DATABASE_URL: no database name"),
        ("DATABASE_URL", "sqlite://", "DATABASE_URL: an in-memory SQLite database is not shared"),
        (
            "DATABASE_URL",
            "postgresql://u:hunter2@h:port/db",
            "DATABASE_URL: cannot parse 'postgresql://u:***@h:port/db'",
        ),
        (
            "REDIS_URL",
            "redis://127.0.0.1:notaport/0",
            "REDIS_URL: Port could not be cast to integer",
        ),
    ],
)
def test_campaigns_tick_with_a_bad_setting_is_one_line_and_exit_2(
    workdir, variable, value, message
):
    result = run(workdir, "tick", **{variable: value})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("campaigns: " + message), (
        result.stderr
    )
    assert "hunter2" not in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("command", [["run", "--port", "1"], ["flush"]])
def test_commands_that_need_redis_stop_in_one_line_when_it_does_not_answer(fresh_workdir, command):
    workdir = fresh_workdir
    from conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # a loopback port nothing listens on
    result = run(workdir, *command, REDIS_URL=url)
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr
        == f"campaigns: REDIS_URL: no answer from {url} (Connection refused); is Redis running?\n"
    )
    assert not (workdir / "campaigns.db").exists()  # checked before anything starts


def test_an_unreachable_database_is_one_line(workdir):
    result = run(workdir, "segments", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    assert (
        result.stderr.startswith("campaigns: database error:")
        and len(result.stderr.strip().splitlines()) == 1
    )


def test_segments_counts_and_applies_tiers(workdir):
    result = run(workdir, "segments", "--apply", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert '"name": "low_touch"' in result.stdout
    assert "tiers stored: 0 accounts changed tier" in result.stdout


def test_deploy_makes_a_version_per_changed_text(workdir):
    first = run(workdir, "deploy")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "pause: version 1 (new version)"
    assert run(workdir, "deploy").stdout.strip() == "pause: version 1 (unchanged)"
    (workdir / "journeys" / "pause.yaml").write_text(
        JOURNEY.replace("1 day", "2 days"), encoding="utf-8"
    )
    assert run(workdir, "deploy").stdout.strip() == "pause: version 2 (new version)"
    (workdir / "journeys" / "pause.yaml").write_text(JOURNEY, encoding="utf-8")
    assert run(workdir, "deploy").stdout.strip() == "pause: version 1 (unchanged)"


def test_deploy_refuses_invalid_journeys_and_writes_nothing(workdir):
    (workdir / "journeys" / "pause.yaml").write_text(
        JOURNEY.replace("wait: 1 day", "wait: soon"), encoding="utf-8"
    )
    result = run(workdir, "deploy")
    assert result.returncode == 1
    assert "nothing deployed" in result.stderr
    assert "pause.yaml:6:22: bad wait" in result.stderr


ARGS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "validate",
                "import",
                "segments",
                "deploy",
                "accounts",
                "contacts",
                "--strict",
                "--apply",
                "--format",
                "xml",
                "--date",
                "2026-02-30",
                "--encoding",
                "nope",
                "-h",
                "journeys",
                "journeys/pause.yaml",
                "missing.csv",
                "--accounts",
                "-5",
            ]
        ),
        st.text(max_size=10),
    ),
    max_size=5,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argv=ARGS)
def test_garbage_arguments_never_raise(workdir, monkeypatch, capsys, argv):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{workdir / 'fuzz.db'}")
    if argv[:1] == ["demo"]:
        return
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (None, 0, 1, 2), (argv, exc.code, capsys.readouterr().err)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "\x00"],
        ["validate", "journeys/a\x00b.yaml"],
        ["deploy", "\x00"],
        ["import", "contacts", "a\x00.csv"],
        ["account", "\x00"],
        ["report", "x\x00"],
        ["validate", ""],
        ["import", "contacts", ""],
    ],
)
def test_a_nul_byte_or_an_empty_path_is_a_usage_error(workdir, monkeypatch, capsys, argv):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{workdir / 'nul.db'}")
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "internal error" not in err and "Traceback" not in err
    assert "NUL byte" in err or "empty file name" in err


@pytest.mark.parametrize(
    "flags", [["--by", "segment"], ["--since", "2026-01-01"], ["--until", "2026-12-31"]]
)
def test_report_flags_without_a_journey_are_refused_not_ignored(workdir, flags):
    result = run(workdir, "report", *flags)
    assert result.returncode == 2, result.stderr
    assert f"{flags[0]} need a JOURNEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert run(workdir, "report", "--format", "json").returncode == 0  # the overview still works


def test_validate_compiles_the_templates_a_journey_names(workdir):
    (workdir / "templates" / "en" / "hello.mjml").write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ contact.name "
        "</mj-text></mj-column></mj-section></mj-body></mjml>\n",
        encoding="utf-8",
    )
    (workdir / "templates" / "en" / "hello.txt").write_text("Hi\n", encoding="utf-8")
    (workdir / "journeys" / "pause.yaml").write_text(
        JOURNEY.replace(
            "- {id: rest, wait: 1 day}", "- {id: hi, email: {template: hello, subject: Hi}}"
        ),
        encoding="utf-8",
    )
    result = run(workdir, "validate")
    assert result.returncode == 1
    assert result.stderr.startswith("templates/en/hello.mjml:1:1: ")


def test_validate_reports_a_broken_links_file(workdir):
    (workdir / "templates" / "links.yaml").write_text("docs: [not, a, url]\n", encoding="utf-8")
    result = run(workdir, "validate")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "templates/links.yaml:1:1: write one 'name: https://...' per line"
    )


def test_tick_with_redis_gone_says_so_in_one_line_and_fails_no_enrollment(tmp_path):
    """The domain rate limits count in Redis; with Redis away a tick stops in one line, and
    the enrollments it had claimed stay as they were for the next tick."""
    from sqlalchemy import select

    from campaigns.store.db import make_engine, make_sessionmaker, migrate
    from campaigns.store.enums import EnrollmentState, MessageStatus
    from campaigns.store.models import Enrollment, Message
    from tests.cluster import SEGMENTS as EVERYONE
    from tests.cluster import free_port, seed

    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "segments.yaml").write_text(EVERYONE, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    database = make_engine(url)
    migrate(database)
    seed(make_sessionmaker(database), 3)
    result = run(
        tmp_path,
        "tick",
        DATABASE_URL=url,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        DOMAIN_RATE_LIMITS="*=100/60s",
        MAIL_URL=f"file://{tmp_path / 'outbox'}",
        CAMPAIGNS_TEMPLATES=str(Path(__file__).resolve().parent.parent / "templates"),
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("campaigns: Redis error:")
        and "Traceback" not in result.stderr
    )
    with make_sessionmaker(database)() as s:
        assert set(s.scalars(select(Enrollment.state))) == {EnrollmentState.ACTIVE}
        assert MessageStatus.SENT not in set(s.scalars(select(Message.status)))
    assert not list((tmp_path / "outbox").glob("*.eml"))
    database.dispose()


# ---------------------------------------------------------------------------- migrations by command


def test_migrate_makes_the_schema_in_one_line_and_says_so_again_when_up_to_date(fresh_workdir):
    from campaigns.store.db import head_revision

    first = run(fresh_workdir, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"database sqlite:///campaigns.db: migrated from an empty database to {head_revision()}"
    ]
    again = run(fresh_workdir, "migrate")
    assert again.stdout.splitlines() == [
        f"database sqlite:///campaigns.db: up to date (revision {head_revision()})"
    ]
    assert run(fresh_workdir, "migrate", "--check").returncode == 0


def test_migrate_check_changes_nothing_and_exits_1_when_behind(fresh_workdir):
    result = run(fresh_workdir, "migrate", "--check")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "campaigns: the database has no schema yet; run `campaigns migrate`"
    ]
    assert run(fresh_workdir, "migrate", "--check").returncode == 1  # still behind


def test_migrate_help_names_the_check(fresh_workdir):
    result = run(fresh_workdir, "migrate", "--help")
    assert result.returncode == 0
    assert "--check" in result.stdout and "newest migration" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["segments"],
        ["deploy"],
        ["tick"],
        ["simulate", "pause"],
        ["report"],
        ["tasks"],
        ["user", "list"],
        ["import", "accounts", "journeys/segments.yaml"],
    ],
)
def test_commands_refuse_a_database_behind_with_one_line_naming_migrate(fresh_workdir, command):
    result = run(fresh_workdir, *command)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "campaigns: the database has no schema yet; run `campaigns migrate`"
    ]


def test_commands_refuse_a_database_one_migration_behind(workdir):
    from campaigns.store.db import head_revision, make_engine, migrate

    database = make_engine(f"sqlite:///{workdir / 'old.db'}")
    migrate(database, "0005")
    database.dispose()
    result = run(workdir, "segments", DATABASE_URL=f"sqlite:///{workdir / 'old.db'}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "campaigns: the database schema is behind (revision 0005, this release needs "
        f"{head_revision()}); run `campaigns migrate`"
    ]
    migrated = run(workdir, "migrate", DATABASE_URL=f"sqlite:///{workdir / 'old.db'}")
    assert f"migrated from 0005 to {head_revision()}" in migrated.stdout
    later = run(workdir, "segments", DATABASE_URL=f"sqlite:///{workdir / 'old.db'}")
    assert later.returncode == 0, later.stderr


def test_every_command_is_in_the_readmes_table(project_root):
    from campaigns.cli import cli

    readme = (project_root / "README.md").read_text(encoding="utf-8")
    assert set(cli.commands) == {
        *("validate", "import", "segments", "deploy", "tick", "simulate", "report", "user"),
        *("tasks", "flush", "run", "demo", "migrate", "users", "health", "account"),
        *("journey", "audit"),
        *("enrollments", "inbound", "consent", "events", "contact"),
    }
    for name in sorted(cli.commands):
        assert f"| `campaigns {name}" in readme, name
