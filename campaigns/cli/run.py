"""``campaigns migrate``, ``tick``, ``flush`` and ``run``: the schema, the scheduler pass, the
tracking hits, and everything in one process for trials."""

from __future__ import annotations

import sys

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.exceptions import CampaignsError
from campaigns.preflight import check_redis
from campaigns.store.db import make_engine, schema_problem


@click.command()
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: exit 1, with the one line, if the schema is behind.",
)
@pass_state
def migrate(state: State, check: bool) -> None:
    """Bring the database's schema to this release's newest migration; prints one line.

    The only command that changes the schema: the web app, the worker and the other
    commands refuse a database that is behind, naming this command."""
    if check:
        database = make_engine(state.config.database_url)
        try:
            problem = schema_problem(database)
        finally:
            database.dispose()
        if problem is not None:
            common.err(f"campaigns: {problem}; run `campaigns migrate`")
            sys.exit(common.EXIT_PROBLEMS)
        click.echo(f"database {common.safe_url(state.config.database_url)}: up to date")
        return
    click.echo(state.migrate())


@click.command()
@pass_state
def tick(state: State) -> None:
    """One scheduler pass: enrol new entrants, then run every step that is due.

    Runs the steps in this process; the worker's scheduler runs the same pass and hands the
    batches to the queue instead."""
    result = state.services().engine.tick()
    entered = ", ".join(f"{k} +{v}" for k, v in result.entered.items() if v) or "nobody new"
    click.echo(f"entered: {entered}")
    click.echo(
        f"ran {result.claimed} due enrollment{'s' if result.claimed != 1 else ''}"
        f" in {result.batches} batch{'es' if result.batches != 1 else ''}:"
        f" {result.sent} sent, {result.deferred} deferred, {result.failed} failed"
    )


@click.command()
@click.option(
    "--follow",
    is_flag=True,
    help="Keep flushing as hits arrive (the flusher process); Ctrl-C stops.",
)
@pass_state
def flush(state: State, follow: bool) -> None:
    """Write the tracking hits waiting in Redis (opens, clicks, answers, unsubscribes) to
    the database, classified as human, machine or unknown."""
    from campaigns.queue import connect
    from campaigns.tracking.hitlog import RedisHitLog, run_flusher

    if not state.config.redis_url:
        click.echo("REDIS_URL is unset: hits are written as they arrive; nothing to flush")
        return
    check_redis(state.config.redis_url)
    hits = RedisHitLog(connect(state.config))
    sessions = state.sessions()
    if follow:
        click.echo(f"flushing hits from Redis ({hits.pending()} waiting); Ctrl-C stops")
        try:
            run_flusher(hits, sessions)
        except KeyboardInterrupt:
            click.echo("stopping")
        return
    result = hits.flush(sessions)
    classes = (
        ", ".join(f"{count} {name}" for name, count in sorted(result.by_class.items())) or "none"
    )
    click.echo(
        f"flushed {result.written} hits ({classes}); {result.duplicates} duplicates skipped,"
        f" {result.dropped} dropped, {result.reclassified} earlier hits reclassified"
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--interval",
    default=30,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds between scheduler passes.",
)
@pass_state
def run(state: State, host: str, port: int, interval: int) -> None:
    """Everything on one machine: the web app, a worker and the scheduler, in one process.

    Uses REDIS_URL and DATABASE_URL when set; otherwise a SQLite file and an in-process
    stand-in for Redis. For production, run web.py under gunicorn and worker.py instead."""
    import threading
    import time as clock_time

    from werkzeug.serving import make_server

    from campaigns.queue import connect
    from campaigns.web import create_app

    cfg = state.config
    if cfg.redis_url:  # before anything starts: a dead Redis is one line, not a thread's traceback
        check_redis(cfg.redis_url)
    click.echo(state.migrate())  # `campaigns run` is a whole trial installation: it migrates
    services = state.services()
    engine = services.engine  # no dispatch: each pass does the due work itself
    hits = None
    if cfg.redis_url:  # the web app appends hits to Redis; without it, it writes them itself
        from campaigns.tracking.hitlog import RedisHitLog

        hits = RedisHitLog(connect(cfg))
    try:
        server = make_server(host, port, create_app(), threaded=True)
    except OSError as exc:
        raise CampaignsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
    redis_note = "Redis at REDIS_URL" if cfg.redis_url else "no REDIS_URL: all in this process"
    click.echo(
        f"campaigns running: web on http://{host}:{port}, worker and scheduler every"
        f" {interval}s ({redis_note}, {common.safe_url(cfg.database_url)},"
        f" mail to {cfg.mail_url}); Ctrl-C stops"
    )
    try:
        while True:
            if hits is not None:
                hits.flush(engine.sessions)
            result = engine.tick()
            if cfg.event_subscribers:
                services.deliverer.run()
            if result.claimed or any(result.entered.values()):
                entered = sum(result.entered.values())
                click.echo(f"tick: {entered} entered, {result.claimed} enrollments advanced")
            clock_time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        server.shutdown()
        engine.transport.close()
