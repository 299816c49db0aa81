"""Every message in and out, counted for credits: in memory per message, in the database every
few seconds.

`Usage.count` runs for every message on the webhook path, so it does no I/O: it adds the
message and its segments to an in-memory count keyed by day, survey, distribution, country
and direction (a number's country is remembered: engine.sms.credits.region). A background
task (`run`) writes the counts into the records database every FLUSH_EVERY seconds, priced
by the credits table when credits are on (rate x segments, so pricing a sum is pricing each
message), and once more at shutdown. While the database is down the counts stay in memory
and are added to; the flush is retried, doubling its wait. They are lost only if the process
is killed without its shutdown (kill -9): at most the last FLUSH_EVERY seconds of counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import step as steps
from engine.records import credits as ledger
from engine.records.schema import credit_usage
from engine.session import Session
from engine.sms.credits import DIRECTIONS, Rates, charged_segments, region

log = logging.getLogger("canvass.usage")

FLUSH_EVERY = 2.0  # seconds between writes of the counts
RETRY = (0.5, 30.0)  # first and longest wait after a failed write (doubling)
DAY = 86400.0
SURVEY_MAX, DISTRIBUTION_MAX = credit_usage.c.survey.type.length, credit_usage.c.distribution.type.length
ZERO = Decimal(0)

# (day, survey, distribution, country, direction) -> [messages, segments]
Key = tuple[date, str, str, str, str]


class Usage:
    def __init__(self, engine: AsyncEngine, rates: Rates | None, clock: Callable[[], float],
                 interval: float = FLUSH_EVERY):
        self.engine, self.rates, self.clock, self.interval = engine, rates, clock, interval
        self.counts: dict[Key, list[int]] = {}
        self.flushed = 0  # rows written by this process
        self._day, self._day_ends = date.min, float("-inf")
        self._stop = asyncio.Event()

    def count(self, survey: str, distribution: str | None, phone: str, direction: str,
              segments: int) -> None:
        """One message of `segments` segments to ("out") or from ("in") `phone`."""
        if direction not in DIRECTIONS:  # the database would refuse it, and every count with it
            raise ValueError(f"direction must be 'out' or 'in', not {direction!r}")
        now = self.clock()
        if now >= self._day_ends or now < self._day_ends - DAY:
            self._new_day(now)
        key = (self._day, survey, distribution or "", region(phone), direction)
        entry = self.counts.get(key)
        if entry is None:
            self.counts[key] = [1, segments]
        else:
            entry[0] += 1
            entry[1] += segments

    def exchange(self, channel: str, phone: str, received: str, replies: list[str],
                 session: Session | None) -> None:
        """An inbound message and the replies that answer it, counted for the survey of
        `session` (the one the message belongs to; '' when none)."""
        survey = session.survey if session is not None else ""
        distribution = session.fields.get("distribution_id") if session is not None else None
        distribution = str(distribution) if distribution else None
        self.count(survey, distribution, phone, "in",
                   charged_segments(channel, steps.segment_count(channel, received)))
        for reply in replies:
            self.count(survey, distribution, phone, "out",
                       charged_segments(channel, steps.segment_count(channel, reply)))

    def _new_day(self, now: float) -> None:
        start = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self._day = start.date()
        self._day_ends = (start + timedelta(days=1)).timestamp()

    async def flush(self) -> int:
        """Write the counts so far; how many rows. On failure they are kept for the next flush
        (and the error raised)."""
        taken, self.counts = self.counts, {}
        if not taken:
            return 0
        # clipped to their columns: a row the database refuses would hold back every count
        rows = [ledger.UsageRow(day, survey[:SURVEY_MAX], distribution[:DISTRIBUTION_MAX], country,
                                direction, messages, segments, self._price(country, segments, direction))
                for (day, survey, distribution, country, direction), (messages, segments) in taken.items()]
        try:
            await ledger.add_usage(self.engine, rows)
        except BaseException:
            self._put_back(taken)
            raise
        self.flushed += len(rows)
        return len(rows)

    def _price(self, country: str, segments: int, direction: str) -> Decimal:
        return ZERO if self.rates is None else self.rates.credits(country, segments, direction)

    def _put_back(self, taken: dict[Key, list[int]]) -> None:
        for key, (messages, segments) in taken.items():
            entry = self.counts.setdefault(key, [0, 0])
            entry[0] += messages
            entry[1] += segments

    async def run(self) -> None:
        """Flush every `interval` seconds until stop(); a failure is logged and retried."""
        wait = RETRY[0]
        while not self._stop.is_set():
            try:
                await self.flush()
            except (SQLAlchemyError, OSError) as err:
                log.warning("message counts not written (retry in %.1f s, kept meanwhile): %s",
                            wait, _short(err))
                await self._sleep(wait)
                wait = min(wait * 2, RETRY[1])
                continue
            except Exception:  # keep the task alive, say so loudly
                log.exception("message counts not written (retry in %.1f s, kept meanwhile)", wait)
                await self._sleep(wait)
                wait = min(wait * 2, RETRY[1])
                continue
            wait = RETRY[0]
            await self._sleep(self.interval)

    async def stop(self, task: asyncio.Task) -> None:
        """Stop the task, then write what is left (once: a database still down loses it, said)."""
        self._stop.set()
        try:
            await asyncio.wait_for(task, timeout=10)
        except TimeoutError:
            task.cancel()
        try:
            await self.flush()
        except (SQLAlchemyError, OSError) as err:
            messages = sum(messages for messages, _ in self.counts.values())
            log.error("at shutdown %d counted message(s) could not be written: %s", messages,
                      _short(err))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
