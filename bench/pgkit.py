"""What the benchmarks that run on PostgreSQL share: a throw-away database of their own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

from sqlalchemy import make_url, text

from campaigns.store.db import make_engine


def postgres_database(server: str, purpose: str) -> tuple[str, Callable[[], None]]:
    """A new, empty database on ``server`` (named after ``purpose`` and this process), and the
    function that drops it."""
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    name = f"campaigns_bench_{purpose}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop
