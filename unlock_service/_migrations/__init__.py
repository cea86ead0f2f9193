"""Alembic migrations for the unlock service schema, run programmatically on open."""
