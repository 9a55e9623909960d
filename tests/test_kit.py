"""The test kit itself: each fixture gives what conftest.py promises, and nothing it does
lands in the checkout."""

from __future__ import annotations

import os
import textwrap

from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.models import Account, Contact
from tests.kit import LINKS, START

JOURNEY = textwrap.dedent(
    """\
    journey: hello
    name: Hello
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: hello, email: {template: onboarding_tips, subject: Tips}}
    """
)


def test_the_engine_fixture_sends_into_a_file_outbox_under_tmp_path(db, build_engine, tmp_path):
    with db.session() as s, s.begin():
        account = Account(external_id="A", name="A")
        s.add(account)
        s.flush()
        s.add(Contact(account_id=account.id, email="taro@example.com", name="Taro"))
        deploy(s, parse_journey(JOURNEY, "hello.yaml"), JOURNEY, "hello.yaml")
    engine = build_engine(links=LINKS)
    assert engine.clock.now() == START
    engine.tick()
    [sent] = (tmp_path / "outbox").glob("*.eml")
    assert b"To: Taro <taro@example.com>" in sent.read_bytes()


def test_the_engine_fixture_is_the_kits_defaults(engine, db):
    assert engine.sessions is db.sessions and engine.segments().names == ["everyone"]


def test_the_app_fixture_serves_on_the_test_database(app, db):
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json()["database"] == "ok"
    assert app.config["DATABASE_URL"] == db.url


def test_the_redis_fixture_hands_each_test_an_empty_database(redis_conn, redis_url):
    assert redis_conn.dbsize() == 0
    redis_conn.set("campaigns:test-kit", "left behind")  # the fixture empties it afterwards
    assert redis_url.startswith("redis://")


def test_the_cli_runs_in_its_own_project_folder(cli):
    (cli.folder / "journeys" / "pause.yaml").write_text(
        JOURNEY.replace("hello", "pause").replace(
            "{id: pause, email: {template: onboarding_tips, subject: Tips}}",
            "{id: rest, wait: 1 day}",
        ),
        encoding="utf-8",
    )
    result = cli("validate")
    assert result.exit_code == 0, result.output
    assert "1 journey valid (pause)" in result.output
    assert os.getcwd() == str(cli.folder)
