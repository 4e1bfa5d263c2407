"""Alembic environment: migrations always run on a connection the gateway hands over (never from a URL here)."""

from __future__ import annotations

from alembic import context

from gateway.books.ledger.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
