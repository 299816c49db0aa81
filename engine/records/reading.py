"""Every response to a survey, wherever it is now: still only in Redis's stream, or archived
in the records database (and then trimmed from the stream).

Records move from the stream to the database while this reads, so the order matters: the
stream first, then the database without the responses the stream gave. A response trimmed
before the stream reader got to it was committed to the database before the trim, so the
database part has it; one the stream gave is skipped there. So each response comes once.
The response ids the stream gave are held in memory: as many as the archiver is behind
(normally a second's worth; more while the database is down).
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
        """(position, response record): the stream's, up to entry `until`, then the archived
        ones (oldest first). The position is the last stream entry read, so a second pass up to
        a first pass's last position reads the stream as far; it may also hold responses that
        were archived in between after closing too late for the first."""
        given: set[str] = set()
        position = "-"
        async for entry_id, record in self.store.responses(survey, until, batch):
            given.add(record["response_id"])
            position = entry_id
            yield entry_id, record
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
                    yield position, response_record(row)
            if len(rows) < batch:
                return
            after = (rows[-1].ended_at, rows[-1].response_id)
