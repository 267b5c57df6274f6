"""Alembic's environment: migrations run on the connection livercore.store.upgrade passes in
(``config.attributes["connection"]``), inside its transaction; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from livercore.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
