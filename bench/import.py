"""Benchmark: import generated contacts (and their accounts) from CSV into SQLite or
PostgreSQL.

Writes the sample accounts and contacts as CSV files (UTF-8 with BOM, as Excel saves them)
into a temporary folder, imports them with ``campaigns.imports.importer.import_csv`` into a
fresh database (a SQLite file in WAL mode, or a private PostgreSQL database on the shared
server, created and dropped here; ``--postgres-url`` names the server), then imports the
contacts again (every row an update), and prints rows per second and memory: the peak RSS of
the process, how much the imports added to it, and (with ``--tracemalloc``) the peak of
Python allocations during the import.

Usage: python bench/import.py [--database sqlite|postgres] [--contacts 1000000]
[--per-account 4] [--batch-size N] [--consent] [--tracemalloc]
Target (issue 15): 1M contacts in under 30 s on PostgreSQL (COPY into a staging table, then
one upsert per batch); batched on SQLite; memory flat (nothing held per row).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pgkit import postgres_database  # noqa: E402

from campaigns import defaults  # noqa: E402
from campaigns.imports.importer import ImportReport, import_csv  # noqa: E402
from campaigns.imports.samples import generate_accounts_csv, generate_contacts_csv  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402


def rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    label: str, kind: str, path: Path, sessions, batch_size: int | None, trace: bool
) -> ImportReport:
    before = rss_mb()
    if trace:
        tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    report = import_csv(kind, path, sessions, batch_size=batch_size)  # type: ignore[arg-type]
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    rows = report.inserted + report.updated + report.skipped
    line = (
        f"{label:<22} {rows:>8,} rows in {elapsed:6.2f} s = {rows / elapsed:>8,.0f} rows/s"
        f"  ({report.inserted:,} new, {report.updated:,} updated, {report.skipped:,} skipped)"
        f"  peak RSS {rss_mb():.0f} MB (+{rss_mb() - before:.0f})"
        f"  [{cpu:.1f} s CPU in this process; the machine's load was {os.getloadavg()[0]:.1f}]"
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
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"rows per batch (default {defaults.IMPORT_BATCH_SIZE:,} on SQLite,"
        f" {defaults.IMPORT_COPY_BATCH_SIZE:,} on PostgreSQL)",
    )
    parser.add_argument(
        "--consent",
        action="store_true",
        help="contacts carry country and consent columns (each row adds a consent record)",
    )
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
            folder / "contacts.csv", args.contacts, accounts=accounts, consent=args.consent
        )
        print(
            f"generated {accounts:,} accounts ({accounts_csv.stat().st_size / 2**20:.1f} MB) and "
            f"{args.contacts:,} contacts ({contacts_csv.stat().st_size / 2**20:.1f} MB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        drop: Callable[[], None] = lambda: None  # noqa: E731
        if args.database == "postgres":
            url, drop = postgres_database(args.postgres_url, "import")
            batch = args.batch_size or defaults.IMPORT_COPY_BATCH_SIZE
            label = "PostgreSQL (COPY into a staging table, one upsert per batch)"
        else:
            url = f"sqlite:///{folder}/bench.db"
            batch = args.batch_size or defaults.IMPORT_BATCH_SIZE
            label = "SQLite (WAL, executemany of the upsert)"
        engine = make_engine(url)
        migrate(engine)
        sessions = make_sessionmaker(engine)
        print(f"{label}, batch size {batch:,}; peak RSS before importing: {rss_mb():.0f} MB")
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
        drop()
    print(f"peak RSS of the whole run: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
