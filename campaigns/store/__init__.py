"""The database: SQLAlchemy models (tables and enums), sessions, Alembic migrations."""
