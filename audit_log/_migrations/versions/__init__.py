"""Migration scripts; alembic loads them by path, the package marker ships them."""
