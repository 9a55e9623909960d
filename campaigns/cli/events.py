"""``campaigns events``: the outgoing events (``EVENT_SUBSCRIBERS``): post the due ones, list
the dead letters, put them back in the queue."""

from __future__ import annotations

import time

import click

from campaigns.cli import common
from campaigns.cli.common import State, pass_state
from campaigns.exceptions import CampaignsError


@click.group()
def events() -> None:
    """Outgoing events to the subscribers of EVENT_SUBSCRIBERS (docs/api.md)."""


@events.command()
@click.option("--follow", is_flag=True, help="Keep posting as events come; Ctrl-C stops.")
@click.option(
    "--interval",
    default=5,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="With --follow: seconds between passes when nothing is due.",
)
@pass_state
def deliver(state: State, follow: bool, interval: int) -> None:
    """Post the due events (what the worker does every few seconds) and print the counts."""
    cfg = state.config
    if not cfg.event_subscribers:
        raise CampaignsError("EVENT_SUBSCRIBERS is unset: there is no one to post events to")
    deliverer = state.services().deliverer
    try:
        while True:
            result = deliverer.run()
            if result.claimed or not follow:
                click.echo(
                    f"events: {result.delivered} delivered, {result.retried} to retry,"
                    f" {result.dead} dead, {result.deferred} put back"
                )
            if not follow:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("stopping")


@events.command()
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@pass_state
def dead(state: State, limit: int) -> None:
    """The dead-letter list: events whose retries ran out, newest first."""
    from campaigns.engine.hooks import listing

    with state.sessions()() as session:
        rows = listing(session, "dead", limit=limit)
        common.table(
            ["id", "event", "type", "subscriber", "attempts", "last", "when"],
            [
                [
                    r.id,
                    r.uid,
                    r.type,
                    r.subscriber,
                    r.attempts,
                    (r.last_error or "-")[:60],
                    r.occurred_at.strftime("%Y-%m-%d %H:%M"),
                ]
                for r in rows
            ],
        )


@events.command()
@click.option("--id", "ids", type=int, multiple=True, help="A dead event's id (repeatable).")
@click.option("--all", "every", is_flag=True, help="Every dead event.")
@click.option("--subscriber", help="Only this subscriber's dead events.")
@pass_state
def replay(state: State, ids: tuple[int, ...], every: bool, subscriber: str | None) -> None:
    """Put dead events back in the queue, with a full set of attempts (audited)."""
    from campaigns.engine.hooks import replay as put_back
    from campaigns.store import audit
    from campaigns.store.enums import AuditAction

    if bool(ids) == every:
        raise CampaignsError("name the events: --id ID (repeatable) or --all")
    with state.sessions()() as session, session.begin():
        count = put_back(
            session, common.now(), ids=list(ids) if ids else None, subscriber=subscriber
        )
        if count:
            audit.record(
                session,
                audit.cli_actor(),
                AuditAction.REPLAY,
                subscriber or "all",
                kind="events",
                detail={"ids": list(ids), "all": every, "count": count},
            )
    click.echo(f"{count} dead event(s) put back in the queue")
