"""The composition root: one ``build`` makes what every process runs on, from the settings and
a clock; importing a module switches nothing on; a database behind the code is refused."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaigns import config as settings
from campaigns.clock import FakeClock
from campaigns.services import SchemaBehind, build
from campaigns.store.db import head_revision, make_engine, migrate
from campaigns.tracking.hitlog import DirectHitLog

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _config(tmp_path: Path, url: str) -> settings.Config:
    return settings.load(
        {
            "DATABASE_URL": url,
            "MAIL_URL": f"file://{tmp_path / 'outbox'}",
            "SECRET_KEY": "test-secret-kK8dQ2vX9pL4mN7r",
            "BASE_URL": "https://cs.example.com",
        }
    )


def test_build_wires_one_of_each_part_into_the_engine(sqlite_db, tmp_path):
    clock = FakeClock(NOW)
    services = build(_config(tmp_path, sqlite_db.url), clock)
    engine = services.engine
    assert engine.clock is clock and services.clock is clock
    assert engine.renderer is services.renderer and engine.transport is services.transport
    assert engine.journeys is services.journeys  # one cache of parsed journeys per process
    assert engine.rate_limiter is services.rate_limiter is None  # no DOMAIN_RATE_LIMITS
    assert services.renderer.tokens is services.tokens
    assert services.renderer.sender.address == services.config.mail_from.address
    assert isinstance(services.hits, DirectHitLog)  # no REDIS_URL: each hit written at once
    assert services.engine is engine  # built once
    assert engine.settings.global_control == 0  # GLOBAL_CONTROL_PERCENT is off by default
    services.close()
    cfg = dataclasses.replace(services.config, global_control_percent=2.5)
    with_control = build(cfg, clock)
    assert with_control.engine.settings.global_control == 0.025
    with_control.close()


def test_build_refuses_a_database_behind_naming_the_command(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pytest.raises(SchemaBehind) as empty:
        build(_config(tmp_path, url))
    assert str(empty.value) == "the database has no schema yet; run `campaigns migrate`"
    assert not (tmp_path / "old.db").exists()
    database = make_engine(url)
    migrate(database, "0005")
    with pytest.raises(SchemaBehind) as behind:
        build(_config(tmp_path, url))
    assert str(behind.value) == (
        f"the database schema is behind (revision 0005, this release needs {head_revision()});"
        " run `campaigns migrate`"
    )
    migrate(database)
    database.dispose()
    build(_config(tmp_path, url)).close()


def test_a_dry_run_counts_against_no_rate_limit(sqlite_db, tmp_path):
    cfg = settings.load(
        {
            "DATABASE_URL": sqlite_db.url,
            "DOMAIN_RATE_LIMITS": "gmail.com=10/1s",
            "SECRET_KEY": "test-secret-kK8dQ2vX9pL4mN7r",
        }
    )
    assert build(cfg).rate_limiter is not None
    assert build(cfg, dry_run=True).rate_limiter is None


IMPORT_EVERYTHING = """
import importlib, pkgutil
import campaigns
from sqlalchemy.orm import Session
for module in pkgutil.walk_packages(campaigns.__path__, "campaigns."):
    if ".migrations." not in module.name and not module.name.endswith("__main__"):
        importlib.import_module(module.name)
print(len(Session().dispatch.after_flush), len(Session().dispatch.before_flush))
"""


def test_importing_every_module_switches_on_no_session_listener():
    # A fresh interpreter: what importing does, not what earlier tests left behind.
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.split() == ["0", "0"]


def test_the_web_app_and_its_preview_run_on_the_one_set_of_services(sqlite_db, tmp_path):
    from campaigns.channels.transports import RecordingTransport
    from campaigns.web import create_app, previews

    clock, transport = FakeClock(NOW), RecordingTransport()
    cfg = _config(tmp_path, sqlite_db.url)
    app = create_app(
        {"DATABASE_URL": sqlite_db.url, "CAMPAIGNS": cfg, "CLOCK": clock, "TRANSPORT": transport}
    )
    services = app.extensions["campaigns.services"]
    assert services.clock is clock and services.transport is transport
    assert app.extensions["campaigns.tracking"].hits is services.hits
    assert app.extensions["campaigns.sessions"] is services.sessions
    with app.test_request_context():
        assert previews._services() is services  # the preview builds no renderer of its own
    services.close()
