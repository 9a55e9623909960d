"""The ``campaigns`` command line. A thin edge: it parses arguments, calls the engine and
prints. Every failure is one clear line on stderr and a non-zero exit, never a traceback.

The commands live in modules by area (:mod:`~campaigns.cli.journeys`, :mod:`~campaigns.cli.data`,
:mod:`~campaigns.cli.run`, :mod:`~campaigns.cli.report`, :mod:`~campaigns.cli.people`,
:mod:`~campaigns.cli.demo`, :mod:`~campaigns.cli.accounts`, :mod:`~campaigns.cli.events`,
:mod:`~campaigns.cli.consent`); this module is the group, which adds them, and :func:`main`.
Every command but ``migrate`` (and ``validate``, which opens no database) refuses, in the one
line ``the database schema is behind ...; run `campaigns migrate```, a database that is not
at the newest migration.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from campaigns.cli import (
    accounts,
    consent,
    contacts,
    data,
    demo,
    enrollments,
    events,
    health,
    inbound,
    journeys,
    people,
    report,
    run,
)
from campaigns.cli.common import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_PROBLEMS,
    State,
    err,
    print_problems,
)
from campaigns.exceptions import CampaignsError, JourneyError

__all__ = ["EXIT_ERROR", "EXIT_INTERNAL", "EXIT_PROBLEMS", "cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="campaigns")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Journeys and email for customer-success teams: high, low and tech touch.

    Configuration comes from DATABASE_URL, REDIS_URL, MAIL_URL, SECRET_KEY and BASE_URL;
    with none set, everything runs on a SQLite file and a file outbox in this folder.
    """
    ctx.call_on_close(ctx.ensure_object(State).close)  # the pool closes with the command


for command in (
    journeys.validate,
    journeys.deploy,
    journeys.simulate,
    journeys.journey,
    journeys.audit,
    data.import_,
    data.segments,
    health.health,
    run.migrate,
    run.tick,
    run.flush,
    inbound.inbound,
    run.run,
    report.report,
    enrollments.enrollments,
    people.tasks,
    people.user,
    accounts.account,
    events.events,
    consent.consent,
    contacts.contact,
    demo.demo,
):
    cli.add_command(command)
cli.add_command(people.user, "users")  # `campaigns users set ...` reads as well


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except JourneyError as exc:
        print_problems(exc.problems)
        sys.exit(EXIT_PROBLEMS)
    except CampaignsError as exc:
        err(f"campaigns: {exc}")
        sys.exit(EXIT_ERROR)
    except OperationalError as exc:
        err(f"campaigns: database error: {str(exc.orig).splitlines()[0] if exc.orig else exc}")
        sys.exit(EXIT_ERROR)
    except SQLAlchemyError as exc:
        err(f"campaigns: database error: {str(exc).splitlines()[0]}")
        sys.exit(EXIT_ERROR)
    except RedisError as exc:  # e.g. the domain rate limits' counts, when Redis went away
        lines = str(exc).strip().splitlines()
        err(f"campaigns: Redis error: {lines[0] if lines else type(exc).__name__}")
        sys.exit(EXIT_ERROR)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``campaigns`` console script."""
    args = sys.argv[1:] if argv is None else argv
    for number, arg in enumerate(args, 1):  # only a caller in Python can pass one
        if "\x00" in arg:
            err(f"campaigns: argument {number} contains a NUL byte")
            sys.exit(2)
    try:
        with _errors():
            cli.main(args=args, prog_name="campaigns", standalone_mode=False)
    except click.exceptions.Abort:
        err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("CAMPAIGNS_DEBUG"):
            raise
        err(
            f"campaigns: internal error: {type(exc).__name__}: {exc}"
            " (set CAMPAIGNS_DEBUG=1 for the traceback)"
        )
        sys.exit(EXIT_INTERNAL)
