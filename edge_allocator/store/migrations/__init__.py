"""Alembic migrations of the decision log (see ``edge_allocator.store.create_schema``).

A package only so that the wheel ships these files; Alembic loads them by path.
"""
