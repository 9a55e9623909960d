"""``campaigns inbound``: one raw email on stdin, to the List-Unsubscribe mailto address.

The relay pipes mail for ``unsubscribe+*@<domain>`` here (docs/operations.md, "Unsubscribe
by mail"). The exit status is what a relay's pipe transport understands (sysexits): 0 done,
67 (no such user) when no recipient carries a valid token, so the relay refuses the mail
rather than keep it, 65 for input that is no email, 75 (try again later) when the hit cannot
be stored, so the relay keeps the mail and retries.
"""

from __future__ import annotations

import os
import sys

import click
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from campaigns.cli.common import State, err, pass_state

EX_DATAERR = 65
EX_NOUSER = 67
EX_TEMPFAIL = 75


@click.command()
@click.option(
    "--recipient",
    multiple=True,
    help="The envelope recipient (Postfix: ${original_recipient}); repeatable. Without it, "
    "$ORIGINAL_RECIPIENT, then Delivered-To, X-Original-To, To and Cc are read.",
)
@pass_state
def inbound(state: State, recipient: tuple[str, ...]) -> None:
    """Read one email on stdin sent to an unsubscribe+TOKEN@ address and unsubscribe its
    recipient, as the one-click link does."""
    from campaigns.tracking import inbound as mail

    raw = sys.stdin.buffer.read(mail.MAX_MESSAGE_BYTES + 1)
    if not raw.strip() or b":" not in raw.split(b"\n", 1)[0]:
        err("inbound: stdin holds no email (expected a raw message with headers)")
        sys.exit(EX_DATAERR)
    envelope = list(recipient)
    if not envelope and os.environ.get("ORIGINAL_RECIPIENT"):
        envelope.append(os.environ["ORIGINAL_RECIPIENT"])
    services = state.services()
    found = mail.read(raw, services.tokens, envelope)
    if found is None:
        err("inbound: no recipient is an unsubscribe+TOKEN@ address with a valid token")
        sys.exit(EX_NOUSER)
    try:
        services.hits.record(mail.hit(found, services.clock.now().timestamp()))
    except (SQLAlchemyError, RedisError, OSError) as exc:
        err(f"inbound: cannot record the unsubscribe now ({type(exc).__name__}); retry later")
        sys.exit(EX_TEMPFAIL)
    click.echo(f"unsubscribe recorded for message {found.message} (mail from {found.sender})")
