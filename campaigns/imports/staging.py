"""The PostgreSQL path of a CSV import: COPY a batch of checked rows into a temporary staging
table, then write it with one statement.

The batched ``executemany`` of the upsert costs more in binding parameters than the database
spends writing (SQLAlchemy processes every value of every row). Here the checked rows go out
with ``COPY ... FROM STDIN`` (psycopg 3) into a temporary table (not WAL-logged, dropped at
commit), and one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` applies the import's rules in
SQL, exactly as :mod:`campaigns.imports.importer` does with parameters:

- the stored row is joined in (``LEFT JOIN`` on the key), so an empty cell keeps the stored
  value (``coalesce``) and a new row gets the column's default;
- ``attributes`` are merged key by key (``||``), ``tags`` replace;
- the consent columns are written together, and only when they change, with a
  ``consent_records`` entry per change in the same statement (a data-modifying CTE;
  :mod:`campaigns.imports.consent` states the rule);
- ``RETURNING (xmax = 0)`` tells inserted rows from updated ones.

Rows arrive checked, deduplicated and with ``account_id`` resolved by the importer, which
still owns line numbers and errors. A batch the database refuses (a constraint the checks do
not know) raises, and the importer finds the rows at fault with its parameter path.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import JSON
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from campaigns.imports import consent
from campaigns.imports.kinds import FileKind, Row

_DIALECT = postgresql.dialect()
_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A SQL string literal; ``%`` doubled, as the statement goes through psycopg's
    parameter formatting."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


class Staging:
    """The staging table of one kind of file and the statement that writes it."""

    def __init__(
        self,
        kind: FileKind,
        *,
        attributes: Sequence[str],
        present: Sequence[str] | None = None,
        consent: bool = True,
    ) -> None:
        """``present``: the written columns the file has (by default all of them);
        ``consent``: whether it has ``consent_basis``, so rows may change the consent."""
        self.kind = kind
        # the file's attribute columns, staged as text and built into JSON by the database
        self.attributes = list(attributes)
        self.merge_attributes = bool(self.attributes)
        self.table = f"import_staging_{kind.name}"
        table = kind.table
        self.consent = kind.consent and consent
        given = set(kind.written if present is None else present)
        # A file that cannot change consent stages only its own columns; one that can stages
        # them all, as the consent rule reads the four columns together.
        self.columns = [n for n in kind.written if self.consent or n in given]
        self.json = {
            name
            for name in self.columns
            if isinstance(table.c[name].type.dialect_impl(_DIALECT), JSON)
        }
        self.defaults = {f.name: f.default for f in kind.fields if f.default is not None}
        types = {name: table.c[name].type.compile(dialect=_DIALECT) for name in self.columns}
        staged = [
            "line integer",
            "repeated boolean",
            f"{_quote(kind.key)} {table.c[kind.key].type.compile(dialect=_DIALECT)}",
            *(f"{_quote(name)} {types[name]}" for name in self.columns),
            *(f"a_{i} text" for i in range(len(self.attributes))),
        ]
        self.create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.table} ({', '.join(staged)})"
            " ON COMMIT DROP"
        )
        copied = [
            "line",
            "repeated",
            _quote(kind.key),
            *map(_quote, self.columns),
            *(f"a_{i}" for i in range(len(self.attributes))),
        ]
        self.copy_sql = f"COPY {self.table} ({', '.join(copied)}) FROM STDIN (FORMAT csv)"
        self.upsert = self._upsert() if self.consent else self._plain_upsert()

    def encode(self, rows: Sequence[Row]) -> bytes:
        """The rows as COPY's CSV in UTF-8: an unquoted empty field is NULL (the parsers never
        give an empty string), JSON columns as JSON text. Done by the reading thread, so the
        writing one only waits on the database; :mod:`csv`'s writer is C, ``write_row`` per
        value is not."""
        out = io.StringIO()
        write = csv.writer(out, lineterminator="\n").writerow
        columns, attributes = self.columns, self.attributes
        json_at = [3 + i for i, name in enumerate(columns) if name in self.json]
        dumps = _ENCODER.encode
        written: dict[tuple[str, ...], str] = {}  # tags: the same few lists on every row
        for row in rows:
            cells: list[Any] = [row.line, row.repeat, row.key, *map(row.values.get, columns)]
            for at in json_at:
                value = cells[at]
                if value is None:
                    continue
                if isinstance(value, list):
                    key = tuple(value)
                    cells[at] = written.get(key) or written.setdefault(key, dumps(value))
                else:
                    cells[at] = dumps(value)
            if attributes:
                cells.extend(map(row.attributes.get, attributes))
            write(cells)
        return out.getvalue().encode()

    def _value(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        return Jsonb(value) if name in self.json else value

    def _upsert(self) -> str:
        kind, target = self.kind, self.kind.table.name
        key = _quote(kind.key)
        changed = "false"
        if kind.consent:
            details = " OR ".join(
                f"(s.{n} IS NOT NULL AND s.{n} IS DISTINCT FROM t.{n})" for n in consent.DETAILS
            )
            changed = (
                "(s.consent_basis IS NOT NULL AND (t.id IS NULL"
                f" OR s.consent_basis IS DISTINCT FROM t.consent_basis OR {details}))"
            )
        stored = ", ".join(f"t.{_quote(n)} AS {_quote('t_' + n)}" for n in self.columns)
        values: list[str] = []
        for name in self.columns:
            col, old = _quote(name), _quote("t_" + name)
            if kind.consent and name in consent.COLUMNS:
                new = {
                    "consent_source": "coalesce(consent_source, %(source)s)",
                    "consent_at": "coalesce(consent_at, %(now)s)",
                }.get(name, col)
                values.append(f"CASE WHEN consent_changed THEN {new} ELSE {old} END")
            elif name in self.defaults:
                values.append(f"coalesce({col}, {old}, %(d_{name})s)")
            else:
                values.append(f"coalesce({col}, {old})")
        attributes = "coalesce(t_attributes, '{}'::jsonb)"
        if self.merge_attributes:
            attributes += f" || {self._new_attributes()}"
        names = ", ".join(_quote(n) for n in self.columns)
        sets = [f"{_quote(n)} = EXCLUDED.{_quote(n)}" for n in self.columns]
        sets.append("updated_at = EXCLUDED.updated_at")
        if self.merge_attributes:
            sets.append("attributes = EXCLUDED.attributes")
        records = ""
        if kind.consent:
            records = f"""
, records AS (
    INSERT INTO consent_records
        (contact_id, email_hash, action, basis, source, wording, at, recorded_at, detail)
    SELECT up.id, encode(sha256(convert_to(src.{key}, 'UTF8')), 'hex'), 'granted',
        src.consent_basis, coalesce(src.consent_source, %(source)s), src.consent_wording,
        coalesce(src.consent_at, %(now)s), %(now)s,
        jsonb_build_object('file', %(file)s::text, 'line', src.line)
    FROM up JOIN src ON src.{key} = up.{key}
    WHERE src.consent_changed
)"""
        return f"""
WITH src AS (
    SELECT s.*, {stored}, t.id AS t_id, t.attributes AS t_attributes, {changed} AS consent_changed
    FROM {self.table} s LEFT JOIN {target} t ON t.{key} = s.{key}
), up AS (
    INSERT INTO {target} ({key}, {names}, attributes, created_at, updated_at)
    SELECT {key}, {", ".join(values)}, {attributes}, %(now)s, %(now)s FROM src
    ON CONFLICT ({key}) DO UPDATE SET {", ".join(sets)}
    RETURNING id, {key}, (xmax = 0) AS inserted
){records}
SELECT (SELECT count(*) FILTER (WHERE inserted) FROM up)
        - (SELECT count(*) FROM src WHERE repeated AND t_id IS NULL),
    (SELECT count(*) FILTER (WHERE NOT inserted) FROM up)
        - (SELECT count(*) FROM src WHERE repeated AND t_id IS NOT NULL)
"""

    def _new_attributes(self) -> str:
        """The JSON object of the row's attribute cells (empty ones left out)."""
        pairs = [f"{_literal(name)}, a_{i}" for i, name in enumerate(self.attributes)]
        chunks = [  # a function takes 100 arguments at most
            f"jsonb_strip_nulls(jsonb_build_object({', '.join(pairs[start : start + 50])}))"
            for start in range(0, len(pairs), 50)
        ]
        return " || ".join(chunks) or "'{}'::jsonb"

    def _plain_upsert(self) -> str:
        """The statement for a file that leaves consent alone: the conflict clause merges with
        the stored row itself, and the stored row is joined in only for the NOT NULL columns
        the file has, whose empty cells keep the stored value (the inserted row must not be
        NULL there). A stored row the file leaves as it is gets no new version: re-importing
        last night's export rewrites only the rows that changed. Such a row still counts as
        updated, as on the batched path."""
        kind, target = self.kind, self.kind.table.name
        key, table = _quote(kind.key), kind.table
        required = {f.name for f in kind.fields if f.required}
        stored = [n for n in self.columns if not table.c[n].nullable and n not in required]
        values: list[str] = []
        sets: dict[str, str] = {}  # column -> its new value on a stored row
        for name in kind.written:
            col = _quote(name)
            if name not in self.columns:
                # absent from the file: a new row gets the default, a stored one is left be
                values.append(f"%(d_{name})s" if name in self.defaults else "NULL")
                continue
            if name in stored:
                fallback = f", %(d_{name})s" if name in self.defaults else ""
                values.append(f"coalesce(s.{col}, t.{col}{fallback})")
                sets[col] = f"EXCLUDED.{col}"
            else:
                values.append(f"s.{col}")
                sets[col] = f"coalesce(EXCLUDED.{col}, {target}.{col})"
        if self.merge_attributes:
            sets["attributes"] = f"{target}.attributes || EXCLUDED.attributes"
        changed = (
            f"({', '.join(f'{target}.{col}' for col in sets)})"
            f" IS DISTINCT FROM ({', '.join(sets.values())})"
        )
        assignments = [f"{col} = {new}" for col, new in sets.items()]
        assignments.append("updated_at = EXCLUDED.updated_at")
        join = f" LEFT JOIN {target} t ON t.{key} = s.{key}" if stored else ""
        names = ", ".join(_quote(n) for n in kind.written)
        return f"""
WITH up AS (
    INSERT INTO {target} ({key}, {names}, attributes, created_at, updated_at)
    SELECT s.{key}, {", ".join(values)}, {self._new_attributes()}, %(now)s, %(now)s
    FROM {self.table} s{join}
    ON CONFLICT ({key}) DO UPDATE SET {", ".join(assignments)}
    WHERE {changed if sets else "false"}
    RETURNING {key}, (xmax = 0) AS inserted
), new AS (
    SELECT count(*) AS n FROM up WHERE inserted AND {key} <> ALL(%(repeated)s::text[])
)
SELECT new.n, (SELECT count(*) FROM {self.table} WHERE NOT repeated) - new.n FROM new
"""

    def write(
        self,
        session: Session,
        payload: bytes,
        *,
        repeated: Sequence[str],
        now: datetime,
        source: str,
        file: str,
    ) -> tuple[int, int]:
        """Write a batch (``payload`` from :meth:`encode`) in the session's transaction;
        (inserted, updated), not counting the ``repeated`` keys, which an earlier batch of
        the file wrote already."""
        raw = session.connection().connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute(self.create)
            cursor.execute(f"TRUNCATE {self.table}")
            with cursor.copy(self.copy_sql) as copy:
                copy.write(payload)
            # JIT compiling this statement costs a second per batch, more than it saves
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '256MB'")
            params: dict[str, Any] = {
                "now": now,
                "source": source,
                "file": file,
                "repeated": list(repeated),
            }
            params.update(
                (f"d_{name}", self._value(name, value)) for name, value in self.defaults.items()
            )
            cursor.execute(self.upsert, params)
            counted = cursor.fetchone()
        assert counted is not None
        return int(counted[0]), int(counted[1])
