"""What every `canvass` command that works on the records database shares: DATABASE_URL read
once, the schema checked, and each failure said in one line with its exit status (2: the
request cannot be done; 1: the database cannot be reached or is not at the current schema)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError

from engine.records import migrate
from engine.records.database import DatabaseUrlError, database_url, redacted


class Refused(Exception):
    """What the user asked cannot be done; the message says why (exit 2)."""


def run_on_records(command: str, action: str, run: Callable[[str], Awaitable[int]]) -> int:
    """Run `run(url)` against the records database as `canvass COMMAND ACTION`; its exit status."""
    url = database_url(os.environ.get("DATABASE_URL"))
    try:
        return asyncio.run(run(url))
    except Refused as err:
        print(f"canvass {command} {action}: {err}", file=sys.stderr)
        return 2
    except DatabaseUrlError as err:
        print(f"canvass {command}: {err}", file=sys.stderr)
        return 2
    except migrate.SchemaNotCurrent as err:
        print(f"canvass {command}: {err}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as err:
        said = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"canvass {command}: cannot reach the records database {redacted(url)}: {said}",
              file=sys.stderr)
        return 1
