"""Alembic environment: runs against the engine :func:`campaigns.store.db.migrate` passes in."""

from __future__ import annotations

from alembic import context

from campaigns.store.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run by hand: build the engine from the environment
    from campaigns import config as settings
    from campaigns.store.db import make_engine

    engine = make_engine(settings.load().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
