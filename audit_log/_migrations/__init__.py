"""Alembic migrations for the audit log schema, run programmatically on open."""
