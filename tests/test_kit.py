"""The test kit itself: each fixture gives what conftest.py promises, and nothing it does
lands in the checkout."""

from __future__ import annotations

import os
import re
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


# ---------------------------------------------------------------------------- what the kit keeps


SHARED_REDIS = re.compile(
    r"redis://(?:127\.0\.0\.1|localhost|\[::1\])(?::6379)?/(\d+)"  # the shared server's dbs
    r"|redis-cli\b[^\n]*\s-n\s*(\d+)"
    r"|\bRedis\([^)\n]*\bdb\s*=\s*(\d+)"
)
"""A Redis database of the shared server named in code: a URL on its port, ``redis-cli -n``
or ``Redis(db=...)``. Tests (and benchmarks and CI) use ``TEST_REDIS_URL``'s database only;
a private server on a port of its own (tests/cluster.py) may use any."""


def redis_databases_named(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each line naming a database of the shared Redis server other
    than as the fallback of ``TEST_REDIS_URL``."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if SHARED_REDIS.search(line) and "TEST_REDIS_URL" not in line
    ]


def test_the_redis_scan_finds_a_hard_coded_database():
    sample = 'REDIS = "redis://127.0.0.1:6379' + '/13"'  # in two parts: not itself a find
    assert redis_databases_named(sample + "\n") == [(1, sample)]
    assert redis_databases_named("conn = Redis(host='x', db=13)\nredis-cli -n 13 flushdb\n") == [
        (1, "conn = Redis(host='x', db=13)"),
        (2, "redis-cli -n 13 flushdb"),
    ]
    fallback = 'URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")'
    private = 'f"redis://127.0.0.1:{self.port}/0"'
    assert redis_databases_named(f"{fallback}\n{private}\n") == []


def test_no_test_benchmark_or_ci_script_names_a_database_of_the_shared_redis(project_root):
    files = [
        *(project_root / "tests").rglob("*.py"),
        *(project_root / "bench").rglob("*.py"),
        *(p for p in (project_root / ".ci").iterdir() if p.is_file()),
        project_root / "Makefile",
    ]
    found = {
        str(path.relative_to(project_root)): named
        for path in files
        if path.name != "test_kit.py"  # this file's own examples
        and (named := redis_databases_named(path.read_text(encoding="utf-8")))
    }
    assert found == {}, "use TEST_REDIS_URL (the redis_conn and redis_url fixtures)"


def test_the_app_fixture_sends_into_an_outbox_under_tmp_path(app, tmp_path):
    # The default MAIL_URL (file:///./outbox) is the working folder's: the checkout's.
    assert app.config["CAMPAIGNS"].mail_url == f"file://{tmp_path / 'outbox'}"
