"""Every response to a survey, wherever it is now: still only in Redis's stream, or archived
in the records database (and then trimmed from the stream).

Records move from the stream to the database while this reads, so the stream is read first:
a response trimmed before that read was committed to the database before the trim, so the
database has it; one the stream gave is skipped in the database. So each response comes
once. The database's are given first (oldest first), then the stream's: those are held in
memory meanwhile, as many as the archiver is behind, which is a second's worth or so while
the database is reachable (and when it is not, there is no export).

A Filter narrows them (ended at or after a time, a status; previews are left out unless
asked for), in SQL for the archived ones, so
an export of one status of a large survey reads only its rows. Responses still in progress
(open sessions, read from the respondent records in Redis) are a separate, opt-in pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.conversation import Respondent
from engine.flow import Flow
from engine.records.schema import responses as response_table
from engine.records.writes import PREVIEW_FIELD, parse_time, response_record
from engine.redis.store import Store
from engine.responses import response_record as closed_record

BATCH = 1000


@dataclass(frozen=True)
class Filter:
    since: datetime | None = None  # ended at or after (aware UTC)
    status: str | None = None
    versions: frozenset[str] | None = None  # only responses on these flow versions
    previews: bool = False  # also the responses of previews (POST /admin/surveys/{id}/preview)

    def where(self, query):
        if not self.previews:
            query = query.where(response_table.c.preview.is_(False))
        if self.since is not None:
            query = query.where(response_table.c.ended_at >= self.since)
        if self.status is not None:
            query = query.where(response_table.c.status == self.status)
        if self.versions is not None:
            query = query.where(response_table.c.version.in_(sorted(self.versions)))
        return query

    def matches(self, record: dict) -> bool:
        return ((self.since is None or parse_time(record["ended_at"]) >= self.since)
                and (self.status is None or record["status"] == self.status)
                and (self.versions is None or record["version"] in self.versions)
                and (self.previews or not is_preview(record)))


def is_preview(record: dict) -> bool:
    return (record.get("fields") or {}).get(PREVIEW_FIELD) == "1"


EVERY = Filter()


class Responses:
    def __init__(self, engine: AsyncEngine, store: Store):
        self.engine, self.store = engine, store

    async def has_responses(self, survey: str) -> bool:
        if await self.store.has_responses(survey):
            return True
        async with self.engine.connect() as connection:
            return bool(await connection.scalar(
                select(exists().where(response_table.c.survey == survey))))

    async def versions(self, survey: str) -> set[str]:
        """The flow versions a survey's responses ran on (archived or not)."""
        found = {record["version"] async for _, record in self.store.responses(survey)}
        async with self.engine.connect() as connection:
            found.update(await connection.scalars(
                select(response_table.c.version).distinct().where(response_table.c.survey == survey)))
        return found

    async def responses(self, survey: str, until: str = "+", batch: int = BATCH, only: Filter = EVERY):
        """(position, response record): the archived ones (oldest first), then the stream's up
        to entry `until`. The position is "-" for an archived one and the entry id for one
        from the stream, so a second pass up to a first pass's last position reads the stream
        as far; it may also hold responses archived in between that closed too late for the
        first."""
        streamed = [entry async for entry in self.store.responses(survey, until, batch)]
        given = {record["response_id"] for _, record in streamed}
        streamed = [(entry_id, record) for entry_id, record in streamed if only.matches(record)]
        after = None
        while True:
            query = only.where(select(response_table).where(response_table.c.survey == survey))
            if after is not None:
                query = query.where(tuple_(response_table.c.ended_at, response_table.c.response_id)
                                    > tuple_(*after))
            async with self.engine.connect() as connection:
                rows = (await connection.execute(query.order_by(
                    response_table.c.ended_at, response_table.c.response_id).limit(batch))).all()
            for row in rows:
                if row.response_id not in given:
                    yield "-", response_record(row)
            if len(rows) < batch:
                break
            after = (rows[-1].ended_at, rows[-1].response_id)
        for entry in streamed:
            yield entry


async def in_progress(store: Store, survey: str, flow: Callable[[str], Awaitable[Flow | None]]):
    """The records the open sessions on `survey` would leave if they closed now (status open),
    read from the respondent records in Redis. `flow(version)` gives a session's flow (for a
    choice's label), or None."""
    async for channel, phone, stored in store.respondent_records():
        try:
            session = Respondent.loads(stored, channel, phone).session
        except ValueError:
            continue
        if session is not None and session.survey == survey and session.is_open:
            yield open_record(session, await flow(session.version))


def open_record(session, flow: Flow | None) -> dict:
    """The response record of a session still in progress: as a closed one's, without an end
    time (it has not ended; its last move is in its answers' times)."""
    return {**closed_record(session, flow), "ended_at": None}
