"""Where the records database is and how to connect to it.

DATABASE_URL is written as PostgreSQL's own tools take it (postgresql://user@host:port/dbname)
or as sqlite:///path; unset, it is the SQLite file var/canvass.db under the working directory.
Each is translated here to SQLAlchemy's URL for its async driver (asyncpg, aiosqlite).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_SQLITE = Path("var") / "canvass.db"
SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's write to finish
CONNECT_TIMEOUT = 5.0  # seconds: a PostgreSQL that does not answer is reported, not waited for
DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
           "sqlite": "sqlite+aiosqlite"}


class DatabaseUrlError(ValueError):
    """DATABASE_URL is not a database Canvass can use; the message says what it takes."""


def database_url(given: str | None) -> str:
    """DATABASE_URL as given, or the default SQLite file (as an absolute sqlite:/// URL)."""
    return (given or "").strip() or f"sqlite:///{(Path.cwd() / DEFAULT_SQLITE).as_posix()}"


def driver_url(url: str) -> URL:
    """The SQLAlchemy URL for `url`, with its async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlError(f"DATABASE_URL '{redacted(url)}' is not a database URL: write "
                               "postgresql://user@host:port/dbname or sqlite:///path") from None
    backend = parsed.get_backend_name()
    if backend not in DRIVERS:
        raise DatabaseUrlError(f"DATABASE_URL '{redacted(url)}': Canvass keeps its records in "
                               "PostgreSQL (postgresql://...) or SQLite (sqlite:///path)")
    if parsed.drivername not in (backend, DRIVERS[backend]):
        raise DatabaseUrlError(f"DATABASE_URL '{redacted(url)}': leave out the driver "
                               f"('+{parsed.get_driver_name()}'); write {backend}://...")
    return parsed.set(drivername=DRIVERS[backend])


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unreadable>"


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def connect(url: str) -> AsyncEngine:
    """An engine for the records database. A SQLite file gets its folder created and runs in
    WAL mode (readers never wait for the writer) with full fsync: the archiver acknowledges a
    record in Redis only after its transaction commits, so a commit must be on disk."""
    target = driver_url(url)
    if is_sqlite(target):
        if target.database and target.database != ":memory:":
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(target, pool_pre_ping=True, pool_size=5, max_overflow=5,
                               connect_args={"timeout": CONNECT_TIMEOUT})


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
