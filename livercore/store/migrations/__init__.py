"""The store's Alembic migrations (env.py and versions/), run by livercore.store.upgrade."""
