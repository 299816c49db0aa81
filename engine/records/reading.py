"""Every response to a survey, wherever it is now: still only in Redis's stream, or archived
in the records database (and then trimmed from the stream).

Records move from the stream to the database while this reads, so the stream is read first:
a response trimmed before that read was committed to the database before the trim, so the
database has it; one the stream gave is skipped in the database. So each response comes
once. The database's are given first (oldest first), then the stream's: those are held in
memory meanwhile, as many as the archiver is behind, which is a second's worth or so while
the database is reachable (and when it is not, there is no export).
"""

from __future__ import annotations

from sqlalchemy import exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.records.schema import responses as response_table
from engine.records.writes import response_record
from engine.redis.store import Store

BATCH = 500


class Responses:
    def __init__(self, engine: AsyncEngine, store: Store):
        self.engine, self.store = engine, store

    async def has_responses(self, survey: str) -> bool:
        if await self.store.has_responses(survey):
            return True
        async with self.engine.connect() as connection:
            return bool(await connection.scalar(
                select(exists().where(response_table.c.survey == survey))))

    async def responses(self, survey: str, until: str = "+", batch: int = BATCH):
        """(position, response record): the archived ones (oldest first), then the stream's up
        to entry `until`. The position is "-" for an archived one and the entry id for one
        from the stream, so a second pass up to a first pass's last position reads the stream
        as far; it may also hold responses archived in between that closed too late for the
        first."""
        streamed = [entry async for entry in self.store.responses(survey, until, batch)]
        given = {record["response_id"] for _, record in streamed}
        after = None
        while True:
            query = select(response_table).where(response_table.c.survey == survey)
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
