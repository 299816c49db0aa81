"""Opt-outs that outlive Redis.

Every opt-out and opt-in is an event written to Redis by the same COMMIT that changes the
respondent (Change.opt_outs: both land or neither), then archived into the records database
(engine.records.archiver) like a response. The database's `opt_outs` table is then the
number's state for good: a start for a number opted out there is refused even when Redis
lost it, and Redis's opt-outs are restored from it (OptOutBook.restore).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import and_, select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.conversation import Respondent
from engine.events import OptedIn, OptedOut
from engine.records.schema import opt_outs
from engine.redis.store import Store

RESTORE_BATCH = 1000
def event_records(channel: str, phone: str, events: Iterable[object], at: float) -> tuple[dict, ...]:
    """The opt-out and opt-in events among a step's `events`, as records to commit with it;
    each says how it came (the `how` column: engine.events.KEYWORD, CARRIER or WEB_PAGE)."""
    return tuple(
        {"event_id": os.urandom(10).hex(), "channel": channel, "phone": phone,
         "opted_out": isinstance(event, OptedOut), "how": event.how,
         "at": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")}
        for event in events if isinstance(event, OptedOut | OptedIn))


class OptOutBook:
    """The records database's opt-outs, as the server asks them."""

    def __init__(self, engine: AsyncEngine, store: Store):
        self.engine, self.store = engine, store

    async def opted_out(self, channel: str, phone: str) -> bool:
        async with self.engine.connect() as connection:
            state = await connection.scalar(select(opt_outs.c.opted_out).where(
                and_(opt_outs.c.channel == channel, opt_outs.c.phone == phone)))
        return bool(state)

    async def opted_out_among(self, channel: str, phones: list[str]) -> set[str]:
        """Which of `phones` opted out on `channel`: one query for a batch of invitations."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(opt_outs.c.phone).where(
                opt_outs.c.channel == channel, opt_outs.c.phone.in_(phones), opt_outs.c.opted_out.is_(True)))
        return {row.phone for row in rows}

    async def refusal(self, channel: str, phone: str) -> tuple[int, str, str] | None:
        """Why a start for this number must be refused (status, reason, message), or None.
        When the database cannot say, the start is refused too: an opt-out Redis lost may
        be there, and inviting such a number is the failure this book exists to prevent."""
        try:
            if await self.opted_out(channel, phone):
                return 409, "opted_out", "the number has opted out"
        except (SQLAlchemyError, OSError) as err:
            return 503, "records_unavailable", ("the records database, which keeps opt-outs, "
                                                f"is not reachable: {type(err).__name__}")
        return None

    async def restore(self) -> int:
        """Put back into Redis every opt-out the database holds for a conversation Redis has no
        record of (it lost it); how many were put back."""
        restored, after = 0, ("", "")
        key = tuple_(opt_outs.c.channel, opt_outs.c.phone)
        while True:
            async with self.engine.connect() as connection:
                rows = (await connection.execute(
                    select(opt_outs.c.channel, opt_outs.c.phone)
                    .where(opt_outs.c.opted_out.is_(True), key > tuple_(*after))
                    .order_by(opt_outs.c.channel, opt_outs.c.phone).limit(RESTORE_BATCH))).all()
            if not rows:
                return restored
            restored += await self.store.restore_opt_outs(
                [(channel, phone, Respondent(channel, phone, opted_out=True).dumps())
                 for channel, phone in rows])
            after = tuple(rows[-1])
