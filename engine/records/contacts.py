"""Contact lists in the records database: importing a contact file, reading a list, deleting.

An import reads its file (engine.records.contact_files) in batches of IMPORT_BATCH rows, each
parsed in a thread (the next while this one is written) and written in one transaction: the rows already stored for the batch's
numbers are read, each row is compared with them, and the batch is upserted (ON CONFLICT on
the list and number). So memory holds one batch whatever the file's size, and an import that
stops (the database went away) can simply be run again: re-importing is idempotent. That
is also why a SQLite import commits without waiting for the disk (synchronous=NORMAL, safe
against a crash of the process in WAL mode): a power cut can lose its last batches, and
importing again restores them.

Each row of the file ends in exactly one count of the report: imported (a new number),
updated (its email, fields or line type changed; fields are replaced, not merged), unchanged,
or rejected (with the row, the value as written and the reason). A number written on two rows
of one file is stored once, with the later row's values, and the later row is warned about.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.records.contact_files import Contact, ContactFile
from engine.records.schema import contact_lists, contacts, opt_outs
from engine.records.writes import _insert, as_utc

IMPORT_BATCH = 1000
EXPORT_BATCH = 1000
LIST_NAME = re.compile(r"[^\x00-\x1f\x7f/\\]{1,100}")
CHANNELS = ("sms", "whatsapp")


class ListNameError(ValueError):
    """A list name Canvass cannot take; the message says what it takes."""


class UnknownList(LookupError):
    def __init__(self, name: str):
        super().__init__(f"there is no contact list '{name}'")


def list_name(text: str) -> str:
    name = (text or "").strip()
    if not LIST_NAME.fullmatch(name):
        raise ListNameError("a list name is 1 to 100 characters, with no slash, backslash or "
                            "control character")
    return name


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"imported": self.imported, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": self.rejected, "warnings": self.warnings}


async def import_file(engine: AsyncEngine, name: str, contact_file: ContactFile) -> ImportReport:
    """Import every row of `contact_file` into the list `name` (made when new)."""
    report, import_id = ImportReport(), os.urandom(8).hex()
    async with engine.connect() as connection:
        async with connection.begin():
            list_id = await _list_for_import(connection, name, contact_file.header.field_names)
        upsert = _Upsert.compile(connection)
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            await _synchronous(connection, "NORMAL")
        rows = contact_file.rows()
        # the next batch is parsed (in a thread) while this one is written
        pending = asyncio.ensure_future(asyncio.to_thread(_take, rows, IMPORT_BATCH))
        try:
            while batch := await pending:
                pending = asyncio.ensure_future(asyncio.to_thread(_take, rows, IMPORT_BATCH))
                found = []
                for item in batch:
                    if isinstance(item, Contact):
                        found.append(item)
                        if item.warnings:
                            report.warnings.extend({"row": item.row, "value": item.written, "reason": reason}
                                                   for reason in item.warnings)
                    else:
                        report.rejected.append({"row": item.row, "value": item.value, "reason": item.reason})
                if found:
                    async with connection.begin():
                        await _write_batch(connection, upsert, list_id, import_id, found, report)
        finally:
            if not pending.done():  # a write failed: let the parsing thread finish with the file
                await asyncio.gather(pending, return_exceptions=True)
            if sqlite:  # the connection goes back to the pool as connect() made it, or not at all
                try:
                    await _synchronous(connection, "FULL")
                except DBAPIError:
                    await connection.invalidate()
    report.warnings.extend(contact_file.warnings)
    report.warnings.sort(key=lambda warning: warning["row"] or 0)
    return report


async def _synchronous(connection: AsyncConnection, level: str) -> None:
    """Set SQLite's synchronous level for this connection (database.connect sets FULL)."""
    await connection.exec_driver_sql(f"PRAGMA synchronous={level}")
    await connection.commit()  # the pragma began SQLAlchemy's transaction: end it


def _take(rows: Iterator, count: int) -> list:
    return list(islice(rows, count))


async def _list_for_import(connection: AsyncConnection, name: str, field_names: list[str]) -> int:
    """The list's id (made when new), its field names extended with the file's."""
    upsert = _insert(connection, contact_lists).values(
        name=name, fields=field_names, created_at=datetime.now(UTC))
    await connection.execute(upsert.on_conflict_do_nothing(index_elements=["name"]))
    list_id, known = (await connection.execute(
        select(contact_lists.c.id, contact_lists.c.fields).where(contact_lists.c.name == name))).one()
    extended = list(dict.fromkeys([*known, *field_names]))
    if extended != known:
        await connection.execute(update(contact_lists).where(contact_lists.c.id == list_id)
                                 .values(fields=extended))
    return list_id


UPSERT_COLUMNS = ("list_id", "phone", "email", "fields", "line_warning", "import_id")


@dataclass(frozen=True)
class _Upsert:
    """The batch upsert as the driver's own SQL, compiled once per import and run through
    exec_driver_sql: each row a tuple for the driver's executemany. Through SQLAlchemy's
    execute, a dict per row and its processing cost as much as SQLite's insert itself."""

    sql: str
    order: Callable[[tuple], tuple]  # the values in UPSERT_COLUMNS' order -> the SQL's
    encode_fields: Callable[[dict], object]  # the JSON column's bind processing

    @classmethod
    def compile(cls, connection: AsyncConnection) -> _Upsert:
        dialect = connection.dialect
        statement = _insert(connection, contacts)
        statement = statement.on_conflict_do_update(
            index_elements=["list_id", "phone"],
            set_={**{name: statement.excluded[name] for name in UPSERT_COLUMNS[2:]},
                  "updated_at": func.current_timestamp()})
        compiled = statement.compile(dialect=dialect, column_keys=list(UPSERT_COLUMNS),
                                     for_executemany=True)
        order = itemgetter(*(UPSERT_COLUMNS.index(name) for name in compiled.positiontup))
        json_type = contacts.c.fields.type.dialect_impl(dialect)
        return cls(compiled.string, order, json_type.bind_processor(dialect) or (lambda value: value))


async def _write_batch(connection: AsyncConnection, upsert: _Upsert, list_id: int, import_id: str,
                       batch: list[Contact], report: ImportReport) -> None:
    """Count and store one batch. New and changed contacts are upserted (their times from the
    database's clock: no per-row time to convert); unchanged ones only get the import's id."""
    stored = {row.phone: row for row in (await connection.execute(
        select(contacts.c.phone, contacts.c.email, contacts.c.fields, contacts.c.line_warning,
               contacts.c.import_id)
        .where(contacts.c.list_id == list_id, contacts.c.phone.in_({c.phone for c in batch})))).all()}
    now: dict[str, tuple] = {}  # phone -> (email, fields, line_warning) as this batch leaves it
    changed: dict[str, None] = {}  # new or changed, in the file's order: upserted
    for contact in batch:
        values = (contact.email, contact.fields, contact.line_warning)
        phone = contact.phone
        if phone in now:
            before, repeated = now[phone], True
        elif phone in stored:
            row = stored[phone]
            before, repeated = (row.email, row.fields, row.line_warning), row.import_id == import_id
        else:
            report.imported += 1
            now[phone] = values
            changed[phone] = None
            continue
        if repeated:
            report.warnings.append({"row": contact.row, "value": contact.written, "reason": (
                f"{phone} is on an earlier row of this file too: this row's values replace that row's")})
        if before == values:
            report.unchanged += 1
        else:
            report.updated += 1
            changed[phone] = None
        now[phone] = values
    if changed:
        order, encode, values = upsert.order, upsert.encode_fields, []
        for phone in changed:
            email, fields, line_warning = now[phone]
            values.append(order((list_id, phone, email, encode(fields), line_warning, import_id)))
        await connection.exec_driver_sql(upsert.sql, values)
    unchanged = now.keys() - changed
    if unchanged:
        await connection.execute(update(contacts).where(
            contacts.c.list_id == list_id, contacts.c.phone.in_(unchanged)).values(import_id=import_id))


# ---------------------------------------------------------------- reading and deleting


async def _list_row(connection: AsyncConnection, name: str):
    row = (await connection.execute(select(contact_lists).where(contact_lists.c.name == name))).first()
    if row is None:
        raise UnknownList(name)
    return row


async def all_lists(engine: AsyncEngine) -> list[dict]:
    counted = (select(contacts.c.list_id, func.count().label("contacts"))
               .group_by(contacts.c.list_id).subquery())
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(contact_lists.c.name, contact_lists.c.created_at, counted.c.contacts)
            .outerjoin(counted, counted.c.list_id == contact_lists.c.id)
            .order_by(contact_lists.c.name))).all()
    return [{"name": row.name, "contacts": row.contacts or 0, "created_at": _iso(row.created_at)}
            for row in rows]


async def describe(engine: AsyncEngine, name: str) -> dict:
    """A list's figures: contacts, with an email, by line warning, opted out by channel
    (the records database's opt-outs), and its field names."""
    async with engine.connect() as connection:
        found = await _list_row(connection, name)
        mine = contacts.c.list_id == found.id
        total, with_email = (await connection.execute(
            select(func.count(), func.count(contacts.c.email)).where(mine))).one()
        warned = dict((await connection.execute(
            select(contacts.c.line_warning, func.count()).where(mine, contacts.c.line_warning.is_not(None))
            .group_by(contacts.c.line_warning))).all())
        opted = dict((await connection.execute(
            select(opt_outs.c.channel, func.count())
            .select_from(contacts.join(opt_outs, opt_outs.c.phone == contacts.c.phone))
            .where(mine, opt_outs.c.opted_out.is_(True)).group_by(opt_outs.c.channel))).all())
    return {"name": found.name, "created_at": _iso(found.created_at), "contacts": total,
            "with_email": with_email, "line_warnings": warned,
            "opted_out": {channel: opted.get(channel, 0) for channel in CHANNELS},
            "fields": list(found.fields)}


async def field_names(engine: AsyncEngine, name: str) -> list[str]:
    async with engine.connect() as connection:
        return list((await _list_row(connection, name)).fields)


async def contacts_of(engine: AsyncEngine, name: str) -> AsyncIterator[dict]:
    """Every contact of the list, oldest first, read EXPORT_BATCH at a time (UnknownList first)."""
    async with engine.connect() as connection:
        list_id = (await _list_row(connection, name)).id
    after = 0
    while True:
        async with engine.connect() as connection:
            rows = (await connection.execute(
                select(contacts).where(contacts.c.list_id == list_id, contacts.c.id > after)
                .order_by(contacts.c.id).limit(EXPORT_BATCH))).all()
        for row in rows:
            yield {"phone": row.phone, "email": row.email, "fields": row.fields,
                   "line_warning": row.line_warning, "created_at": _iso(row.created_at),
                   "updated_at": _iso(row.updated_at)}
        if len(rows) < EXPORT_BATCH:
            return
        after = rows[-1].id


async def delete_contact(engine: AsyncEngine, name: str, phone: str) -> bool:
    """Delete the number from the list; False when it was not on it (UnknownList: no list)."""
    async with engine.begin() as connection:
        list_id = (await _list_row(connection, name)).id
        result = await connection.execute(
            contacts.delete().where(contacts.c.list_id == list_id, contacts.c.phone == phone))
    return result.rowcount > 0


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")
