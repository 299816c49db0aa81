"""`canvass db`: the records database's schema, from the terminal.

    canvass db upgrade    apply the shipped migrations (DATABASE_URL, or var/canvass.db)
    canvass db status     say which revision the database is at and whether it is current
"""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy.exc import SQLAlchemyError

from engine.records import migrate
from engine.records.database import DatabaseUrlError, connect, database_url, redacted


def upgrade(url: str) -> tuple[str | None, str | None]:
    """Bring the database at `url` to the shipped head revision; (revision before, after)."""
    async def run():
        engine = connect(url)
        try:
            return await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def status(url: str) -> tuple[str | None, str]:
    async def run():
        engine = connect(url)
        try:
            return await migrate.current(engine), migrate.head()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def run_db(args) -> int:
    url = database_url(os.environ.get("DATABASE_URL"))
    where = redacted(url)
    try:
        if args.action == "upgrade":
            before, after = upgrade(url)
            if before == after:
                print(f"{where}: already at revision {after} (current)")
            else:
                print(f"{where}: upgraded from {before or 'an empty database'} to revision {after}")
            return 0
        at, head = status(url)
        state = "current" if at == head else f"behind: run `{migrate.UPGRADE_COMMAND}`"
        if at is not None and at != head and at not in migrate.known():
            state = "made by a newer Canvass"
        print(f"{where}: revision {at or 'none (empty database)'}, this Canvass needs {head} ({state})")
        return 0 if at == head else 1
    except DatabaseUrlError as err:
        print(f"canvass db: {err}", file=sys.stderr)
        return 2
    except (SQLAlchemyError, OSError) as err:
        print(f"canvass db: cannot reach the records database {where}: "
              f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}",
              file=sys.stderr)
        return 1
