"""``campaigns journey pause|resume|archive|live|remove``, ``campaigns deploy --draft`` and
``campaigns audit``, on the test database (SQLite and PostgreSQL): each change is said in one
line and recorded in the audit log; a bad request exits 2 with one line on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select

from campaigns.store.audit import cli_actor
from campaigns.store.enums import EnrollmentState, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, Message
from campaigns.store.models import Journey as JourneyRow

JOURNEY = textwrap.dedent(
    """\
    journey: hello
    name: こんにちは
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: hi, email: {template: onboarding_tips, subject: "{{ contact.name }}さん、こんにちは"}}
      - {id: rest, wait: 2 days}
      - {id: again, email: {template: onboarding_tips, subject: Again}}
    """
)


@pytest.fixture
def project(cli, db, project_root):
    """The CLI on the test database, with the shipped templates, one journey file and two
    contacts at one account."""
    cli.env["DATABASE_URL"] = db.url
    cli.env["CAMPAIGNS_TEMPLATES"] = str(project_root / "templates")
    (cli.folder / "journeys" / "hello.yaml").write_text(JOURNEY, encoding="utf-8")
    with db.session() as s, s.begin():
        account = Account(external_id="ACME-1", name="株式会社アクメ")
        s.add(account)
        s.flush()
        s.add(Contact(account_id=account.id, email="taro@example.co.jp", name="太郎"))
        s.add(Contact(account_id=account.id, email="hanako@example.co.jp", name="花子"))
    return cli


def run(cli, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m campaigns`` in the CLI's folder with its environment: the real exit
    status and stderr."""
    env = {k: v for k, v in os.environ.items() if k not in cli.env}
    env.update({k: v for k, v in cli.env.items() if v is not None})
    return subprocess.run(
        [sys.executable, "-m", "campaigns", *args],
        cwd=cli.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(cli, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return str(result.output)


def test_draft_live_pause_resume_remove_archive_from_the_command_line(project, db):
    assert ok(project, "deploy", "--draft").strip() == "hello: version 1 (new version, draft)"
    ok(project, "tick")
    with db.session() as s:
        assert s.scalars(select(Enrollment)).all() == []  # a draft runs nothing
    assert ok(project, "journey", "live", "hello").strip() == "hello: live (draft -> live)"
    ok(project, "tick")
    assert ok(project, "journey", "pause", "hello").strip() == "hello: paused (live -> paused)"
    with db.session() as s:
        assert s.scalars(select(JourneyRow.status)).one() == "paused"
    assert ok(project, "journey", "resume", "hello").strip() == "hello: resumed (paused -> live)"
    removed = ok(project, "journey", "remove", "hello", "--contact", "taro@example.co.jp")
    assert removed.strip() == (
        "hello: contact taro@example.co.jp taken out (1 enrollment ended,"
        " 0 unsent messages withdrawn)"
    )
    archived = ok(project, "journey", "archive", "hello").splitlines()
    assert archived == [
        "hello: archived (live -> archived)",
        "1 enrollment ended, 0 unsent messages withdrawn",
    ]
    with db.session() as s:
        ends = dict(
            s.execute(
                select(Contact.email, Enrollment.exit_reason).join(
                    Contact, Contact.id == Enrollment.contact_id
                )
            ).all()
        )
        assert ends == {
            "taro@example.co.jp": f"removed by {cli_actor()}",
            "hanako@example.co.jp": "archived",
        }
        assert {e.state for e in s.scalars(select(Enrollment))} == {EnrollmentState.EXITED}
        assert set(s.scalars(select(Message.status))) == {MessageStatus.SENT}
    log = json.loads(ok(project, "audit", "--journey", "hello", "--json"))
    assert [e["action"] for e in log] == [
        "archive",
        "remove",
        "resume",
        "pause",
        "live",
        "draft",
        "deploy",
    ]
    assert {e["actor"] for e in log} == {cli_actor()} and log[1]["detail"]["ended"] == 1
    assert len(json.loads(ok(project, "audit", "--limit", "2", "--json"))) == 2
    table = ok(project, "audit").splitlines()
    assert table[0].split() == ["at", "actor", "action", "target", "detail"]
    assert "archive" in table[2] and "hello" in table[2]


def test_deploy_records_each_deploy_in_the_audit_log(project):
    ok(project, "deploy")
    ok(project, "deploy")  # unchanged: recorded too, as not created
    log = json.loads(ok(project, "audit", "--json"))
    assert [(e["action"], e["detail"]["version"], e["detail"]["created"]) for e in log] == [
        ("deploy", 1, False),
        ("deploy", 1, True),
    ]


def test_remove_an_account_by_its_external_id(project, db):
    ok(project, "deploy")
    ok(project, "tick")
    out = ok(project, "journey", "remove", "hello", "--account", "ACME-1")
    assert out.startswith("hello: account ACME-1 taken out (2 enrollments ended")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("journey", "pause", "nope"), "campaigns: no journey 'nope' is deployed"),
        (
            ("journey", "resume", "hello"),
            "campaigns: journey hello: cannot resume (it is live already)",
        ),
        (
            ("journey", "remove", "hello"),
            "campaigns: journey remove: give --contact EMAIL or --account EXTERNAL_ID",
        ),
        (
            ("journey", "remove", "hello", "--contact", "nobody@example.com"),
            "campaigns: no contact with the email 'nobody@example.com'",
        ),
        (
            ("journey", "remove", "hello", "--account", "NOPE"),
            "campaigns: no account with the external id 'NOPE'",
        ),
        (("audit", "--journey", "nope"), "campaigns: no journey 'nope' is deployed"),
    ],
)
def test_a_bad_request_exits_2_with_one_line(project, args, line):
    ok(project, "deploy")
    result = run(project, *args)
    assert (result.returncode, result.stderr.strip()) == (2, line)


def test_a_bad_limit_is_a_usage_error(project):
    result = run(project, "audit", "--limit", "0")
    assert result.returncode == 2 and "--limit" in result.stderr
