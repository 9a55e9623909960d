"""The thin entry points: the web app factory and the worker, over real services."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from campaigns.queue import ping

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_conn():
    conn = Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except Exception as exc:  # pragma: no cover - a machine without the server
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start it (see .ci/run)")
    yield conn
    conn.close()


def test_healthz_reports_the_database(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'web.db'}")
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
    result = subprocess.run([sys.executable, "worker.py"], cwd=project_root, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "REDIS_URL is unset" in result.stderr and "Traceback" not in result.stderr


def test_worker_py_runs_every_job_in_its_own_process_so_the_engine_is_built_once(project_root):
    """``python worker.py`` uses RQ's SimpleWorker: jobs share the process (and its engine,
    pool and SMTP connection); ``--fork`` gives each job a child process of its own."""
    from campaigns.queue import QUEUE_NAMES

    url = REDIS_URL.rsplit("/", 1)[0] + "/13"
    conn = Redis.from_url(url)
    env = {**os.environ, "REDIS_URL": url}
    try:
        for flags, same in (([], True), (["--fork"], False)):
            conn.flushdb()
            queue = Queue(QUEUE_NAMES[1], connection=conn)
            jobs = [queue.enqueue(os.getpid) for _ in range(2)]
            worker = subprocess.Popen([sys.executable, "worker.py", "--burst", "--no-cron", *flags], cwd=project_root, env=env, stderr=subprocess.PIPE, text=True)
            _, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            pids = {job.fetch(job.id, connection=conn).return_value() for job in jobs}
            assert (pids == {worker.pid}) is same, (pids, worker.pid)
    finally:
        conn.flushdb()
        conn.close()
