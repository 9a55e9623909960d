"""``campaigns simulate`` is a dry run: it runs the journey asked for on a private copy of the
state and reaches nothing outside it, neither a webhook receiver, nor the SMTP relay, nor
Redis, nor the real database; and it reports only the journey asked for."""

from __future__ import annotations

import textwrap
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaigns import config as settings
from campaigns.channels.webhook import Call, RecordingWebhook
from campaigns.cli.simulate import simulate
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.services import build
from campaigns.store.models import Account, Base, Contact
from tests.kit import START

ROOT = Path(__file__).resolve().parent.parent


class Listener(BaseHTTPRequestHandler):
    """A webhook receiver that notes every connection and every request, whatever it is."""

    connections = 0
    requests: list[str] = []

    def handle(self) -> None:
        Listener.connections += 1
        super().handle()

    def _note(self) -> None:
        Listener.requests.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.end_headers()

    do_GET = do_POST = do_PUT = _note

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def listener() -> Any:
    Listener.connections, Listener.requests = 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def asked(hook: str) -> str:
    return textwrap.dedent(
        f"""\
        journey: renewal_hooks
        name: Renewal hooks
        segments: [everyone]
        entry: {{trigger: segment}}
        steps:
          - id: welcome
            email: {{template: onboarding_welcome, subject: "Welcome, {{{{ contact.name }}}}"}}
          - id: settle
            wait: 1 day
          - id: tell_crm
            webhook: {{url: "{hook}", payload: {{account: "{{{{ account.external_id }}}}"}}}}
          - id: follow_up
            email: {{template: onboarding_welcome, subject: "Still with us?"}}
        """
    )


def other(hook: str) -> str:
    """Another journey, with enrollments already under way: it must neither run nor show."""
    return textwrap.dedent(
        f"""\
        journey: other_nudge
        name: Other nudge
        segments: [everyone]
        entry: {{trigger: segment}}
        steps:
          - id: other_hello
            email: {{template: onboarding_welcome, subject: "Hello"}}
          - id: other_wait
            wait: 1 day
          - id: other_hook
            webhook: {{url: "{hook}", payload: {{ping: 1}}}}
          - id: other_again
            email: {{template: onboarding_welcome, subject: "Hello again"}}
        """
    )


def seed(db: Any) -> None:
    with db.session() as s, s.begin():
        for i, (name, locale) in enumerate([("山田 太郎", "ja"), ("Pat Lee", "en")]):
            account = Account(
                external_id=f"A{i}", name=f"Account {i}", arr=Decimal(1_000_000), currency="JPY"
            )
            s.add(account)
            s.flush()
            s.add(
                Contact(account_id=account.id, email=f"c{i}@example.com", name=name, locale=locale)
            )


def deploy_text(db: Any, text: str) -> None:
    with db.session() as s, s.begin():
        deploy(s, parse_journey(text, "j.yaml"), text, "j.yaml")


def snapshot(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order: what "the real database is unchanged" means."""
    with db.engine.connect() as conn:
        return {
            table.name: [
                tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key))
            ]
            for table in Base.metadata.sorted_tables
        }


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_simulate_reaches_no_webhook_smtp_redis_or_real_row_and_shows_only_its_journey(
    db, cli, listener, smtp_sink, redis_conn, redis_url, build_engine, clock
):
    seed(db)
    deploy_text(db, other(listener))
    clock.set(START - timedelta(hours=1))
    build_engine().tick()  # the other journey is under way: its webhook is due in a day
    deploy_text(db, asked(listener))
    redis_conn.set("marker", "1")
    cli.env.update(
        DATABASE_URL=db.url,
        REDIS_URL=redis_url,
        MAIL_URL=smtp_sink.url,
        DOMAIN_RATE_LIMITS="*=1000/60s",  # counted in Redis by a real run
        CAMPAIGNS_TEMPLATES=str(ROOT / "templates"),
    )
    before, folder = snapshot(db), files(cli.folder)

    result = cli("simulate", "renewal_hooks", "--days", "3", "--start", "2026-11-24T01:00")

    assert result.exit_code == 0, result.output
    assert (Listener.connections, Listener.requests) == (0, [])
    assert smtp_sink.messages == []
    assert redis_conn.keys("*") == [b"marker"]
    assert snapshot(db) == before
    assert files(cli.folder) == folder
    shown = result.output
    assert "Simulating renewal_hooks" in shown
    for step in ("welcome (email)", "tell_crm (webhook)", "follow_up (email)"):
        assert step in shown, shown
    assert listener in shown  # the webhook's row names the URL it would have posted to
    assert "other_" not in shown, shown


def test_simulating_a_journey_file_deploys_it_only_into_the_copy(
    db, listener, smtp_sink, redis_conn, redis_url, tmp_path
):
    seed(db)
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "segments.yaml").write_text(
        "tiers:\n  everyone: {when: true}\n", encoding="utf-8"
    )
    path = tmp_path / "journeys" / "renewal_hooks.yaml"
    path.write_text(asked(listener), encoding="utf-8")
    cfg = settings.load(
        {
            "DATABASE_URL": db.url,
            "REDIS_URL": redis_url,
            "MAIL_URL": smtp_sink.url,
            "CAMPAIGNS_JOURNEYS": str(tmp_path / "journeys"),
            "CAMPAIGNS_TEMPLATES": str(ROOT / "templates"),
        }
    )
    before = snapshot(db)

    report = simulate(cfg, str(path), 2, START)

    taken = {label: n for day in report.days for label, n in day.steps.items()}
    assert taken == {"welcome (email)": 2, "tell_crm (webhook)": 2, "follow_up (email)": 2}
    assert report.segments == {"everyone": 2}
    assert (Listener.connections, smtp_sink.messages, redis_conn.keys("*")) == (0, [], [])
    assert snapshot(db) == before  # no journey, no version, no enrollment left behind


def test_a_dry_run_builds_recording_stand_ins_and_no_redis_client(sqlite_db, tmp_path):
    cfg = settings.load(
        {
            "DATABASE_URL": sqlite_db.url,
            "REDIS_URL": "redis://127.0.0.1:1/0",  # parsed only: nothing may connect
            "MAIL_URL": "smtp://relay.invalid:587",
            "DOMAIN_RATE_LIMITS": "*=1/60s",
            "CAMPAIGNS_TEMPLATES": str(ROOT / "templates"),
        }
    )
    services = build(cfg, sessions=sqlite_db.sessions, dry_run=True)
    try:
        assert services.redis is None
        assert type(services.transport).__name__ == "RecordingTransport"
        webhook = services.engine.channels.webhook
        assert isinstance(webhook, RecordingWebhook)
        assert webhook.push(Call("http://127.0.0.1:1/never", b"{}")).status == "sent"
        assert webhook.calls == [Call("http://127.0.0.1:1/never", b"{}")]
        assert services.rate_limiter is None  # no counts, in Redis or anywhere
        assert type(services.hits).__name__ == "DirectHitLog"  # into the sessions' database
    finally:
        services.close()
    with pytest.raises(ValueError, match="no dispatch"):
        build(cfg, sessions=sqlite_db.sessions, dry_run=True, dispatch=lambda n: n)
