"""The thin entry points: the web app factory and the worker, over real services."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from conftest import free_port
from rq import Queue, SimpleWorker

from campaigns.queue import ping


def _migrated(url: str) -> str:
    """``url``'s database, as ``campaigns migrate`` leaves it."""
    from campaigns.store.db import make_engine, migrate

    database = make_engine(url)
    migrate(database)
    database.dispose()
    return url


def test_healthz_reports_the_database(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", _migrated(f"sqlite:///{tmp_path / 'web.db'}"))
    from campaigns.web import create_app

    client = create_app({"TESTING": True}).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}
    assert client.get("/no-such-page").status_code == 404


def test_a_worker_runs_jobs_from_the_projects_queue_on_real_redis(redis_conn):
    name = f"campaigns-test-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, connection=redis_conn)
    job = queue.enqueue(ping, "こんにちは")
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    job.refresh()
    assert job.is_finished and job.return_value() == "こんにちは"
    queue.delete(delete_jobs=True)


def test_worker_refuses_to_start_without_redis_url(project_root):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "worker.py"],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "REDIS_URL is unset" in result.stderr and "Traceback" not in result.stderr


def _environ(**env: str) -> dict[str, str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "MAIL_URL", "SECRET_KEY", "MAIL_FROM")
    }
    return {**environ, **env}


def _dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # a loopback port nothing listens on


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({}, "REDIS_URL: no answer from {url}/0 (Connection refused); is Redis running?"),
        (
            {"REDIS_URL": "redis://127.0.0.1:notaport/0"},
            "REDIS_URL: Port could not be cast to integer value as 'notaport'",
        ),
        ({"REDIS_URL": "{url}/zero"}, "REDIS_URL: the database in '{url}/zero' is not a number"),
        (
            {"REDIS_URL": "http://127.0.0.1:6379"},
            "REDIS_URL: expected a URL starting with redis://",
        ),
        ({"MAIL_FROM": "@"}, "MAIL_FROM: not an address: '@'"),
        ({"SECRET_KEY": " " * 20}, "SECRET_KEY: only whitespace"),
        ({"DATABASE_URL": "postgresql://"}, "DATABASE_URL: no host in 'postgresql://'"),
    ],
)
def test_worker_py_with_a_bad_setting_is_one_line_and_exit_2(
    project_root, tmp_path, setting, message
):
    # REDIS_URL points at a port nothing listens on, and all but the first case run --burst
    # (no scheduler or flusher children): should a check regress, the worker fails or stops
    # at once instead of serving, and no child outlives the test.
    url = _dead_redis_url().removesuffix("/0")
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "REDIS_URL": f"{url}/0",
        **{k: v.format(url=url) for k, v in setting.items()},
    }
    flags = ["--burst"] if setting else []
    result = subprocess.run(
        [sys.executable, "worker.py", *flags],
        cwd=project_root,
        env=_environ(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "worker: " + message.format(url=url)
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_web_py_under_flask_with_a_bad_setting_is_one_line_and_exit_2(project_root, tmp_path):
    env = _environ(
        MAIL_FROM="Customer \rBcc: v@x.org <cs@example.com>",
        DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}",
    )
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "web", "run", "--port", str(free_port())],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr
        == "web: MAIL_FROM: contains the control character '\\r'; write one line, e.g. 'Customer "
        "Success <cs@example.com>'\n"
    )


def test_web_py_under_flask_with_an_unreachable_database_is_one_line(project_root):
    env = _environ(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "web", "run", "--port", str(free_port())],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("web: database error: "), (
        result.stderr
    )


def test_web_py_under_gunicorn_without_redis_stops_the_server_in_one_line(project_root, tmp_path):
    """A worker that cannot start exits 4, gunicorn's "App failed to load": the master stops
    (any other status and it would start the worker again, forever); no traceback."""
    url = _dead_redis_url()
    env = _environ(REDIS_URL=url, DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--no-control-socket",
        "web:app",
    ]
    result = subprocess.run(
        command, cwd=project_root, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 4, result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("web: ")]
    assert ours == [f"web: REDIS_URL: no answer from {url} (Connection refused); is Redis running?"]
    assert "Traceback" not in result.stderr and "App failed to load" in result.stderr


def test_worker_py_runs_every_job_in_its_own_process_so_the_engine_is_built_once(
    project_root, tmp_path, redis_conn, redis_url
):
    """``python worker.py`` uses RQ's SimpleWorker: jobs share the process (and its engine,
    pool and SMTP connection); ``--fork`` gives each job a child process of its own."""
    from campaigns.queue import QUEUE_NAMES

    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": _migrated(f"sqlite:///{tmp_path / 'w.db'}"),
    }
    for flags, same in (([], True), (["--fork"], False)):
        redis_conn.flushdb()
        queue = Queue(QUEUE_NAMES[1], connection=redis_conn)
        jobs = [queue.enqueue(os.getpid) for _ in range(2)]
        worker = subprocess.Popen(
            [sys.executable, "worker.py", "--burst", "--no-cron", *flags],
            cwd=project_root,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        pids = {job.fetch(job.id, connection=redis_conn).return_value() for job in jobs}
        assert (pids == {worker.pid}) is same, (pids, worker.pid)


# ---------------------------------------------------------------------------- schema behind


BEHIND = "the database has no schema yet; run `campaigns migrate`"


def test_the_web_app_refuses_an_unmigrated_database_and_starts_once_migrated(monkeypatch, tmp_path):
    from campaigns.services import SchemaBehind
    from campaigns.web import create_app

    url = f"sqlite:///{tmp_path / 'web.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(SchemaBehind, match=r"^the database has no schema yet; run `campaigns"):
        create_app({"TESTING": True})
    assert not (tmp_path / "web.db").exists()  # it looked, and made nothing
    _migrated(url)
    assert create_app({"TESTING": True}).test_client().get("/healthz").status_code == 200


def test_web_py_on_an_unmigrated_database_is_one_line_naming_migrate(project_root, tmp_path):
    env = _environ(DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}")
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "web", "run", "--port", str(free_port())],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"web: {BEHIND}\n"


def test_worker_py_refuses_a_database_behind_and_runs_after_campaigns_migrate(
    project_root, tmp_path, redis_url
):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    env = _environ(DATABASE_URL=url, REDIS_URL=redis_url)
    worker = [sys.executable, "worker.py", "--burst", "--no-cron"]
    refused = subprocess.run(
        worker, cwd=project_root, env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == f"worker: {BEHIND}\n"
    migrated = subprocess.run(
        [sys.executable, "-m", "campaigns", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    started = subprocess.run(
        worker, cwd=project_root, env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
