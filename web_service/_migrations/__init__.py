"""Alembic scripts of the web service's database (forward only)."""
