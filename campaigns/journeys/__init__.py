"""The journey language: YAML in, typed plain data out. Pure: no models, no SQLAlchemy."""
