"""Credits in the records database: the operator's ledger, what messages used, the balance.

The balance is what the ledger holds (credits added, minus those taken back) minus what
messages used. Usage rows are added to, never replaced: each worker flushes its counts
(engine.runtime.usage) as an upsert that adds them to the row of their day, survey,
distribution, country and direction, so workers never overwrite each other's counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.records.schema import credit_ledger, credit_usage
from engine.records.writes import _insert, as_utc

GROUPINGS = ("survey", "distribution", "country", "direction", "day")
ZERO = Decimal(0)


class BadGrouping(ValueError):
    """A consumption report asked by something it cannot be grouped by."""


@dataclass(frozen=True)
class UsageRow:
    day: date
    survey: str
    distribution: str  # '' for messages of no distribution
    country: str
    direction: str  # in | out
    messages: int
    segments: int
    credits: Decimal


async def add(engine: AsyncEngine, amount: Decimal, reason: str, by: str | None,
              now: datetime) -> Decimal:
    """Add `amount` credits to the ledger (negative: take them back); the balance after."""
    async with engine.begin() as connection:
        await connection.execute(credit_ledger.insert().values(
            at=as_utc(now), amount=amount, reason=reason, by=by))
    return await balance(engine)


async def totals(engine: AsyncEngine) -> tuple[Decimal, Decimal]:
    """(credits the ledger holds, credits messages used), read in one transaction."""
    async with engine.connect() as connection:
        added = (await connection.execute(select(func.sum(credit_ledger.c.amount)))).scalar()
        used = (await connection.execute(select(func.sum(credit_usage.c.credits)))).scalar()
    return Decimal(added or ZERO), Decimal(used or ZERO)


async def balance(engine: AsyncEngine) -> Decimal:
    added, used = await totals(engine)
    return added - used


async def add_usage(engine: AsyncEngine, rows: Iterable[UsageRow]) -> None:
    """Add `rows` to the usage, in one transaction: each to the row of its key, made when new."""
    values = [{"day": row.day, "survey": row.survey, "distribution": row.distribution,
               "country": row.country, "direction": row.direction, "messages": row.messages,
               "segments": row.segments, "credits": row.credits} for row in rows]
    if not values:
        return
    async with engine.begin() as connection:
        statement = _insert(connection, credit_usage)
        added = statement.excluded
        await connection.execute(statement.on_conflict_do_update(
            index_elements=["day", "survey", "distribution", "country", "direction"],
            set_={"messages": credit_usage.c.messages + added.messages,
                  "segments": credit_usage.c.segments + added.segments,
                  "credits": credit_usage.c.credits + added.credits}), values)


def groupings(text: str | None) -> list[str]:
    """`survey,country` as a report's --by / ?by= gives it; BadGrouping names what it takes."""
    names = [name.strip().lower() for name in (text or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUPINGS]
    if unknown:
        raise BadGrouping(f"cannot group by {', '.join(unknown)}: by takes "
                          f"{', '.join(GROUPINGS)} (comma-separated)")
    return list(dict.fromkeys(names))


async def consumption(engine: AsyncEngine, by: list[str], since: date | None = None,
                      until: date | None = None) -> list[dict]:
    """Messages, segments and credits used from `since` to `until` (both days included, either
    open), summed by the columns `by` names (none: one row for everything), ordered by them."""
    for name in by:
        if name not in GROUPINGS:
            raise BadGrouping(f"cannot group by {name}: by takes {', '.join(GROUPINGS)}")
    keys = [credit_usage.c[name] for name in by]
    query = select(*keys, func.sum(credit_usage.c.messages), func.sum(credit_usage.c.segments),
                   func.sum(credit_usage.c.credits))
    if since is not None:
        query = query.where(credit_usage.c.day >= since)
    if until is not None:
        query = query.where(credit_usage.c.day <= until)
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    async with engine.connect() as connection:
        found = (await connection.execute(query)).all()
    rows = []
    for row in found:
        *named, messages, segments, credits = row
        if messages is None:  # no usage at all: the sum of nothing
            continue
        rows.append({**dict(zip(by, named, strict=True)), "messages": int(messages),
                     "segments": int(segments), "credits": Decimal(credits)})
    return rows
