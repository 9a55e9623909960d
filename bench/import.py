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
[--per-account 4] [--batch-size N] [--consent] [--tracemalloc] [--floor]

Machines differ: the first line printed is a yardstick of this one's speed (a fixed Python
loop), and ``--floor`` adds PostgreSQL's own time for the same number of bare contact rows
(one ``INSERT ... SELECT`` from ``generate_series``, with the table's indexes and foreign key,
no CSV and no Python), the most any importer could reach on this machine.
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
import timeit
import tracemalloc
from collections.abc import Callable
from datetime import date
from pathlib import Path

from sqlalchemy import text

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


def yardstick_ms() -> float:
    """The best of 5 runs of a fixed Python loop, in ms."""
    runs = timeit.repeat("sum(i * i for i in range(1_000_000))", number=1, repeat=5)
    return min(runs) * 1000


def floor(server: str, contacts: int, per_account: int) -> None:
    """Time PostgreSQL inserting ``contacts`` bare rows, in a database of its own."""
    url, drop = postgres_database(server, "import_floor")
    engine = make_engine(url)
    try:
        migrate(engine)
        accounts = max(1, contacts // per_account)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (external_id, name, currency, contract_status,"
                    " attributes, created_at, updated_at) SELECT 'ACC-' || g, 'Account ' || g,"
                    " 'JPY', 'active', '{}'::jsonb, now(), now() FROM generate_series(1, :n) g"
                ),
                {"n": accounts},
            )
            first = conn.execute(text("SELECT min(id) FROM accounts")).scalar_one()
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO contacts (email, account_id, name, role, locale, time_zone,"
                    " subscribed, tags, attributes, opt_out, created_at, updated_at)"
                    " SELECT 'p' || g || '@example.jp', :first + g % :accounts, '名前 ' || g,"
                    " 'admin', 'ja', 'Asia/Tokyo', true, '[]'::jsonb, '{}'::jsonb, '[]'::jsonb,"
                    " now(), now() FROM generate_series(1, :n) g"
                ),
                {"first": first, "accounts": accounts, "n": contacts},
            )
        elapsed = time.perf_counter() - started
        print(
            f"PostgreSQL's floor: {contacts:,} bare contact rows by one INSERT ... SELECT in"
            f" {elapsed:.2f} s = {contacts / elapsed:,.0f} rows/s (indexes and foreign key"
            " included; no CSV, no checks, no Python)"
        )
    finally:
        engine.dispose()
        drop()


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
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time PostgreSQL inserting as many bare contact rows (--database postgres)",
    )
    args = parser.parse_args()
    print(
        f"this machine: {os.cpu_count()} cores; a fixed Python loop takes"
        f" {yardstick_ms():.0f} ms (a yardstick to compare machines by)"
    )

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
        if args.floor and args.database == "postgres":
            floor(args.postgres_url, args.contacts, args.per_account)
    print(f"peak RSS of the whole run: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
