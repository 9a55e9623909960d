"""CSV import of accounts and contacts: streamed, checked row by row, upserted in batches.

The file is read with :mod:`csv` one row at a time and written ``batch_size`` rows at a time
with an ``INSERT ... ON CONFLICT DO UPDATE`` keyed on the natural key (``external_id`` for
accounts, ``email`` for contacts): on SQLite an ``executemany`` of it, on PostgreSQL a COPY
into a staging table and one ``INSERT ... SELECT`` from it (:mod:`campaigns.imports.staging`).
A file of any size imports in flat memory. What grows with the file is the index used to
name the first line of a duplicate key (about 100 bytes a row) and the ids of the accounts it
names, each looked up once (about 100 bytes an account).

What a file means:

- The first non-blank line is the header. Names are matched case-insensitively with
  spaces stripped; inner spaces and hyphens count as ``_`` (``Renewal Date`` is
  ``renewal_date``). Columns the engine does not know are kept in the JSON ``attributes``
  under that normalised name (string values, empty cells left out).
- An empty cell never erases what is stored: a new row gets the column's default, an
  existing row keeps its value. ``attributes`` are merged key by key; ``tags`` in a cell
  replace the stored list.
- Amounts (``arr``, ``ltv``) are decimals of at least 0 with at most 2 decimal places,
  written ``5000000``, ``5,000,000`` or with a currency sign (``¥5,000,000``, ``5,000円``,
  ``$1,200``; a backslash is the yen sign of Shift_JIS), full-width digits allowed; the
  sign must agree with ``currency``. A ``currency`` (``usd`` is USD) must have a rate in
  ``CURRENCY_RATES``; an empty one is the base currency.
- Contacts may carry their consent to marketing mail (``consent_basis`` and its source, time
  and wording); a row that changes it adds an entry to ``consent_records`` in the same
  transaction (:mod:`campaigns.imports.consent`). ``country`` is an ISO alpha-2 code.
- Dates are ISO ``YYYY-MM-DD`` (or ``2026年4月1日``). E-mail addresses are stored lower-case
  and must be plain ASCII (a Japanese domain gets a hint with its ``xn--`` form).
- A bad row is reported as ``FILE:LINE: reason`` (the physical line where the row starts)
  and skipped; the good rows are kept, committed batch by batch. ``strict=True`` checks
  every row, reports every problem and writes nothing if there is one.
- Bytes that are not valid in ``encoding`` spoil only their rows, with a hint when they
  read as Shift_JIS (cp932), as Excel saves CSV on Japanese Windows.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import ColumnElement, Engine, Table, bindparam, case, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from campaigns import defaults
from campaigns.currency import DEFAULT as DEFAULT_CURRENCIES
from campaigns.currency import Currencies
from campaigns.exceptions import ImportRowError
from campaigns.imports import consent
from campaigns.imports.csvfile import (
    SUSPECT,
    UNDECODED,
    Header,
    open_csv,
    read_header,
    records,
    undecodable,
)
from campaigns.imports.fields import CellError
from campaigns.imports.kinds import KINDS, FileKind, Kind, Row, for_currencies
from campaigns.imports.report import ImportReport, RowError
from campaigns.imports.staging import Staging
from campaigns.store.models import Account, ConsentRecord, Contact, utcnow


def _merge_json(dialect: str, stored: Any, new: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return stored.op("||")(new)
    return func.json_patch(stored, new)


def _upsert(kind: FileKind, dialect: str, merge_attributes: bool) -> Any:
    table = kind.table
    stamp = bindparam("stamp", type_=table.c.updated_at.type)  # one value for every row
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(created_at=stamp, updated_at=stamp)
    new = stmt.excluded
    changes: dict[str, Any] = {}
    for name in kind.written:
        column = table.c[name]
        if kind.consent and name in consent.COLUMNS:
            # One fact: a row that changes the consent writes all four columns (see
            # campaigns.imports.consent); one that leaves it arrives without a basis.
            changes[name] = case((new.consent_basis.is_(None), column), else_=new[name])
            continue
        # An empty cell never erases: nullable columns keep what is stored; NOT NULL ones
        # arrive already filled with the stored value (see _Import.params).
        changes[name] = func.coalesce(new[name], column) if column.nullable else new[name]
    changes["updated_at"] = new.updated_at
    if merge_attributes:
        changes["attributes"] = _merge_json(dialect, table.c.attributes, new.attributes)
    return stmt.on_conflict_do_update(index_elements=[table.c[kind.key]], set_=changes)


def _record_insert() -> Any:
    """One consent_records entry for the contact of ``email``, run once per changed row."""
    table: Table = ConsentRecord.__table__  # type: ignore[assignment]
    names = ("email_hash", "action", "basis", "source", "wording", "at", "recorded_at", "detail")
    values = [bindparam(name, type_=table.c[name].type) for name in names]
    contacts: Table = Contact.__table__  # type: ignore[assignment]
    query = select(contacts.c.id, *values).where(contacts.c.email == bindparam("email"))
    return insert(table).from_select(["contact_id", *names], query)


def _db_reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines() or ["unknown error"]
    return lines[0][:200]


class _Import:
    def __init__(
        self,
        kind: FileKind,
        path: str,
        session: Session,
        header: Header,
        *,
        strict: bool,
        encoding: str,
        report: ImportReport,
    ) -> None:
        self.kind, self.path, self.session, self.header = kind, path, session, header
        self.strict, self.encoding, self.report = strict, encoding, report
        self.dialect = session.get_bind().dialect.name
        self.stmt = _upsert(kind, self.dialect, bool(header.attributes))
        self.now = utcnow()
        self.dry = False  # strict mode after a problem: go on checking, write nothing more
        self.lock = threading.Lock()
        # hash(key) -> first line; ints keep this index small on files of a million rows
        self.first_line: dict[int, int] = {}
        self.warned_unnamed: set[int] = set()
        self.plan = [(i, f.name, f.parse, f.required) for i, f in header.fields]
        self.blank: dict[str, Any] = dict.fromkeys(kind.written)
        # Rows that set consent_basis may change the contact's consent and add to its history.
        self.consent = kind.consent and any(f.name == "consent_basis" for _, f in header.fields)
        self.source = consent.source_of(path)
        self.name = self.source.removeprefix("import:")
        self.records = _record_insert() if self.consent else None
        # account external_id -> id (None: no such account), kept for the whole file; a
        # file names each account once however many of its contacts it holds
        self.accounts: dict[str, int | None] = {}
        self.lookup: Any = None  # the reading thread's own connection (see _Pipeline)
        self.staging: Staging | None = None
        if self.dialect == "postgresql":
            named = {f.name for _, f in header.fields}
            present = [n for n in kind.written if n in named]
            if kind.reference in named:
                present.append("account_id")
            self.staging = Staging(
                kind,
                attributes=[name for _, name in header.attributes],
                present=present,
                consent=self.consent,
            )

    # rows -> values

    def bad(self, line: int, reasons: Sequence[str]) -> None:
        with self.lock:  # the reading thread and the writing one (see _Pipeline) both report
            self.report.errors.extend(RowError(self.path, line, r) for r in reasons)
            self.report.skipped += 1
            if self.strict:
                self.dry = True

    def parse(self, line: int, cells: list[str]) -> Row | None:
        joined = "".join(cells)
        if not joined.strip():
            return None  # a blank line or a row of commas
        if SUSPECT.search(joined):
            self.bad(line, [self.suspect_reason(cells)])
            return None
        width = self.header.width
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            self.bad(
                line,
                [
                    f"the row has {len(cells)} fields but the header has {width};"
                    " put values that contain commas in double quotes"
                ],
            )
            return None
        if len(cells) < self.header.needed:
            self.bad(
                line,
                [
                    f"the row has {len(cells)} fields but the header has {width};"
                    " is a comma missing or the row cut short?"
                ],
            )
            return None
        problems: list[str] = []
        values: dict[str, Any] = {}
        raw: dict[str, str] = {}
        for index, name, parse, required in self.plan:
            cell = cells[index].strip()
            if not cell:
                if required:
                    problems.append(f"empty {name}; every row needs one")
                continue
            raw[name] = cell
            try:
                values[name] = parse(cell, name)
            except CellError as exc:
                problems.append(str(exc))
        if not problems:
            problems = self.kind.check(values, raw)
        if problems:
            self.bad(line, problems)
            return None
        for index in self.header.unnamed:
            if index < len(cells) and cells[index].strip() and index not in self.warned_unnamed:
                self.warned_unnamed.add(index)
                self.report.warnings.append(
                    RowError(
                        self.path,
                        line,
                        f"column {index + 1} has no name in the header;"
                        " its values are not imported",
                    )
                )
        attributes = {
            name: cells[i].strip() for i, name in self.header.attributes if cells[i].strip()
        }
        return Row(line, values.pop(self.kind.key), values, attributes)

    def suspect_reason(self, cells: list[str]) -> str:
        names = {i: spec.name for i, spec in self.header.fields} | dict(self.header.attributes)
        for index, cell in enumerate(cells):
            name = names.get(index, f"column {index + 1}")
            if UNDECODED.search(cell):
                return undecodable(cell, self.encoding, name)
            if "\x00" in cell:
                return (
                    f"{name} holds a NUL byte (0x00); is the file UTF-16 or damaged?"
                    ' save it as "CSV UTF-8"'
                )
        return "unreadable row"

    # values -> database

    def prepare(self, rows: list[Row]) -> list[Row]:
        """The batch as it is written: accounts resolved, one row per key."""
        if self.kind.reference:
            rows = self.resolve(rows)
        return self.dedupe(rows)

    def flush(self, rows: list[Row]) -> None:
        rows = self.prepare(rows)
        if rows and not self.dry:
            self.write(rows)

    def write(self, rows: list[Row], payload: bytes | None = None) -> None:
        """Write a prepared batch: through the staging table on PostgreSQL (``payload`` is
        its COPY data, if already encoded), else, or if the database refuses it, row by row."""
        if self.staging is not None and self.copy(rows, payload):
            return
        self.store(rows, self.existing([r.key for r in rows]))

    def copy(self, rows: list[Row], payload: bytes | None = None) -> bool:
        """Write the batch through the staging table (PostgreSQL); False if the database
        refused it, which is then rolled back for :meth:`store` to find the rows at fault."""
        assert self.staging is not None
        try:
            inserted, updated = self.staging.write(
                self.session,
                self.staging.encode(rows) if payload is None else payload,
                repeated=[r.key for r in rows if r.repeat],
                now=self.now,
                source=self.source,
                file=self.name,
            )
        except (IntegrityError, DataError, psycopg.DataError, psycopg.IntegrityError):
            self.session.rollback()
            if self.strict:
                self.dry = True
            return False
        if not self.strict:
            self.session.commit()
        self.report.inserted += inserted
        self.report.updated += updated
        return True

    def resolve(self, rows: list[Row]) -> list[Row]:
        """Replace each account_external_id by the account's id; the accounts the file has
        not named before are looked up with one SELECT per batch."""
        reference, ids = self.kind.reference, self.accounts
        assert reference
        wanted = {r.values[reference] for r in rows if reference in r.values}
        if wanted := wanted.difference(ids):
            ids.update(dict.fromkeys(wanted))
            ids.update(self.find_accounts(list(wanted)))
        kept = []
        for row in rows:
            ref = row.values.pop(reference, None)
            if ref is None:
                kept.append(row)
            elif (found := ids[ref]) is None:
                self.bad(row.line, [f"unknown {reference} '{ref}'; import that account first"])
            else:
                row.values["account_id"] = found
                kept.append(row)
        return kept

    def find_accounts(self, wanted: list[str]) -> dict[str, int]:
        if self.lookup is None and self.dialect != "postgresql":
            query = select(Account.external_id, Account.id).where(Account.external_id.in_(wanted))
            return {external: id_ for external, id_ in self.session.execute(query)}
        # One array parameter, not thousands of them in an IN list, through the driver's
        # cursor: SQLAlchemy's processing of the array and the rows was most of the time.
        raw = (self.lookup or self.session.connection().connection).driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute(
                "SELECT external_id, id FROM accounts WHERE external_id = ANY(%s::text[])",
                (wanted,),
            )
            found = dict(cursor.fetchall())
        if self.lookup is not None:
            raw.commit()  # end the read, so no transaction stays open while the file is read
        return found

    def dedupe(self, rows: list[Row]) -> list[Row]:
        """Keep one row per key in a batch; warn about every repeat.

        The later row wins the way a second import would: its filled cells replace the
        earlier row's, its empty cells leave them be.
        """
        latest: dict[str, Row] = {}
        for row in rows:
            first = self.first_line.setdefault(hash(row.key), row.line)
            if first != row.line:
                self.report.warnings.append(
                    RowError(
                        self.path,
                        row.line,
                        f"duplicate {self.kind.key} {row.key} (first at line {first});"
                        " the later row wins",
                    )
                )
                row.repeat = True
                if earlier := latest.get(row.key):
                    row.repeat = earlier.repeat
                    row.values = earlier.values | row.values
                    row.attributes = earlier.attributes | row.attributes
            latest[row.key] = row
        return list(latest.values())

    def existing(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The stored NOT NULL values of the keys already in the table, with one SELECT."""
        table = self.kind.table
        columns = [table.c[self.kind.key], *(table.c[name] for name in self.kind.defaulted)]
        if self.consent:
            columns += [table.c[name] for name in consent.COLUMNS]
        found = self.session.execute(select(*columns).where(columns[0].in_(keys))).mappings()
        return {row[self.kind.key]: dict(row) for row in found}

    def params(self, row: Row, stored: dict[str, Any] | None) -> dict[str, Any]:
        params = self.blank | row.values
        for spec in self.kind.fields:
            if spec.default is not None and row.values.get(spec.name) is None:
                params[spec.name] = stored[spec.name] if stored else spec.default
        params[self.kind.key] = row.key
        params["attributes"] = row.attributes
        params["stamp"] = self.now
        return params

    def consent_of(self, row: Row, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        """The consent the row writes (and the params updated to write it), or None."""
        if not self.consent:
            return None
        return consent.change(row.values, stored, source=self.source, now=self.now)

    def store(self, rows: list[Row], existing: dict[str, dict[str, Any]]) -> None:
        """Upsert rows; if the database refuses the batch, find the rows it refuses by halves."""
        params, records = [], []
        for row in rows:
            stored = existing.get(row.key)
            values = self.params(row, stored)
            if self.consent:
                given = self.consent_of(row, stored)
                values.update(given or dict.fromkeys(consent.COLUMNS))
                if given is not None:
                    records.append(
                        consent.record_params(
                            row.key, given, now=self.now, path=self.name, line=row.line
                        )
                    )
            params.append(values)
        try:
            self.session.execute(self.stmt, params)
            if records:
                assert self.records is not None
                self.session.execute(self.records, records)
        except (IntegrityError, DataError) as exc:
            self.session.rollback()
            if self.strict:
                self.dry = True  # what this import wrote is gone; only look for culprits now
            if len(rows) == 1:
                self.bad(rows[0].line, [f"the database refused this row: {_db_reason(exc)}"])
                return
            middle = len(rows) // 2
            self.store(rows[:middle], existing)
            self.store(rows[middle:], existing)
            return
        if self.dry:
            self.session.rollback()
            return
        if not self.strict:
            self.session.commit()
        for row in rows:
            if not row.repeat:
                if row.key in existing:
                    self.report.updated += 1
                else:
                    self.report.inserted += 1


class _Pipeline:
    """Writes each batch in a thread of its own while the next one is read and checked.

    On PostgreSQL the database's work on a batch (COPY, upsert, commit) takes as long as
    checking it in Python, or longer. The reading thread does all the Python work: it checks
    the rows, resolves their accounts (through a connection of its own), deduplicates them and
    encodes the COPY data. The writing thread only hands that to the database and waits, with
    the GIL free, so the two overlap. One batch is written at a time, in file order, and the
    reader waits for it before handing over the next: memory holds two batches at most, and
    each is committed before the bar moves past it.
    """

    def __init__(self, job: _Import, advance: Callable[[int], None]) -> None:
        self.job, self.advance = job, advance
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-writer")
        self.pending: Future[None] | None = None
        bind = job.session.get_bind()
        job.lookup = (bind if isinstance(bind, Engine) else bind.engine).raw_connection()

    def _write(self, batch: list[Row], payload: bytes, position: int) -> None:
        self.job.write(batch, payload)
        self.advance(position)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # re-raises what went wrong in the writer

    def submit(self, batch: list[Row], position: int) -> None:
        job = self.job
        batch = job.prepare(batch)
        if not batch or job.dry:
            self.wait()
            self.advance(position)
            return
        assert job.staging is not None
        payload = job.staging.encode(batch)
        self.wait()
        if job.dry:  # the batch before this one failed a strict import
            return
        self.pending = self.pool.submit(self._write, batch, payload, position)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)
            lookup, self.job.lookup = self.job.lookup, None
            lookup.close()


def import_csv(
    kind: Kind,
    path: Path,
    sessions: sessionmaker[Session],
    *,
    strict: bool = False,
    encoding: str = "utf-8-sig",
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    currencies: Currencies = DEFAULT_CURRENCIES,
    copy: bool = True,
) -> ImportReport:
    """Upsert the accounts or contacts of a CSV file; see the module's notes for the rules.

    On PostgreSQL each batch (``batch_size`` rows, by default
    :data:`~campaigns.defaults.IMPORT_COPY_BATCH_SIZE`) goes through COPY into a staging table
    and one upsert (:mod:`campaigns.imports.staging`); ``copy=False`` uses the batched
    ``executemany`` of SQLite instead (:data:`~campaigns.defaults.IMPORT_BATCH_SIZE` rows),
    which gives the same result, more slowly.

    ``currencies`` is the configured rate table (``Config.currencies``): an account's
    currency must have a rate in it, and an empty one is its base currency.

    ``progress`` is called with the number of bytes read since its last call. Whole-file
    problems (no file, empty, no header, a required column missing, an unknown kind or
    encoding) raise :class:`ImportRowError`; everything else ends up in the report.
    """
    spec = KINDS.get(kind)
    if spec is None:
        raise ImportRowError(f"unknown kind '{kind}'; use accounts or contacts")
    spec = for_currencies(spec, currencies)
    if batch_size is not None and batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    path = Path(path)
    shown = str(path)
    report = ImportReport(kind=kind)
    raw = open_csv(path, encoding)
    sent = 0
    moving = threading.Lock()

    def advance(done: int | None = None) -> None:
        """Report the bytes consumed up to ``done`` (by default, up to where the file is
        read); called by the writing thread, once its batch is committed, too."""
        nonlocal sent
        with moving:
            done = raw.tell() if done is None else done
            if progress is not None and done > sent:
                progress(done - sent)
                sent = done

    with (
        raw,
        io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="") as text,
    ):
        rows = records(text)
        header: Header | None = None
        for line, cells, problem in rows:
            if problem is not None:
                reason = problem.removeprefix("cannot read this row: ")
                raise ImportRowError(f"{shown}:{line}: cannot read the header: {reason}")
            assert cells is not None
            if any(c.strip() for c in cells):
                header, report.warnings = read_header(spec, shown, line, cells, encoding)
                break
        if header is None:
            raise ImportRowError(f"{shown}: no header row (the file holds only blank lines)")
        with sessions() as session:
            job = _Import(
                spec, shown, session, header, strict=strict, encoding=encoding, report=report
            )
            if not copy:
                job.staging = None
            if batch_size is None:
                postgres = job.staging is not None
                batch_size = (
                    defaults.IMPORT_COPY_BATCH_SIZE if postgres else defaults.IMPORT_BATCH_SIZE
                )
            batch: list[Row] = []
            writer = _Pipeline(job, advance) if job.staging is not None else None
            try:
                for read, (line, cells, problem) in enumerate(rows, 1):
                    if problem is not None:
                        job.bad(line, [problem])
                    elif (row := job.parse(line, cells or [])) is not None:
                        batch.append(row)
                    if len(batch) >= batch_size:
                        if writer is not None:
                            writer.submit(batch, raw.tell())
                        else:
                            job.flush(batch)
                            advance()
                        batch = []
                    elif read % batch_size == 0:
                        advance()  # a file of bad rows moves the bar too
            finally:
                if writer is not None:
                    writer.close()
            job.flush(batch)
            if strict and not job.dry:
                session.commit()
            else:
                session.rollback()
        advance()
    report.committed = not (strict and job.dry)
    if not report.committed:
        report.inserted = report.updated = 0
    report.errors.sort(key=lambda e: e.line)
    report.warnings.sort(key=lambda e: e.line)
    return report
