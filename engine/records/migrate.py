"""The records schema's version: apply the migrations (`canvass db upgrade`) and check it.

Alembic is driven from here, with the migration scripts shipped in this package
(engine/records/migrations); users need no alembic.ini. The server refuses to start on
a schema that is behind (SchemaNotCurrent says the command to run).
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

logging.getLogger("alembic").setLevel(logging.WARNING)  # it says "Context impl ..." at every check

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "canvass db upgrade"


class SchemaNotCurrent(Exception):
    """The records database's schema is not the one this Canvass was built for."""


def _config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision the shipped migrations know."""
    return ScriptDirectory.from_config(_config()).get_current_head()


async def current(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: no schema yet)."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision())


async def upgrade(engine: AsyncEngine, target: str = "head") -> tuple[str | None, str | None]:
    """Apply every migration up to `target`, in one transaction; (revision before, after)."""
    before = await current(engine)
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(_config(sync), target))
    return before, await current(engine)


async def check(engine: AsyncEngine, where: str) -> None:
    """SchemaNotCurrent unless the database at `where` is at the shipped head revision."""
    at, wanted = await current(engine), head()
    if at == wanted:
        return
    if at is None:
        state = "has no records schema yet"
    elif at in known():
        state = f"has records schema {at}, this Canvass needs {wanted}"
    else:
        raise SchemaNotCurrent(
            f"the records database {where} has schema {at}, which this Canvass does not know "
            f"(it needs {wanted}): it was made by a newer Canvass; run that version")
    raise SchemaNotCurrent(f"the records database {where} {state}: run `{UPGRADE_COMMAND}` "
                           "(with the same DATABASE_URL) to bring it up to date")


def known() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
