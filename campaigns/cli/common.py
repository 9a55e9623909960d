"""What the command modules share: the run's state (settings, the composition root's
services), the exit statuses, and printing (errors, problems, tables, rates)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.orm import Session, sessionmaker

from campaigns import config as settings
from campaigns.clock import Clock
from campaigns.content.project import Project
from campaigns.exceptions import CampaignsError, Problem
from campaigns.store.db import current_revision, head_revision, make_engine
from campaigns.store.db import migrate as run_migrations

if TYPE_CHECKING:  # the engine and its parts are imported by the commands that use them
    from campaigns.services import Services

EXIT_PROBLEMS = 1  # the input has problems (validation, bad rows under --strict)
EXIT_ERROR = 2  # the command could not run (config, database, missing file)
EXIT_INTERNAL = 3  # a bug: reported in one line; CAMPAIGNS_DEBUG=1 shows the traceback


class State:
    """What the commands share in one run: the settings, read once, and the database, opened
    once and only at the newest migration."""

    def __init__(self) -> None:
        self._config: settings.Config | None = None
        self._services: Services | None = None

    @property
    def config(self) -> settings.Config:
        if self._config is None:
            self._config = settings.load()
        return self._config

    @property
    def project(self) -> Project:
        return Project(self.config)

    def sessions(self) -> sessionmaker[Session]:
        """The database's sessions; :class:`~campaigns.services.SchemaBehind` (one line naming
        ``campaigns migrate``) unless its schema is at the newest migration."""
        return self.services().sessions

    def services(self, clock: Clock | None = None) -> Services:
        """The composition root's services (:func:`campaigns.services.build`); with ``clock``,
        a set of its own on the same database (the demo's pass runs at a chosen time)."""
        from campaigns.services import build

        if self._services is None:
            self._services = build(self.config)
        if clock is None:
            return self._services
        return build(self.config, clock, sessions=self._services.sessions)

    def close(self) -> None:
        """Close what the run opened (the transport, the database's pool)."""
        if self._services is not None:
            self._services.close()
            self._services = None

    def migrate(self) -> str:
        """Bring the schema to the newest migration; the one line that says what was done."""
        from alembic.util import CommandError as AlembicError

        database = make_engine(self.config.database_url)
        try:
            before, head = current_revision(database), head_revision()
            shown = safe_url(self.config.database_url)
            if before == head:
                return f"database {shown}: up to date (revision {head})"
            try:
                run_migrations(database)
            except AlembicError as exc:  # a revision this release does not know
                raise CampaignsError(
                    f"cannot migrate {shown}: {str(exc).splitlines()[0]}"
                ) from None
            return f"database {shown}: migrated from {before or 'an empty database'} to {head}"
        finally:
            database.dispose()


pass_state = click.make_pass_decorator(State, ensure=True)


def err(message: str) -> None:
    click.echo(message, err=True)


def print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        err(str(problem))


def pct(rate: Any) -> str:
    if not rate.n:
        return "-"
    low, high = rate.interval
    return f"{rate.value * 100:.1f}% [{low * 100:.1f}-{high * 100:.1f}]"


def pct_dict(rate: dict[str, Any]) -> str:
    return f"{rate['value'] * 100:.1f}% [{rate['low'] * 100:.1f}-{rate['high'] * 100:.1f}]"


def now() -> Any:
    from datetime import UTC

    return datetime.now(UTC)


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [
        max([display_width(h)] + [display_width(r[i]) for r in cells])
        for i, h in enumerate(headers)
    ]

    def line(values: list[str]) -> str:
        parts = []
        for value, width, sample in zip(values, widths, rows[0] if rows else values, strict=False):
            pad = " " * (width - display_width(value))
            parts.append(pad + value if isinstance(sample, int) else value + pad)
        return "  ".join(parts).rstrip()

    click.echo(line(headers))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo(line(row))


def display_width(text: str) -> int:
    """Display width: East Asian wide characters take two columns."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


class Refused(click.ClickException):
    """A command-line value refused before the command runs: one line, ``campaigns: ...``,
    and :data:`EXIT_ERROR`, whether the command runs from ``main`` or click's own runner
    (a usage error would print the usage and a blank line above it)."""

    exit_code = EXIT_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"campaigns: {self.format_message()}", err=True, file=file)


class PathArg(click.Path):
    """A file or folder argument: an empty name or one with a NUL byte (which no file can
    have, and which ``os.stat`` answers with a ValueError) is refused in one line, exit 2."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("path_type", Path)
        super().__init__(**kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str | bytes):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            name = param.human_readable_name if param is not None else "path"
            if not text.strip():
                raise Refused(f"{name}: an empty file name")
            if "\x00" in text:
                raise Refused(f"{name}: {text!r} contains a NUL byte")
        return super().convert(value, param, ctx)
