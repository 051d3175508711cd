"""Migrations from an empty database, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect, text

from phonebooth.storage.db import Database
from phonebooth.storage.tables import Base


async def test_upgrade_from_empty_creates_every_table_and_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.upgrade()
        await db.upgrade()
        async with db.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            head = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert set(Base.metadata.tables) <= tables
        assert head is not None
    finally:
        await db.dispose()


async def test_models_match_migrations(database_url: str) -> None:
    """Autogenerate finds nothing to do: the tables and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database(database_url)
    try:
        await db.upgrade()
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
        assert diff == []
    finally:
        await db.dispose()
