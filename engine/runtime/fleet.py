"""One worker's place among every worker and server sharing the Redis: its heartbeat, the
reloads it takes, and the confirmations a reload waits for.

A reload announces the next generation of the live set in Redis (engine.runtime.registry).
Each worker listens for announcements (Redis pub/sub) and takes the announced set from the
stored sources; its heartbeat (every FLEET_BEAT s) says which generation it runs, and also
catches up on an announcement it missed (Redis restarted, a stopped process resumed). The
worker that reloaded through the API waits, at most CONFIRM_TIMEOUT, until every worker
alive at the announcement has said it runs that generation (or a newer one) or that it
could not compile it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from dsl.errors import FlowError
from engine.redis.store import FLEET_BEAT, Store
from engine.runtime.registry import Registry

log = logging.getLogger("canvass.fleet")

CONFIRM_TIMEOUT = 5.0  # seconds a reload through the API waits for the other workers
CONFIRM_POLL = 0.05
RETRY = 1.0  # seconds before listening again after Redis failed


@dataclass
class Confirmations:
    """What the workers alive at an announcement said about it."""

    confirmed: list[str] = field(default_factory=list)  # run it (or a newer generation)
    refused: dict[str, str] = field(default_factory=dict)  # could not compile it: worker -> why
    unconfirmed: list[str] = field(default_factory=list)  # said nothing within the timeout
    gone: list[str] = field(default_factory=list)  # stopped meanwhile (no longer listed)

    @property
    def complete(self) -> bool:
        return not self.refused and not self.unconfirmed

    def to_json(self) -> dict:
        return {"confirmed": sorted(self.confirmed), "unconfirmed": sorted(self.unconfirmed),
                "refused": [{"worker": w, "error": e} for w, e in sorted(self.refused.items())],
                "gone": sorted(self.gone)}


async def confirmations(store: Store, generation: int, workers: tuple[str, ...], own: str,
                        timeout: float = CONFIRM_TIMEOUT) -> Confirmations:
    """Wait until each of `workers` runs `generation` (or newer), refused it or left; at most `timeout`."""
    answer = Confirmations(confirmed=[own])
    waiting = set(workers)
    deadline = asyncio.get_running_loop().time() + timeout
    while waiting:
        entries = await store.workers()
        for worker in sorted(waiting):
            entry = entries.get(worker)
            if entry is None:
                answer.gone.append(worker)
            elif entry["generation"] >= generation:
                answer.confirmed.append(worker)
            elif entry["refused"] >= generation:
                answer.refused[worker] = entry["error"]
            else:
                continue
            waiting.discard(worker)
        if not waiting or asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(CONFIRM_POLL)
    answer.unconfirmed = sorted(waiting)
    return answer


class Member:
    """This worker in the fleet: it takes every announced reload and beats its heart.

    `lock` is the one reloads in this process hold, so a reload and a take never interleave.
    `on_beat` runs after each heartbeat (the shared metrics of `--workers N`)."""

    def __init__(self, registry: Registry, store: Store, lock: asyncio.Lock,
                 on_beat: Callable[[], object] | None = None):
        self.registry, self.store, self.lock, self.on_beat = registry, store, lock, on_beat
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._heartbeat())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError):
            await self.store.leave(self.registry.worker)

    async def sync(self) -> None:
        """Take the live set announced in Redis (or announce ours when Redis has none), then say so."""
        registry = self.registry
        async with self.lock:
            before = registry.live.generation
            try:
                if not await registry.take() and registry.live.flows:
                    announced = await registry.announce_current()
                    log.info("Redis had no live flows: announced ours as generation %d", announced.live.generation)
                elif registry.live.generation != before:
                    log.info("took generation %d: %s", registry.live.generation,
                             ", ".join(f"{f.id}@{f.version}" for f in registry.live.flows.values()))
            except FlowError as err:
                log.error("the flows announced as generation %d do not compile here; keeping generation %d:\n%s",
                          registry.refused[0], registry.live.generation, err)
        await self.beat()

    async def beat(self) -> int:
        refused, error = self.registry.refused
        return await self.store.beat(self.registry.worker, self.registry.live.generation, refused, error)

    async def _listen(self) -> None:
        while True:
            try:
                async for generation in self.store.reload_announcements():
                    if generation > self.registry.live.generation and generation != self.registry.refused[0]:
                        await self.sync()
            except RedisError as err:
                log.debug("reload announcements interrupted (%s); listening again", err)
            await asyncio.sleep(RETRY)

    async def _heartbeat(self) -> None:
        while True:
            try:
                live = await self.beat()
                behind = live > self.registry.live.generation and live != self.registry.refused[0]
                if behind or (live == 0 and self.registry.live.flows):
                    await self.sync()  # a missed announcement, or a Redis that lost the live set
                if self.on_beat is not None:
                    await self.on_beat()
            except RedisError as err:
                log.debug("heartbeat failed: %s", err)
            await asyncio.sleep(FLEET_BEAT)
