"""A journey's YAML on the dashboard: the running version's text and its history, the diff
between two versions, and an editor that validates and deploys (routes on the dashboard
blueprint, behind its sign-in, CSRF and role checks).

``/journeys/<key>/source`` shows a version's text with line numbers (the running one unless
``?version=N``), every version (when, who deployed it as the audit log has it, its source
path and hash) and whether the file in the journeys folder still holds the running text;
``/journeys/<key>/source.yaml`` downloads it. ``/journeys/<key>/diff?from=N&to=M`` is the
difference between two versions, side by side (:mod:`difflib`). ``/journeys/<key>/edit``
(marketers and admins) is a form with the text in a textarea and two buttons: Validate runs
the checks of ``campaigns validate`` (the DSL, the segments, the templates, the project's
other files) and shows each ``line:col`` problem under its line, the text kept as typed;
Deploy does the same and, when nothing is wrong, stores a new version through
:func:`campaigns.engine.deploy.deploy`, the path ``campaigns deploy`` takes.

What runs is the database's version, not the file: a deploy from the browser leaves the
journeys folder as it is (the web process writes no files, and no path comes from the
user). The source page says when the file differs from the running text, so that nobody
deploys the older file over an edit unawares; the download is the text to save over it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.content.project import Project
from campaigns.engine.deploy import deploy, source_hash
from campaigns.exceptions import CampaignsError, JourneyError, Problem
from campaigns.journeys.model import Journey
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.yamlsource import YamlProblem, read
from campaigns.services import Services
from campaigns.store import audit
from campaigns.store.enums import AuditAction
from campaigns.store.models import AuditEntry, JourneyVersion
from campaigns.store.models import Journey as JourneyRow
from campaigns.web import dashboard_base as base
from campaigns.web.dashboard_base import bp
from campaigns.web.roles import READ_REPORTS, STEER, needs

MAX_SOURCE = 262_144
"""The longest journey text the editor takes, in UTF-8 bytes (256 KB; the shipped journeys
are 2 to 6 KB): a longer one is refused with 413, the text as it was kept nowhere."""

MAX_BODY = 3 * MAX_SOURCE + 4096
"""The largest edit form accepted (413 beyond): the text percent-encoded at its worst (three
bytes for each byte of Japanese) and the CSRF token."""

CONTEXT = 3
"""Unchanged lines shown around each change in a diff; longer unchanged runs fold."""

_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_NUMBER = re.compile(r"[0-9]{1,9}")
_ID_LINE = re.compile(r"^journey[ \t]*:", re.MULTILINE)


# ---------------------------------------------------------------------------- checking a text


@dataclass
class Checked:
    """What the editor's checks found in a text: the journey when it passed, the problems
    at its lines (by line number) and those in the project's other files."""

    journey: Journey | None = None
    at_line: dict[int, list[Problem]] = field(default_factory=dict)
    elsewhere: list[Problem] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(p) for p in self.at_line.values()) + len(self.elsewhere)


def check_text(project: Project, key: str, text: str, path: str) -> Checked:
    """Check ``text`` as ``campaigns validate`` checks the file at ``path`` would: the DSL
    against the segments and template names, the templates it names, and the project's
    segments, scorecards, triggers and links files; and that it is still journey ``key``."""
    found: list[Problem] = []
    segments = None
    try:
        segments = project.segments()
    except JourneyError as exc:
        found.extend(exc.problems)
    journey: Journey | None = None
    try:
        journey = parse_journey(
            text, path, segments=segments, templates=set(project.templates.names())
        )
    except JourneyError as exc:
        found.extend(exc.problems)
    if journey is not None and journey.key != key:
        match = _ID_LINE.search(text)
        line = text.count("\n", 0, match.start()) + 1 if match else 1
        found.append(
            Problem(
                path,
                line,
                1,
                f"this page edits journey '{key}', not '{journey.key}'",
                f"keep 'journey: {key}'; a new journey is a new file, deployed with"
                " `campaigns deploy`",
            )
        )
        journey = None
    if journey is not None:
        found.extend(project.check_templates([journey]))
    if segments is not None:
        for load in (project.scorecards, project.triggers):
            try:
                load(segments)
            except JourneyError as exc:
                found.extend(exc.problems)
    try:
        project.links()
    except JourneyError as exc:
        found.extend(exc.problems)
    except CampaignsError as exc:
        found.append(Problem("templates/links.yaml", 1, 1, str(exc)))
    checked = Checked(journey=journey if not found else None)
    last = len(numbered(text))
    for problem in found:
        if problem.path == path:  # past the end (a missing key at EOF): the last line
            checked.at_line.setdefault(min(max(problem.line, 1), last), []).append(problem)
        else:
            checked.elsewhere.append(problem)
    return checked


def numbered(text: str) -> list[tuple[int, str]]:
    """The text's lines, numbered from 1 (an empty text is one empty line)."""
    lines = text.split("\n")
    if len(lines) > 1 and text.endswith("\n"):
        lines.pop()
    return list(enumerate(lines, start=1))


# ---------------------------------------------------------------------------- diffs


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side diff: ``kind`` is equal, delete, insert, replace or fold
    (unchanged lines left out; ``text`` says how many)."""

    kind: str
    old_number: int | None = None
    old: str = ""
    new_number: int | None = None
    new: str = ""


def side_by_side(old: Sequence[str], new: Sequence[str], context: int = CONTEXT) -> list[DiffRow]:
    """The rows of a side-by-side diff of two texts' lines, unchanged runs folded to
    ``context`` lines around each change."""
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    codes = matcher.get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(codes):
        if tag == "equal":
            pairs = list(zip(range(i1, i2), range(j1, j2), strict=True))
            keep_head = context if index > 0 else 0
            keep_tail = context if index < len(codes) - 1 else 0
            if len(pairs) > keep_head + keep_tail + 1:
                shown = pairs[:keep_head]
                hidden = len(pairs) - keep_head - keep_tail
                rows.extend(DiffRow("equal", i + 1, old[i], j + 1, new[j]) for i, j in shown)
                rows.append(DiffRow("fold", old=f"{hidden} unchanged line{'s' * (hidden != 1)}"))
                pairs = pairs[len(pairs) - keep_tail :] if keep_tail else []
            rows.extend(DiffRow("equal", i + 1, old[i], j + 1, new[j]) for i, j in pairs)
            continue
        for i, j in zip_longest(range(i1, i2), range(j1, j2)):
            rows.append(
                DiffRow(
                    tag if i is not None and j is not None else "delete" if j is None else "insert",
                    i + 1 if i is not None else None,
                    old[i] if i is not None else "",
                    j + 1 if j is not None else None,
                    new[j] if j is not None else "",
                )
            )
    return rows


def unified(old: str, new: str, old_name: str, new_name: str) -> str:
    """The unified diff of two texts, as ``diff -u`` writes it."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            old_name,
            new_name,
            n=CONTEXT,
        )
    )


# ---------------------------------------------------------------------------- plumbing


def _services() -> Services:
    services: Services = current_app.extensions["campaigns.services"]
    return services


def _journey_or_404(session: Session, key: str) -> JourneyRow:
    row = (
        session.scalars(select(JourneyRow).where(JourneyRow.key == key)).one_or_none()
        if _KEY.fullmatch(key)
        else None
    )
    if row is None or row.current_version is None:
        abort(404, "No such journey.")
    return row


def _number(name: str, default: int | None) -> int | None:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and _NUMBER.fullmatch(raw)) or int(raw) < 1:
        abort(400, f"{name}: expected a version number (1, 2, ...).")
    return int(raw)


def _version_or_404(session: Session, row: JourneyRow, number: int) -> JourneyVersion:
    version = session.scalars(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == row.id, JourneyVersion.number == number
        )
    ).one_or_none()
    if version is None:
        abort(404, f"Journey {row.key} has no version {number}.")
    return version


def _deployers(session: Session, key: str) -> dict[int, AuditEntry]:
    """Per version number, the audit log's latest deploy of it (who made it current)."""
    found: dict[int, AuditEntry] = {}
    entries = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.target_kind == audit.JOURNEY,
            AuditEntry.target == key,
            AuditEntry.action.in_([AuditAction.DEPLOY, AuditAction.EDIT]),
        )
        .order_by(AuditEntry.id)
    )
    for entry in entries:
        number = (entry.detail or {}).get("version")
        if isinstance(number, int) and (entry.action == AuditAction.DEPLOY or number not in found):
            found[number] = entry
    return found


def _file_state(version: JourneyVersion) -> tuple[str, str]:
    """Whether the journeys folder's file of ``version`` holds its text: (state, file name),
    state ``same``, ``differs`` or ``missing``. Only a file of that name directly in the
    configured folder is read; the stored path is never followed."""
    name = Path(version.source_path.replace("\\", "/")).name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+\.ya?ml", name):
        return "missing", name
    try:
        text = read(_services().config.journeys_dir / name)  # at most MAX_SOURCE_BYTES
    except YamlProblem:  # too large to be the running text
        return "differs", name
    except (OSError, UnicodeDecodeError):
        return "missing", name
    return ("same" if source_hash(text) == version.source_hash else "differs"), name


# ---------------------------------------------------------------------------- source, history


@bp.get("/journeys/<key>/source")
@needs(READ_REPORTS)
def source(key: str) -> ResponseReturnValue:
    with base.sessions()() as session:
        row = _journey_or_404(session, key)
        current = row.current_version
        assert current is not None
        shown = _version_or_404(session, row, _number("version", current.number) or 1)
        deployers = _deployers(session, key)
        history = [
            {
                "number": v.number,
                "at": v.created_at,
                "by": deployers[v.number].actor if v.number in deployers else None,
                "path": v.source_path,
                "hash": v.source_hash,
                "current": v.id == current.id,
            }
            for v in sorted(row.versions, key=lambda v: -v.number)
        ]
        file_state, file_name = _file_state(current)
        view = {
            "key": row.key,
            "name": row.name,
            "status": row.status,
            "number": shown.number,
            "current": current.number,
            "lines": numbered(shown.source_text),
        }
    return base.page(
        "source.html",
        journey=view,
        history=history,
        file_state=file_state,
        file_name=file_name,
    )


@bp.get("/journeys/<key>/source.yaml")
@needs(READ_REPORTS)
def source_file(key: str) -> ResponseReturnValue:
    """The running version's text as a file, to save over the one in journeys/."""
    with base.sessions()() as session:
        row = _journey_or_404(session, key)
        assert row.current_version is not None
        text = row.current_version.source_text
    response = Response(text, mimetype="application/yaml")
    response.headers["Content-Disposition"] = f'attachment; filename="{row.key}.yaml"'
    return response


@bp.get("/journeys/<key>/diff")
@needs(READ_REPORTS)
def diff(key: str) -> ResponseReturnValue:
    unknown = sorted(set(request.args) - {"from", "to"})
    if unknown:
        abort(400, f"{unknown[0][:40]}: unknown parameter; expected from and to.")
    with base.sessions()() as session:
        row = _journey_or_404(session, key)
        assert row.current_version is not None
        to = _number("to", row.current_version.number) or 1
        start = _number("from", max(to - 1, 1)) or 1
        old, new = _version_or_404(session, row, start), _version_or_404(session, row, to)
        numbers = [v.number for v in row.versions]
        old_lines, new_lines = old.source_text.splitlines(), new.source_text.splitlines()
        view = {"key": row.key, "name": row.name, "from": old.number, "to": new.number}
        text = unified(old.source_text, new.source_text, f"v{old.number}", f"v{new.number}")
    rows = side_by_side(old_lines, new_lines)
    return base.page(
        "diff.html",
        journey=view,
        rows=rows,
        unified=text,
        numbers=numbers,
        changed=sum(r.kind not in ("equal", "fold") for r in rows),
    )


# ---------------------------------------------------------------------------- the editor


@bp.get("/journeys/<key>/edit")
@needs(STEER)
def edit(key: str) -> ResponseReturnValue:
    with base.sessions()() as session:
        row = _journey_or_404(session, key)
        assert row.current_version is not None
        view = _edit_view(row)
        text = row.current_version.source_text
    return base.page("edit.html", journey=view, text=text, checked=None, lines=[])


@bp.post("/journeys/<key>/edit")
@needs(STEER)
@base.body_limit(MAX_BODY)
def edit_submit(key: str) -> ResponseReturnValue:
    """Validate the posted text or, asked to deploy and finding nothing wrong, store it as
    the running version; any problem shows the form again with the text as posted."""
    action = request.form.get("action", "validate")
    if action not in ("validate", "deploy"):
        abort(400, "action: expected validate or deploy.")
    text = request.form.get("source", "").replace("\r\n", "\n").replace("\r", "\n")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE:
        abort(413, f"The journey is longer than {MAX_SOURCE // 1024} KB.")
    with base.sessions()() as session:
        row = _journey_or_404(session, key)
        assert row.current_version is not None
        view = _edit_view(row)
        path = row.current_version.source_path
        previous = row.current_version.number
    checked = check_text(_services().project, key, text, path)
    if action == "validate" or checked.journey is None:
        return base.page(
            "edit.html",
            journey=view,
            text=text,
            checked=checked,
            lines=numbered(text),
        )
    actor, now = g.user.email, current_app.extensions["campaigns.clock"].now()
    with base.sessions()() as session, session.begin():
        result = deploy(session, checked.journey, text, path)
        if result.created:
            audit.record(
                session,
                actor,
                AuditAction.EDIT,
                key,
                detail={"version": result.version, "previous": previous, "path": path[-200:]},
                at=now,
            )
        audit.record(
            session,
            actor,
            AuditAction.DEPLOY,
            key,
            detail={
                "version": result.version,
                "created": result.created,
                "path": path[-200:],
                "from": "editor",
            },
            at=now,
        )
    if result.created:
        flash(f"Deployed version {result.version} of {key}.", "ok")
    elif result.version == previous:
        flash(f"Nothing changed: version {result.version} is still running.", "ok")
    else:
        flash(f"Version {result.version} (the same text) is running again.", "ok")
    return redirect(url_for("dashboard.journey", key=key))


def _edit_view(row: JourneyRow) -> dict[str, Any]:
    assert row.current_version is not None
    return {
        "key": row.key,
        "name": row.name,
        "status": row.status,
        "number": row.current_version.number,
        "path": row.current_version.source_path,
    }


def problems_of(checked: Checked | None) -> Iterable[Problem]:
    """Every problem the check found, those at lines first, in line order."""
    if checked is None:
        return []
    return [p for line in sorted(checked.at_line) for p in checked.at_line[line]] + list(
        checked.elsewhere
    )
