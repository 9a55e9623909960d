"""The worker process: ``python worker.py`` runs an RQ worker on the project's queues and,
beside it, RQ's cron scheduler, which enqueues the scheduler pass (``campaigns.jobs.tick``)
every minute, and the flusher, which writes tracking hits from Redis to the database in
batches (``campaigns flush --follow`` runs it on its own).

Jobs run in the worker's own process (RQ's ``SimpleWorker``), so the engine it builds on
the first job (database pool, compiled templates, one SMTP connection) serves every later
one; RQ's job timeouts still hold. ``--fork`` runs each job in a forked child instead
(RQ's default ``Worker``): more isolation, but every job builds its engine again.

Start as many workers as needed; give all but one ``--no-cron`` (a second scheduler does no
harm: ticks are idempotent, it only wastes a little work). ``rq worker -u $REDIS_URL
campaigns-high campaigns campaigns-low`` runs a plain worker, and ``rq cron
campaigns/cron.py`` the scheduler on its own. The worker needs a real Redis (``REDIS_URL``);
``campaigns run`` serves single-process trials without one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys

from rq import SimpleWorker, Worker

from campaigns import config as settings
from campaigns.exceptions import ConfigError, ServiceUnavailable
from campaigns.preflight import check_redis
from campaigns.queue import connect, queues


def run_cron(redis_url: str) -> None:
    """The child process that runs RQ's CronScheduler with the project's schedule."""
    from redis import Redis
    from rq.cron import CronScheduler

    from campaigns.cron import schedule

    scheduler = CronScheduler(Redis.from_url(redis_url))
    schedule(scheduler)
    scheduler.start()


def run_flusher(redis_url: str) -> None:
    """The child process that writes tracking hits from Redis to the database in batches."""
    from redis import Redis

    from campaigns.db import make_engine, make_sessionmaker
    from campaigns.hits import RedisHitLog
    from campaigns.hits import run_flusher as flush_forever

    cfg = settings.load()
    flush_forever(RedisHitLog(Redis.from_url(redis_url)), make_sessionmaker(make_engine(cfg.database_url)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-cron", action="store_true", help="do not run the scheduler beside this worker")
    parser.add_argument("--burst", action="store_true", help="run the queued jobs, then stop")
    parser.add_argument("--no-flusher", action="store_true", help="do not run the tracking-hit flusher beside this worker")
    parser.add_argument("--fork", action="store_true", help="run each job in a forked child (slower: the engine is built per job)")
    args = parser.parse_args(argv)
    try:
        cfg = settings.load()
    except ConfigError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    if not cfg.redis_url:
        print("worker: REDIS_URL is unset; set it, e.g. REDIS_URL=redis://127.0.0.1:6379/0", file=sys.stderr)
        return 2
    try:  # before the scheduler and flusher fork: each would print a traceback of its own
        check_redis(cfg.redis_url)
    except ServiceUnavailable as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    children = []
    if not args.no_cron and not args.burst:
        children.append(multiprocessing.Process(target=run_cron, args=(cfg.redis_url,), name="campaigns-cron", daemon=True))
    if not args.no_flusher and not args.burst:
        children.append(multiprocessing.Process(target=run_flusher, args=(cfg.redis_url,), name="campaigns-flusher", daemon=True))
    for child in children:
        child.start()
    connection = connect(cfg)
    try:
        worker_class = Worker if args.fork else SimpleWorker
        worker_class(queues(connection), connection=connection).work(burst=args.burst)
    finally:
        for child in children:
            child.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
