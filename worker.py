"""The worker process: ``python worker.py`` runs an RQ worker on the project's queues and,
beside it, three children: RQ's cron scheduler, which enqueues the scheduler pass
(``campaigns.worker.jobs.tick``) every minute and the dispatcher
(``campaigns.worker.jobs.dispatch``) every 10 s; RQ's scheduler, which enqueues the delayed
retries of failed jobs; and the flusher, which writes tracking hits from Redis to the
database in batches (``campaigns flush --follow`` runs it on its own).

It refuses to start (one line, exit 2) when Redis does not answer or the database's schema
is behind (run ``campaigns migrate``); it never migrates.

Jobs run in the worker's own process (RQ's ``SimpleWorker``), so the engine it builds on
the first job (by :func:`campaigns.services.build`: database pool, compiled templates, one
SMTP connection) serves every later one; RQ's job timeouts still hold. ``--fork`` runs each
job in a forked child instead (RQ's default ``Worker``): more isolation, but every job
builds its engine again.

The worker and its children outlive a Redis restart or a database blip: each reconnects
with growing waits and logs one line. They do not outlive being killed: run the worker
under a supervisor that restarts it (docs/operations.md, "What to supervise"). SIGTERM
stops it after the job in hand.

Start as many workers as needed; give all but one ``--no-cron`` (a second scheduler does no
harm: ticks are idempotent, it only wastes a little work). The worker needs a real Redis
(``REDIS_URL``); ``campaigns run`` serves single-process trials without one.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import time
from collections.abc import Callable

from rq import SimpleWorker, Worker

from campaigns import config as settings
from campaigns.exceptions import ConfigError
from campaigns.outages import Backoff, first_line, is_outage
from campaigns.preflight import check_redis, startup_error
from campaigns.queue import connect, queues
from campaigns.services import build, check_schema

log = logging.getLogger("campaigns.worker")


def keep_running(name: str, run: Callable[[], bool]) -> None:
    """Run ``run`` again whenever it ends on an outage of Redis (or the database), after a
    growing wait, logging one line per outage; return when ``run`` returns True (asked to stop)."""
    backoff = Backoff()
    while True:
        backoff.started()
        try:
            if run():
                return
            reason = "stopped on its own"
        except Exception as exc:
            if not is_outage(exc):
                raise
            reason = first_line(exc)
        delay = backoff.next_delay()
        log.warning("%s: lost Redis (%s); reconnecting in %.0f s", name, reason, delay)
        time.sleep(delay)


class _QuietOutages(logging.Filter):
    """RQ logs a lost Redis connection with a traceback; the supervisor says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_outage(record.exc_info[1]):
            record.exc_info = None
            record.exc_text = None
        return True


def run_cron(redis_url: str) -> None:
    """The child process that runs RQ's CronScheduler with the project's schedule."""
    from redis import Redis
    from rq.cron import CronScheduler

    from campaigns.worker.cron import schedule

    def run() -> bool:
        scheduler = CronScheduler(Redis.from_url(redis_url))
        schedule(scheduler)
        scheduler.start()  # returns when asked to stop (SIGTERM from the worker)
        return True

    keep_running("cron", run)


def run_scheduler(redis_url: str) -> None:
    """The child process that runs RQ's scheduler: it enqueues the retries RQ schedules (an
    advance job that failed on an outage is tried again after a wait). RQ can fork one from
    its worker, but that one dies with a traceback when Redis restarts; this one reconnects."""
    from redis import Redis
    from rq.scheduler import RQScheduler

    from campaigns.queue import QUEUE_NAMES

    def run() -> bool:
        scheduler = RQScheduler(list(QUEUE_NAMES), connection=Redis.from_url(redis_url))
        scheduler.acquire_locks()  # another worker's scheduler may hold them: it retries as it goes
        scheduler.work()  # returns when asked to stop (SIGTERM from the worker)
        return True

    keep_running("scheduler", run)


def run_flusher(redis_url: str) -> None:
    """The child process that writes tracking hits from Redis to the database in batches."""
    from redis import Redis

    from campaigns.tracking.hitlog import RedisHitLog
    from campaigns.tracking.hitlog import run_flusher as flush_forever

    redis = Redis.from_url(redis_url)
    services = build(settings.load(), redis=redis)
    flush_forever(RedisHitLog(redis), services.sessions)


def serve(cfg: settings.Config, *, burst: bool, fork: bool) -> None:
    """Run the RQ worker; after a Redis restart (RQ's worker quits when Redis goes away
    mid-job), connect again and go on. Returns when asked to stop (SIGTERM, Ctrl-C) or, with
    ``burst``, when the queues are empty."""
    worker_class = Worker if fork else SimpleWorker

    def run() -> bool:
        connection = connect(cfg)
        connection.ping()
        worker = worker_class(queues(connection), connection=connection)
        worker.work(burst=burst)
        # SIGTERM or Ctrl-C: RQ notes when (an idle worker stops at once, a busy one after
        # its job); anything else that ended the loop was Redis going away.
        return (
            burst
            or getattr(worker, "_shutdown_requested_date", None) is not None
            or bool(getattr(worker, "_stop_requested", False))
        )

    keep_running("worker", run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--no-cron", action="store_true", help="do not run the scheduler beside this worker"
    )
    parser.add_argument("--burst", action="store_true", help="run the queued jobs, then stop")
    parser.add_argument(
        "--no-flusher",
        action="store_true",
        help="do not run the tracking-hit flusher beside this worker",
    )
    parser.add_argument(
        "--fork",
        action="store_true",
        help="run each job in a forked child (slower: the engine is built per job)",
    )
    args = parser.parse_args(argv)
    try:
        cfg = settings.load()
    except ConfigError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    if not cfg.redis_url:
        print(
            "worker: REDIS_URL is unset; set it, e.g. REDIS_URL=redis://127.0.0.1:6379/0",
            file=sys.stderr,
        )
        return 2
    try:  # before the scheduler and flusher fork: each would print a traceback of its own
        check_redis(cfg.redis_url)
        # It never migrates: a schema behind the code is one line naming `campaigns migrate`.
        check_schema(cfg)
    except Exception as exc:
        message = startup_error(exc)
        if message is None:
            raise
        print(f"worker: {message}", file=sys.stderr)
        return 2
    # One format for our lines and RQ's (RQ adds no handler of its own when one is set).
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(processName)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in ("rq.worker", "rq.scheduler", "rq.cron"):
        logging.getLogger(name).addFilter(_QuietOutages())
    children = []
    if not args.burst:
        children.append(
            multiprocessing.Process(
                target=run_scheduler, args=(cfg.redis_url,), name="campaigns-scheduler", daemon=True
            )
        )
    if not args.no_cron and not args.burst:
        children.append(
            multiprocessing.Process(
                target=run_cron, args=(cfg.redis_url,), name="campaigns-cron", daemon=True
            )
        )
    if not args.no_flusher and not args.burst:
        children.append(
            multiprocessing.Process(
                target=run_flusher, args=(cfg.redis_url,), name="campaigns-flusher", daemon=True
            )
        )
    for child in children:
        child.start()
    try:
        serve(cfg, burst=args.burst, fork=args.fork)
    finally:
        for child in children:
            child.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
