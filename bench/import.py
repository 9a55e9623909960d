"""Benchmark: import 100k generated contacts (and their accounts) from CSV into SQLite.

Writes the sample accounts and contacts as CSV files (UTF-8 with BOM, as Excel saves them)
into a temporary folder, imports them into a fresh SQLite database (WAL) with
``campaigns.imports.importer.import_csv``, then imports the contacts again (every row an update),
and prints rows per second and memory: the peak RSS of the process, how much the imports
added to it, and (with ``--tracemalloc``) the peak of Python allocations during the import.

Usage: python bench/import.py [--contacts 100000] [--per-account 4] [--batch-size 2000]
[--tracemalloc]
Target (issue): 100k contacts import without holding them in memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaigns import defaults  # noqa: E402
from campaigns.imports.importer import ImportReport, import_csv  # noqa: E402
from campaigns.imports.samples import generate_accounts_csv, generate_contacts_csv  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402


def rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(label: str, kind: str, path: Path, sessions, batch_size: int, trace: bool) -> ImportReport:
    before = rss_mb()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    report = import_csv(kind, path, sessions, batch_size=batch_size)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    rows = report.inserted + report.updated + report.skipped
    line = (
        f"{label:<22} {rows:>8,} rows in {elapsed:6.2f} s = {rows / elapsed:>8,.0f} rows/s"
        f"  ({report.inserted:,} new, {report.updated:,} updated, {report.skipped:,} skipped)"
        f"  peak RSS {rss_mb():.0f} MB (+{rss_mb() - before:.0f})"
    )
    if trace:
        line += f", tracemalloc peak {tracemalloc.get_traced_memory()[1] / 2**20:.1f} MB"
        tracemalloc.stop()
    print(line)
    for error in report.errors[:5]:
        print(f"  {error}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--per-account", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=defaults.IMPORT_BATCH_SIZE)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace Python allocations (slower)"
    )
    args = parser.parse_args()

    today = date(2026, 11, 23)
    accounts = max(1, args.contacts // args.per_account)
    with tempfile.TemporaryDirectory(prefix="campaigns-bench-") as name:
        folder = Path(name)
        started = time.perf_counter()
        accounts_csv = generate_accounts_csv(folder / "accounts.csv", accounts, today)
        contacts_csv = generate_contacts_csv(
            folder / "contacts.csv", args.contacts, accounts=accounts
        )
        print(
            f"generated {accounts:,} accounts ({accounts_csv.stat().st_size / 2**20:.1f} MB) and "
            f"{args.contacts:,} contacts ({contacts_csv.stat().st_size / 2**20:.1f} MB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        engine = make_engine(f"sqlite:///{folder}/bench.db")
        migrate(engine)
        sessions = make_sessionmaker(engine)
        print(
            f"SQLite (WAL), batch size {args.batch_size:,}; peak RSS before importing: "
            f"{rss_mb():.0f} MB"
        )
        run("accounts", "accounts", accounts_csv, sessions, args.batch_size, args.tracemalloc)
        run(
            "contacts (insert)",
            "contacts",
            contacts_csv,
            sessions,
            args.batch_size,
            args.tracemalloc,
        )
        run(
            "contacts (update)",
            "contacts",
            contacts_csv,
            sessions,
            args.batch_size,
            args.tracemalloc,
        )
        engine.dispose()
    print(f"peak RSS of the whole run: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
