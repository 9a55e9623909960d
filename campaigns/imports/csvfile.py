"""Reading a CSV file: opening it in its encoding, its rows with their line numbers, the header.

Whole-file problems (no file, empty, UTF-16 without being told, a header that names no
required column) raise :class:`~campaigns.exceptions.ImportRowError` with one line a user
can act on. Bytes that are not valid in the encoding are kept as surrogates
(``surrogateescape``) so that they spoil only their rows, and :func:`undecodable` says how
they read in the other usual encoding (Shift_JIS, as Excel saves CSV on Japanese Windows).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from campaigns.exceptions import ImportRowError
from campaigns.imports.kinds import Field, FileKind
from campaigns.imports.report import RowError

SUSPECT = re.compile("[\x00\ud800-\udfff]")
UNDECODED = re.compile("[\ud800-\udfff]")


def column_key(header: str) -> str:
    return re.sub(r"[\s-]+", "_", header.strip().lstrip("\ufeff").strip().lower())


def undecodable(value: str, encoding: str, name: str) -> str:
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


def records(text: io.TextIOBase) -> Iterator[tuple[int, list[str] | None, str | None]]:
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
class Header:
    line: int
    fields: list[tuple[int, Field]]
    attributes: list[tuple[int, str]]
    unnamed: list[int]
    width: int  # cells in the header line
    needed: int  # cells a row must have: up to the last named column


def read_header(
    kind: FileKind, path: str, line: int, cells: list[str], encoding: str
) -> tuple[Header, list[RowError]]:
    known = {f.name: f for f in kind.fields}
    header = Header(line, [], [], [], len(cells), 0)
    warnings: list[RowError] = []
    seen: dict[str, int] = {}
    for index, cell in enumerate(cells):
        if UNDECODED.search(cell):
            raise ImportRowError(f"{path}:{line}: {undecodable(cell, encoding, 'the header')}")
        if "\x00" in cell:
            raise ImportRowError(
                f"{path}:{line}: the header holds NUL bytes; is the file UTF-16?"
                ' save it as "CSV UTF-8"'
            )
        name = column_key(cell)
        if not name:
            header.unnamed.append(index)
            continue
        if name in seen:
            raise ImportRowError(
                f"{path}:{line}: column '{name}' appears twice"
                f" (columns {seen[name] + 1} and {index + 1})"
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
                example = ",".join(x.name for x in kind.fields[:4])
                hint = f"; the first line must be a header naming the columns, e.g. {example}"
            elif close := difflib.get_close_matches(f.name, list(seen), n=1, cutoff=0.6):
                hint = f" (did you mean '{close[0]}'?)"
            raise ImportRowError(f"{path}:{line}: missing required column '{f.name}'{hint}")
    return header, warnings


def open_csv(path: Path, encoding: str) -> BinaryIO:
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
            f'{path}: the file is UTF-16 ("Unicode Text");'
            ' save it as "CSV UTF-8" or pass --encoding utf-16'
        )
    return raw
