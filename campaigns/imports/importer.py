"""CSV import of accounts and contacts: streamed, checked row by row, upserted in batches.

The file is read with :mod:`csv` one row at a time and written ``batch_size`` rows at a time
with one ``INSERT ... ON CONFLICT DO UPDATE`` keyed on the natural key (``external_id`` for
accounts, ``email`` for contacts), so a file of any size imports in flat memory. The only
thing that grows with the file is the index used to name the first line of a duplicate key
(about 100 bytes a row).

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
  sign must agree with ``currency``.
- Dates are ISO ``YYYY-MM-DD``. E-mail addresses are stored lower-case and must be plain
  ASCII (a Japanese domain gets a hint with its ``xn--`` form).
- A bad row is reported as ``FILE:LINE: reason`` (the physical line where the row starts)
  and skipped; the good rows are kept, committed batch by batch. ``strict=True`` checks
  every row, reports every problem and writes nothing if there is one.
- Bytes that are not valid in ``encoding`` spoil only their rows, with a hint when they
  read as Shift_JIS (cp932), as Excel saves CSV on Japanese Windows.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from sqlalchemy import ColumnElement, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from campaigns import defaults
from campaigns.exceptions import ImportRowError
from campaigns.imports.fields import (
    SIGN_CURRENCIES,
    CellError,
    Parser,
    money_sign,
    parse_boolean,
    parse_currency,
    parse_date,
    parse_email,
    parse_integer,
    parse_locale,
    parse_money,
    parse_status,
    parse_tags,
    parse_text,
    parse_time_zone,
    short,
)
from campaigns.store.models import Account, Contact, ContractStatus, utcnow

Kind = Literal["accounts", "contacts"]


@dataclass(frozen=True)
class RowError:
    """One problem with one row (or a warning about it), at its line in the file."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did. After a failed ``strict`` import nothing was written:
    ``inserted`` and ``updated`` are 0 and ``committed`` is False."""

    kind: str
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    committed: bool = False


# --- what each kind of file holds ------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    parse: Parser
    required: bool = False
    default: Any = None  # for a NOT NULL column: what a new row gets from an empty cell


@dataclass(frozen=True)
class _Kind:
    name: str
    table: Table
    key: str
    fields: tuple[_Field, ...]
    ignored: dict[str, str]  # column -> why it is not imported
    check: Callable[[dict[str, Any], dict[str, str]], list[str]]  # problems across columns
    reference: str | None = None  # a column naming an account, resolved per batch

    @property
    def defaulted(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.default is not None)


def _check_account(values: dict[str, Any], cells: dict[str, str]) -> list[str]:
    problems = []
    start, renewal = values.get("contract_start"), values.get("renewal_date")
    if start and renewal and renewal < start:
        problems.append(f"renewal_date {renewal} is before contract_start {start}")
    for column in ("arr", "ltv"):
        cell = cells.get(column, "")
        sign = None if cell.isascii() and cell.isdigit() else money_sign(cell)
        currency = values.get("currency")
        if sign and (currency or "JPY") not in SIGN_CURRENCIES[sign]:
            named = currency or "not given (JPY by default)"
            problems.append(
                f"{column} '{short(cells[column])}' is in {sign} but currency is {named}"
            )
    return problems


def _no_check(values: dict[str, Any], cells: dict[str, str]) -> list[str]:
    return []


_ACCOUNTS_T: Table = Account.__table__  # type: ignore[assignment]
_CONTACTS_T: Table = Contact.__table__  # type: ignore[assignment]
_SYSTEM = {
    "id": "set by the database",
    "created_at": "set by the database",
    "updated_at": "set by the database",
    "attributes": "other columns become attributes",
}

KINDS: dict[str, _Kind] = {
    "accounts": _Kind(
        name="accounts",
        table=_ACCOUNTS_T,
        key="external_id",
        fields=(
            _Field("external_id", parse_text(_ACCOUNTS_T, "external_id"), required=True),
            _Field("name", parse_text(_ACCOUNTS_T, "name"), required=True),
            _Field("arr", parse_money),
            _Field("ltv", parse_money),
            _Field("currency", parse_currency, default="JPY"),
            _Field("plan", parse_text(_ACCOUNTS_T, "plan")),
            _Field("contract_status", parse_status, default=ContractStatus.ACTIVE.value),
            _Field("contract_start", parse_date),
            _Field("renewal_date", parse_date),
            _Field("industry", parse_text(_ACCOUNTS_T, "industry")),
            _Field("company_size", parse_integer(0, 2**31 - 1)),
            _Field("owner_email", parse_email),
            _Field("health_score", parse_integer(0, 100)),
        ),
        ignored={**_SYSTEM, "tier": "computed from the segments file"},
        check=_check_account,
    ),
    "contacts": _Kind(
        name="contacts",
        table=_CONTACTS_T,
        key="email",
        fields=(
            _Field("email", parse_email, required=True),
            _Field("account_external_id", parse_text(_ACCOUNTS_T, "external_id")),
            _Field("name", parse_text(_CONTACTS_T, "name")),
            _Field("role", parse_text(_CONTACTS_T, "role")),
            _Field("locale", parse_locale, default=defaults.DEFAULT_LOCALE),
            _Field("time_zone", parse_time_zone, default=defaults.DEFAULT_TIME_ZONE),
            _Field("subscribed", parse_boolean, default=True),
            _Field("tags", parse_tags, default=[]),
        ),
        ignored={**_SYSTEM, "account_id": "use account_external_id"},
        check=_no_check,
        reference="account_external_id",
    ),
}


# --- reading the file ------------------------------------------------------------------

_SUSPECT = re.compile("[\x00\ud800-\udfff]")
_UNDECODED = re.compile("[\ud800-\udfff]")


def _column_key(header: str) -> str:
    return re.sub(r"[\s-]+", "_", header.strip().lstrip("\ufeff").strip().lower())


def _undecodable(value: str, encoding: str, name: str) -> str:
    """The reason for a cell holding bytes the encoding could not read, with a hint."""
    codec = codecs.lookup(encoding).name
    raw = value.encode("utf-8" if codec == "utf-8-sig" else codec, "surrogateescape")
    readable = "UTF-8" if codec.startswith("utf-8") else encoding
    for other, label, hint in (
        ("cp932", "Shift_JIS", 'save it as "CSV UTF-8" or pass --encoding cp932'),
        ("utf-8", "UTF-8", "pass --encoding utf-8"),
    ):
        if codecs.lookup(other).name == codec:
            continue
        try:
            text = raw.decode(other)
        except UnicodeDecodeError:
            continue
        if not text.isascii():
            sample = text if len(text) <= 30 else text[:27] + "..."
            return f"{name} is not valid {readable} (as {label} it reads '{sample}'); {hint}"
    return f'{name} holds bytes that are not valid {readable}; save the file as "CSV UTF-8"'


def _records(text: io.TextIOBase) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(first line, cells, None) for each row, or (line, None, reason) for an unreadable one."""
    reader = csv.reader(text)
    last = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "field limit" in reason:
                reason = f"a field is longer than {csv.field_size_limit():,} characters"
            yield last + 1, None, f"cannot read this row: {reason}"
        else:
            yield last + 1, row, None
        last = reader.line_num


@dataclass
class _Header:
    line: int
    fields: list[tuple[int, _Field]]
    attributes: list[tuple[int, str]]
    unnamed: list[int]
    width: int  # cells in the header line
    needed: int  # cells a row must have: up to the last named column


def _read_header(
    kind: _Kind, path: str, line: int, cells: list[str], encoding: str
) -> tuple[_Header, list[RowError]]:
    known = {f.name: f for f in kind.fields}
    header = _Header(line, [], [], [], len(cells), 0)
    warnings: list[RowError] = []
    seen: dict[str, int] = {}
    for index, cell in enumerate(cells):
        if _UNDECODED.search(cell):
            raise ImportRowError(f"{path}:{line}: {_undecodable(cell, encoding, 'the header')}")
        if "\x00" in cell:
            raise ImportRowError(
                f'{path}:{line}: the header holds NUL bytes; is the file UTF-16? save it as "CSV UTF-8"'
            )
        name = _column_key(cell)
        if not name:
            header.unnamed.append(index)
            continue
        if name in seen:
            raise ImportRowError(
                f"{path}:{line}: column '{name}' appears twice (columns {seen[name] + 1} and {index + 1})"
            )
        seen[name] = index
        header.needed = index + 1
        if name in known:
            header.fields.append((index, known[name]))
        elif name in kind.ignored:
            warnings.append(
                RowError(path, line, f"column '{name}' is ignored ({kind.ignored[name]})")
            )
        else:
            header.attributes.append((index, name))
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)
            if close:
                warnings.append(
                    RowError(
                        path,
                        line,
                        f"column '{name}' is kept as an attribute (did you mean '{close[0]}'?)",
                    )
                )
    for f in kind.fields:
        if f.required and f.name not in seen:
            hint = ""
            if len(cells) == 1 and (";" in cells[0] or "\t" in cells[0]):
                hint = "; the file seems to separate fields with ';' or tabs, save it with commas"
            elif any("@" in c or c.strip().isdigit() for c in cells):
                hint = f"; the first line must be a header naming the columns, e.g. {','.join(x.name for x in kind.fields[:4])}"
            elif close := difflib.get_close_matches(f.name, list(seen), n=1, cutoff=0.6):
                hint = f" (did you mean '{close[0]}'?)"
            raise ImportRowError(f"{path}:{line}: missing required column '{f.name}'{hint}")
    return header, warnings


# --- writing ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    line: int
    key: str
    values: dict[str, Any]
    attributes: dict[str, str]
    repeat: bool = False  # the key was already written from an earlier line of this file


def _merge_json(dialect: str, stored: Any, new: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return stored.op("||")(new)
    return func.json_patch(stored, new)


def _upsert(kind: _Kind, dialect: str, merge_attributes: bool) -> Any:
    table = kind.table
    stamp = bindparam("stamp", type_=table.c.updated_at.type)  # one value for every row
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(created_at=stamp, updated_at=stamp)
    new = stmt.excluded
    columns = [
        c.name
        for c in table.c
        if c.name not in ("id", "tier", "created_at", "attributes", kind.key)
    ]
    changes: dict[str, Any] = {}
    for name in columns:
        column = table.c[name]
        # An empty cell never erases: nullable columns keep what is stored; NOT NULL ones
        # arrive already filled with the stored value (see _Import._params).
        changes[name] = func.coalesce(new[name], column) if column.nullable else new[name]
    if merge_attributes:
        changes["attributes"] = _merge_json(dialect, table.c.attributes, new.attributes)
    return stmt.on_conflict_do_update(index_elements=[table.c[kind.key]], set_=changes)


def _db_reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines() or ["unknown error"]
    return lines[0][:200]


class _Import:
    def __init__(
        self,
        kind: _Kind,
        path: str,
        session: Session,
        header: _Header,
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
        # hash(key) -> first line; ints keep this index small on files of a million rows
        self.first_line: dict[int, int] = {}
        self.warned_unnamed: set[int] = set()
        self.blank: dict[str, Any] = {
            c.name: None
            for c in kind.table.c
            if c.name not in ("id", "tier", "created_at", "updated_at")
        }

    # rows -> values

    def bad(self, line: int, reasons: Sequence[str]) -> None:
        self.report.errors.extend(RowError(self.path, line, r) for r in reasons)
        self.report.skipped += 1
        if self.strict:
            self.dry = True

    def parse(self, line: int, cells: list[str]) -> _Row | None:
        joined = "".join(cells)
        if not joined.strip():
            return None  # a blank line or a row of commas
        if _SUSPECT.search(joined):
            self.bad(line, [self.suspect_reason(cells)])
            return None
        width = self.header.width
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            self.bad(
                line,
                [
                    f"the row has {len(cells)} fields but the header has {width}; put values that contain commas in double quotes"
                ],
            )
            return None
        if len(cells) < self.header.needed:
            self.bad(
                line,
                [
                    f"the row has {len(cells)} fields but the header has {width}; is a comma missing or the row cut short?"
                ],
            )
            return None
        problems: list[str] = []
        values: dict[str, Any] = {}
        raw: dict[str, str] = {}
        for index, spec in self.header.fields:
            cell = cells[index].strip()
            if not cell:
                if spec.required:
                    problems.append(f"empty {spec.name}; every row needs one")
                continue
            raw[spec.name] = cell
            try:
                values[spec.name] = spec.parse(cell, spec.name)
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
                        f"column {index + 1} has no name in the header; its values are not imported",
                    )
                )
        attributes = {
            name: cells[i].strip() for i, name in self.header.attributes if cells[i].strip()
        }
        return _Row(line, values.pop(self.kind.key), values, attributes)

    def suspect_reason(self, cells: list[str]) -> str:
        names = {i: spec.name for i, spec in self.header.fields} | dict(self.header.attributes)
        for index, cell in enumerate(cells):
            name = names.get(index, f"column {index + 1}")
            if _UNDECODED.search(cell):
                return _undecodable(cell, self.encoding, name)
            if "\x00" in cell:
                return f'{name} holds a NUL byte (0x00); is the file UTF-16 or damaged? save it as "CSV UTF-8"'
        return "unreadable row"

    # values -> database

    def flush(self, rows: list[_Row]) -> None:
        if self.kind.reference:
            rows = self.resolve(rows)
        rows = self.dedupe(rows)
        if rows and not self.dry:
            self.store(rows, self.existing([r.key for r in rows]))

    def resolve(self, rows: list[_Row]) -> list[_Row]:
        """Replace each account_external_id by the account's id, with one SELECT per batch."""
        assert self.kind.reference
        wanted = {r.values[self.kind.reference] for r in rows if self.kind.reference in r.values}
        ids: dict[str, int] = {}
        if wanted:
            query = select(Account.external_id, Account.id).where(
                Account.external_id.in_(sorted(wanted))
            )
            ids = {external: id_ for external, id_ in self.session.execute(query)}
        kept = []
        for row in rows:
            ref = row.values.pop(self.kind.reference, None)
            if ref is not None and ref not in ids:
                self.bad(
                    row.line, [f"unknown {self.kind.reference} '{ref}'; import that account first"]
                )
                continue
            if ref is not None:
                row.values["account_id"] = ids[ref]
            kept.append(row)
        return kept

    def dedupe(self, rows: list[_Row]) -> list[_Row]:
        """Keep one row per key in a batch; warn about every repeat.

        The later row wins the way a second import would: its filled cells replace the
        earlier row's, its empty cells leave them be.
        """
        latest: dict[str, _Row] = {}
        for row in rows:
            first = self.first_line.setdefault(hash(row.key), row.line)
            if first != row.line:
                self.report.warnings.append(
                    RowError(
                        self.path,
                        row.line,
                        f"duplicate {self.kind.key} {row.key} (first at line {first}); the later row wins",
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
        found = self.session.execute(select(*columns).where(columns[0].in_(keys))).mappings()
        return {row[self.kind.key]: dict(row) for row in found}

    def params(self, row: _Row, stored: dict[str, Any] | None) -> dict[str, Any]:
        params = self.blank | row.values
        for spec in self.kind.fields:
            if spec.default is not None and row.values.get(spec.name) is None:
                params[spec.name] = stored[spec.name] if stored else spec.default
        params[self.kind.key] = row.key
        params["attributes"] = row.attributes
        params["stamp"] = self.now
        return params

    def store(self, rows: list[_Row], existing: dict[str, dict[str, Any]]) -> None:
        """Upsert rows; if the database refuses the batch, find the rows it refuses by halves."""
        try:
            self.session.execute(self.stmt, [self.params(r, existing.get(r.key)) for r in rows])
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


def _open(path: Path, encoding: str) -> BinaryIO:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ImportRowError(
            f"unknown encoding '{encoding}'; use utf-8-sig (the default) or cp932"
        ) from None
    if not getattr(info, "_is_text_encoding", True):
        raise ImportRowError(
            f"'{encoding}' is not a text encoding; use utf-8-sig (the default) or cp932"
        )
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise ImportRowError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportRowError(f"{path}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise ImportRowError(f"{path}: cannot be read ({exc.strerror})") from None
    start = raw.read(4)
    raw.seek(0)
    if not start:
        raw.close()
        raise ImportRowError(f"{path}: the file is empty")
    if start[:2] in (b"\xff\xfe", b"\xfe\xff") and not info.name.startswith("utf-16"):
        raw.close()
        raise ImportRowError(
            f'{path}: the file is UTF-16 ("Unicode Text"); save it as "CSV UTF-8" or pass --encoding utf-16'
        )
    return raw


def import_csv(
    kind: Kind,
    path: Path,
    sessions: sessionmaker[Session],
    *,
    strict: bool = False,
    encoding: str = "utf-8-sig",
    batch_size: int = defaults.IMPORT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Upsert the accounts or contacts of a CSV file; see the module's notes for the rules.

    ``progress`` is called with the number of bytes read since its last call. Whole-file
    problems (no file, empty, no header, a required column missing, an unknown kind or
    encoding) raise :class:`ImportRowError`; everything else ends up in the report.
    """
    spec = KINDS.get(kind)
    if spec is None:
        raise ImportRowError(f"unknown kind '{kind}'; use accounts or contacts")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    path = Path(path)
    shown = str(path)
    report = ImportReport(kind=kind)
    raw = _open(path, encoding)
    sent = 0

    def advance() -> None:
        nonlocal sent
        if progress is not None and (done := raw.tell()) > sent:
            progress(done - sent)
            sent = done

    with (
        raw,
        io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="") as text,
    ):
        records = _records(text)
        header: _Header | None = None
        for line, cells, problem in records:
            if problem is not None:
                raise ImportRowError(
                    f"{shown}:{line}: cannot read the header: {problem.removeprefix('cannot read this row: ')}"
                )
            assert cells is not None
            if any(c.strip() for c in cells):
                header, report.warnings = _read_header(spec, shown, line, cells, encoding)
                break
        if header is None:
            raise ImportRowError(f"{shown}: no header row (the file holds only blank lines)")
        with sessions() as session:
            job = _Import(
                spec, shown, session, header, strict=strict, encoding=encoding, report=report
            )
            batch: list[_Row] = []
            for read, (line, cells, problem) in enumerate(records, 1):
                if problem is not None:
                    job.bad(line, [problem])
                elif (row := job.parse(line, cells or [])) is not None:
                    batch.append(row)
                if len(batch) >= batch_size:
                    job.flush(batch)
                    batch = []
                    advance()
                elif read % batch_size == 0:
                    advance()  # a file of bad rows moves the bar too
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
