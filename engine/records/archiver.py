"""The archiver: every record in Redis's record streams into the records database, once.

Every worker runs one. Records reach Redis in the COMMIT that closes a session (a response,
in its survey's stream) or changes an opt-out (the opt-out stream); the archiver moves them:

1. read a batch as a consumer of the streams' group (engine.redis.store.ARCHIVE_GROUP): the
   entries another consumer left unacknowledged for CLAIM_IDLE (it died, or its database
   transaction failed), then new ones, so workers share the work and a dead one's batch is
   taken over;
2. insert them in one database transaction, keyed by their ids (ON CONFLICT DO NOTHING), so
   a batch archived twice is stored once;
3. acknowledge them (XACK) only after that transaction committed, and
4. trim the stream only below its oldest entry not yet acknowledged (never by length).

A kill -9 anywhere leaves entries unacknowledged, never lost; while the database is down
nothing is acknowledged and nothing trimmed, the webhooks (which only write Redis) keep
answering, and the archiver catches up when it is back. The consumer group lives in the
stream itself, so after Redis lost its data (and with it the streams) nothing points
past what is there.

Which streams: the opt-outs, the deliveries (the outcomes of distributions' invitations, which
move their recipients forwards), the surveys being served, plus every survey stream found by a SCAN at start
and every RESCAN seconds (a survey removed from the flows still has sessions closing into its
stream). Every survey served gets its stream and group made at once, so a restart finds it.
Whenever Redis has lost its data (the restored mark is gone) and once at start, the
opt-outs are restored into Redis from the database (OptOutBook.restore).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable

from redis.exceptions import RedisError
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.records import migrate
from engine.records.distributions import apply_deliveries
from engine.records.optouts import OptOutBook
from engine.records.writes import insert_opt_out_events, insert_responses
from engine.redis.store import Store

log = logging.getLogger("canvass.archiver")

BATCH = 500  # entries per database transaction
CLAIM_IDLE = 15.0  # seconds an entry may stay unacknowledged before another consumer takes it
INTERVAL = 1.0  # seconds between rounds when there was nothing to archive
# seconds between rounds that archived less than a batch: a round costs a few commands per
# stream (a Cluster has three per shard) whatever it finds, so under a steady trickle it
# waits for more to gather instead of running again at once
BUSY_PAUSE = 0.25
RETRY = (0.5, 30.0)  # first and longest wait after a failure (doubling)
RESCAN = 900.0  # seconds between SCANs for survey streams (and forgetting stopped consumers)
FORGET_AFTER = 86400.0  # seconds a consumer with nothing pending stays in the group unseen
TOGETHER = 16  # streams read, acknowledged or trimmed at once
MIN_SHARE = 16  # entries claimed at least per stream in a round, however many streams share BATCH


def consumer_name() -> str:
    """This process's name in the group: unique, so a restarted worker never takes a dead
    one's entries as its own before CLAIM_IDLE."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Archiver:
    def __init__(self, store: Store, engine: AsyncEngine, surveys: Callable[[], Iterable[str]],
                 *, batch: int = BATCH, interval: float = INTERVAL, claim_idle: float = CLAIM_IDLE):
        self.store, self.engine, self.surveys = store, engine, surveys
        self.book = OptOutBook(engine, store)
        self.batch, self.interval, self.claim_idle = batch, interval, claim_idle
        self.consumer = consumer_name()
        self.known: set[str] = set()
        self.scanned_at: float | None = None
        self.schema_checked = False
        self.restored = False  # restored once since this process started
        self.archived = 0  # records stored by this process (new ones only)
        self.rounds = 0  # rounds run() finished, failed or not
        self.refused: set[tuple[str, str]] = set()  # (stream, entry id) the database refused
        # the streams where this process claimed entries it has not acknowledged (its database
        # transaction failed): their pending entries are read again first
        self.unacknowledged: set[str] = set()
        self.others_at = float("-inf")  # when entries other consumers left were last looked for
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Archive until stop(); a failure (Redis or the database away) is logged and retried."""
        wait = RETRY[0]
        while not self._stop.is_set():
            try:
                moved = await self.archive_once()
                self.rounds += 1
            except (RedisError, SQLAlchemyError, OSError, migrate.SchemaNotCurrent) as err:
                log.warning("archiving paused (retry in %.1f s): %s", wait, _short(err))
                self.rounds += 1
                await self._sleep(wait)
                wait = min(wait * 2, RETRY[1])
                continue
            except Exception:  # a record it cannot store: keep the task alive, say so loudly
                log.exception("archiving failed (retry in %.1f s)", wait)
                self.rounds += 1
                await self._sleep(wait)
                wait = min(wait * 2, RETRY[1])
                continue
            wait = RETRY[0]
            if not moved:
                await self._sleep(self.interval)
            elif moved < self.batch:  # caught up: let the next round find a batch worth its cost
                await self._sleep(BUSY_PAUSE)

    async def stop(self, task: asyncio.Task) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(task, timeout=10)
        except TimeoutError:
            task.cancel()

    async def archive_once(self) -> int:
        """One round over every stream: how many entries were archived (new or not)."""
        if not self.schema_checked:  # a server started while the database was down checks now
            await migrate.check(self.engine, self.engine.url.render_as_string(hide_password=True))
            self.schema_checked = True
        if not self.restored or not await self.store.opt_outs_restored():
            restored = await self.book.restore()
            await self.store.mark_opt_outs_restored()
            self.restored = True
            if restored:
                log.warning("restored %d opt-outs into Redis from the records database", restored)
        now = time.monotonic()
        rescan = self.scanned_at is None or now - self.scanned_at > RESCAN
        if rescan:
            self.known |= await self.store.survey_streams()
            self.scanned_at = now
        self.known |= set(self.surveys())
        inserts = {"optouts": insert_opt_out_events, "deliveries": apply_deliveries, "responses": insert_responses}
        streams = await self.store.record_streams(self.known)
        by_kind: dict[str, list[str]] = {}
        for stream, kind in streams:
            by_kind.setdefault(kind, []).append(stream)
        others = now - self.others_at >= self.claim_idle / 2  # what dead consumers left: now and then
        if others:
            self.others_at = now
        moved = 0
        for kind, kind_streams in by_kind.items():
            moved += await self._drain(kind_streams, inserts[kind], others)
        if rescan:
            # what a process killed between XACK and XTRIM left, and the consumers of
            # processes that stopped
            for stream, _ in streams:
                await self.store.archive_trim(stream)
                await self.store.archive_forget_consumers(stream, int(FORGET_AFTER * 1000))
        return moved

    async def _drain(self, streams: list[str], insert, others: bool) -> int:
        """Archive one batch of each stream of one kind, all in one database transaction (on a
        Redis Cluster a kind has a stream per shard); how many entries were acknowledged."""
        share = max(MIN_SHARE, self.batch // len(streams))
        owed = {stream for stream in streams if stream in self.unacknowledged}
        # From the claim on, until acknowledged, another round (of this process) reads the
        # stream's pending entries too: what this one claimed may not be stored yet.
        self.unacknowledged.update(streams)
        claimed = await _together([functools.partial(
            self.store.archive_claim, stream, self.consumer, share, int(self.claim_idle * 1000),
            own=stream in owed, others=others) for stream in streams])
        batches = [(stream, entries) for stream, entries in zip(streams, claimed, strict=True) if entries]
        # a stream whose claim came back empty holds nothing of this process's (its own pending
        # ones were read, when owed)
        self.unacknowledged.difference_update(stream for stream, entries in zip(streams, claimed, strict=True)
                                              if not entries)
        if not batches:
            return 0
        try:
            async with self.engine.begin() as connection:
                self.archived += await insert(connection, [r for _, entries in batches for _, r in entries
                                                           if r is not None])
            done = {stream: [entry_id for entry_id, _ in entries] for stream, entries in batches}
        except Exception as err:
            if not refused_record(err):
                raise
            done = {stream: await self._one_by_one(stream, entries, insert) for stream, entries in batches}
        await _together([functools.partial(self.store.archive_ack, stream, ids) for stream, ids in done.items()])
        for stream, entries in batches:
            if len(done[stream]) == len(entries):
                self.unacknowledged.discard(stream)
        await _together([functools.partial(self.store.archive_trim, stream) for stream, ids in done.items() if ids])
        return sum(len(ids) for ids in done.values())

    async def _one_by_one(self, stream: str, entries: list, insert) -> list[str]:
        """A batch holding a record the database refuses: store the others, each in its own
        transaction, and leave that one unacknowledged in Redis (nothing is lost; the stream
        is trimmed no further than it) with an error in the log, once per process."""
        done = []
        for entry_id, record in entries:
            try:
                if record is not None:
                    async with self.engine.begin() as connection:
                        self.archived += await insert(connection, [record])
                done.append(entry_id)
            except Exception as err:
                if not refused_record(err):
                    raise
                if (stream, entry_id) not in self.refused:
                    self.refused.add((stream, entry_id))
                    log.error("%s entry %s cannot be archived; it stays in Redis: %s",
                              stream, entry_id, _short(err))
        return done

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)


async def _together(calls: list, at_most: int = TOGETHER) -> list:
    """Await the calls, at most `at_most` at a time: each takes a connection of redis-py's
    pool, which has a bound (a Cluster's 128 shards' streams at once would exceed it)."""
    results = []
    for start in range(0, len(calls), at_most):
        results += await asyncio.gather(*(call() for call in calls[start:start + at_most]))
    return results


def refused_record(err: Exception) -> bool:
    """True when `err` says a record cannot be stored (malformed, or the database rejects its
    values); False for the database being unreachable or busy, which retrying cures."""
    if isinstance(err, OperationalError | InterfaceError):
        return False
    if isinstance(err, DBAPIError):
        return not err.connection_invalidated
    return isinstance(err, KeyError | ValueError | TypeError | StatementError)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
