"""Alembic migrations, shipped inside the package so `editqueue migrate` works anywhere."""
