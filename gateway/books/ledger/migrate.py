"""Versioned schema: Alembic migrations, applied by ``fusion-gateway db upgrade`` or at start, and checked.

A gateway never writes to a schema it does not know: a database migrated by a newer release (its
revision is not among ours) stops it at start with a clear message. An older schema is brought up to
date at start unless ``ledger.migrate: false`` (then only ``db upgrade`` does it). On PostgreSQL, a
transaction-scoped advisory lock makes replicas starting together migrate one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.wire.errors import LedgerSchemaError

VERSION_TABLE = "ledger_schema_version"
MIGRATIONS = Path(__file__).with_name("migrations")
#: any constant: the key of the advisory lock migrations take on PostgreSQL
_LOCK_KEY = 0x46555347  # "FUSG"


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    script = ScriptDirectory.from_config(_alembic_config())
    revision = script.get_current_head()
    assert revision is not None
    return revision


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None  # None: an empty database
    head: str
    known: bool  # the current revision is one of ours

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _state(conn: sa.Connection) -> SchemaState:
    current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    script = ScriptDirectory.from_config(_alembic_config())
    known = current is None or any(r.revision == current for r in script.walk_revisions())
    return SchemaState(current, head(), known)


def _upgrade(conn: sa.Connection) -> SchemaState:
    from alembic import command

    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    state = _state(conn)
    _refuse_newer(state)
    if not state.up_to_date:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return _state(conn)


def _refuse_newer(state: SchemaState) -> None:
    if not state.known:
        raise LedgerSchemaError(
            f"the ledger database is at schema revision '{state.current}', newer than this gateway knows "
            f"(latest: '{state.head}'): upgrade the gateway, or point ledger.url at another database"
        )


async def schema_state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as conn:
        return await conn.run_sync(_state)


async def upgrade(engine: AsyncEngine) -> SchemaState:
    """Apply every migration the database lacks (``fusion-gateway db upgrade``)."""
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade)


async def ensure_schema(engine: AsyncEngine, *, migrate: bool) -> SchemaState:
    """At start: refuse a newer schema; migrate an older one, or refuse it when migrating is left to operators."""
    state = await schema_state(engine)
    _refuse_newer(state)
    if state.up_to_date:
        return state
    if not migrate:
        raise LedgerSchemaError(
            f"the ledger database is at schema revision '{state.current or 'empty'}', older than this gateway's "
            f"'{state.head}': run 'fusion-gateway db upgrade' (ledger.migrate is off)"
        )
    return await upgrade(engine)
