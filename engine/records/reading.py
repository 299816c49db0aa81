"""Every response to a survey, wherever it is now: archived in the records database, or
closed so recently that it is still only in Redis's stream.

The archiver moves responses from the stream to the database and then trims the stream, so
a reader of the stream alone would lose them. This reads the database first, then the
stream entries the database does not hold yet: each response once, in constant memory.
"""

from __future__ import annotations

from sqlalchemy import exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.records.schema import responses as response_table
from engine.records.writes import response_record
from engine.redis.store import Store

BATCH = 500
# The position given for a response read from the database: "before every stream entry", so
# a second pass up to a first pass's last position reads the stream exactly as far.
ARCHIVED = "-"


class Responses:
    def __init__(self, engine: AsyncEngine, store: Store):
        self.engine, self.store = engine, store

    async def has_responses(self, survey: str) -> bool:
        async with self.engine.connect() as connection:
            if await connection.scalar(select(exists().where(response_table.c.survey == survey))):
                return True
        return await self.store.has_responses(survey)

    async def responses(self, survey: str, until: str = "+", batch: int = BATCH):
        """(position, response record), the archived ones first (oldest first), then the
        stream's up to entry `until`. A response archived between two calls moves from the
        second part to the first, so a second pass with the first's `until` may also hold
        responses archived meanwhile that closed after the first pass read the stream."""
        after = None
        while True:
            query = select(response_table).where(response_table.c.survey == survey)
            if after is not None:
                query = query.where(tuple_(response_table.c.ended_at, response_table.c.response_id) > tuple_(*after))
            async with self.engine.connect() as connection:
                rows = (await connection.execute(
                    query.order_by(response_table.c.ended_at, response_table.c.response_id).limit(batch))).all()
            for row in rows:
                yield ARCHIVED, response_record(row)
            if len(rows) < batch:
                break
            after = (rows[-1].ended_at, rows[-1].response_id)
        pending: list[tuple[str, dict]] = []
        async for entry_id, record in self.store.responses(survey, until, batch):
            pending.append((entry_id, record))
            if len(pending) >= batch:
                for item in await self._unarchived(pending):
                    yield item
                pending = []
        for item in await self._unarchived(pending):
            yield item

    async def _unarchived(self, entries: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        if not entries:
            return []
        ids = [record["response_id"] for _, record in entries]
        async with self.engine.connect() as connection:
            stored = set((await connection.scalars(
                select(response_table.c.response_id).where(response_table.c.response_id.in_(ids)))).all())
        return [(entry_id, record) for entry_id, record in entries if record["response_id"] not in stored]
