"""Alembic migrations for the linkage service schema, run programmatically on open."""
