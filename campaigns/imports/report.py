"""What an import did: the counts, and every problem and warning at its line in the file.

Kept apart from the importer so that the CLI and the tests read a report without the
database code that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
