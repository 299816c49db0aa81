"""Insert-once writes of the records the archiver moves out of Redis.

Each insert is keyed by the record's own id (a response id, an opt-out event id) and
does nothing for an id already there, so a batch archived twice (the process died between
the database's commit and Redis's acknowledgement) is stored once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import insert as generic_insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.records.schema import opt_out_events, opt_outs, responses

RESPONSE_COLUMNS = ("response_id", "survey", "version", "channel", "phone", "status",
                    "messages_in", "messages_out", "segments_in", "segments_out")
TIME_COLUMNS = ("started_at", "ended_at")
JSON_COLUMNS = ("fields", "answers")
# reserved field names: a distribution's invitations carry its id, a preview start carries "1"
DISTRIBUTION_FIELD = "distribution_id"
PREVIEW_FIELD = "preview"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time from a record (e.g. 2024-01-01T09:00:00Z) as aware UTC."""
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """A time read back: SQLite returns it without its zone, which is always UTC here."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def response_row(record: dict, archived_at: datetime) -> dict:
    row = {name: record[name] for name in RESPONSE_COLUMNS if name in record}
    row.update({name: parse_time(record[name]) for name in TIME_COLUMNS})
    row.update({name: record.get(name) or {} for name in JSON_COLUMNS})
    taken = {*RESPONSE_COLUMNS, *TIME_COLUMNS, *JSON_COLUMNS}
    row["extra"] = {key: value for key, value in record.items() if key not in taken}
    row["archived_at"] = archived_at
    # derived from the session's fields (kept whole in `fields`), typed for filtering
    fields = row["fields"] if isinstance(row["fields"], dict) else {}
    distribution = fields.get(DISTRIBUTION_FIELD)
    row["distribution"] = distribution if isinstance(distribution, str) and distribution else None
    row["preview"] = fields.get(PREVIEW_FIELD) == "1"
    return row


def response_record(row) -> dict:
    """The response record as the engine wrote it (engine.responses), from its row."""
    mapping = row._mapping
    record = {name: mapping[name] for name in RESPONSE_COLUMNS}
    for name in TIME_COLUMNS:
        record[name] = as_utc(mapping[name]).isoformat(timespec="seconds").replace("+00:00", "Z")
    record.update({name: mapping[name] for name in JSON_COLUMNS})
    record.update(mapping["extra"])
    return record


def _insert(connection: AsyncConnection, table):
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    return generic_insert(table)


async def insert_responses(connection: AsyncConnection, records: Iterable[dict]) -> int:
    """Store the response records not stored yet; how many were new."""
    now = datetime.now(UTC)
    rows = [response_row(record, now) for record in records]
    if not rows:
        return 0
    statement = _insert(connection, responses).on_conflict_do_nothing(index_elements=["response_id"])
    result = await connection.execute(statement.returning(responses.c.response_id), rows)
    return len(result.all())


async def insert_opt_out_events(connection: AsyncConnection, events: Iterable[dict]) -> int:
    """Store the opt-out and opt-in events not stored yet, and move each number's current
    state to its latest event (an older event archived late changes nothing); how many were new."""
    now = datetime.now(UTC)
    rows = [{"event_id": e["event_id"], "channel": e["channel"], "phone": e["phone"],
             "opted_out": bool(e["opted_out"]), "how": e["how"], "at": parse_time(e["at"]),
             "archived_at": now} for e in events]
    if not rows:
        return 0
    statement = _insert(connection, opt_out_events).on_conflict_do_nothing(index_elements=["event_id"])
    result = await connection.execute(statement.returning(opt_out_events.c.event_id), rows)
    new = {event_id for (event_id,) in result.all()}
    for row in sorted((r for r in rows if r["event_id"] in new), key=lambda r: r["at"]):
        state = {name: row[name] for name in ("channel", "phone", "opted_out", "how", "at", "event_id")}
        upsert = _insert(connection, opt_outs).values(state)
        await connection.execute(upsert.on_conflict_do_update(
            index_elements=["channel", "phone"],
            set_={name: upsert.excluded[name] for name in ("opted_out", "how", "at", "event_id")},
            where=opt_outs.c.at <= upsert.excluded.at))
    return len(new)
