"""The background sweeper: sends due reminders and closes expired sessions.

Safe with several server processes on one Redis: each due timer is claimed by one
worker with a lease (see store.CLAIM_DUE), and a worker that dies mid-way leaves its
claims to come back when the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from engine.runtime.registry import Registry
from engine.runtime.service import Service

log = logging.getLogger("canvass.timers")

PUBLISH_EVERY = 3600.0  # refresh the TTL of live flow sources this often (seconds)
# On a Redis Cluster, extend the sources of pinned flow versions this often (seconds): a commit
# notes its pin in its shard (engine.redis.store.ClusterLayout), far from the source key.
PIN_EVERY = 60.0
STOP_GRACE = 15.0  # how long shutdown waits for a sweep under way


class Sweeper:
    def __init__(self, service: Service, registry: Registry, interval: float,
                 clock: Callable[[], float]):
        self.service, self.registry = service, registry
        self.interval, self.clock = interval, clock
        self._stop = asyncio.Event()
        self._published_at: float | None = None
        self._pinned_at: float | None = None
        self._redis_down = False

    async def sweep(self) -> int:
        """Handle every timer due now (in batches); how many were handled."""
        handled = 0
        while True:
            claimed, more = await self.service.sweep()
            handled += claimed
            if not more:
                return handled

    async def _refresh_sources(self) -> None:
        now = self.clock()
        if self._published_at is None or now - self._published_at >= PUBLISH_EVERY:
            await self.registry.publish()
            self._published_at = now
        store = self.service.store
        if store.layout.cluster and (self._pinned_at is None or now - self._pinned_at >= PIN_EVERY):
            self._pinned_at = now  # tried again in PIN_EVERY, and a failure holds no sweep back
            try:
                for survey, version in await store.keep_pinned_flows():
                    await self.registry.republish(survey, version)
            except RedisError as err:
                log.warning("pinned flow sources not extended this time: %s", err)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._refresh_sources()
                await self.sweep()
                if self._redis_down:
                    self._redis_down = False
                    log.info("Redis is reachable again; timers are swept again")
            except RedisError as err:
                if not self._redis_down:  # once per outage, not once per interval
                    self._redis_down = True
                    log.warning("timer sweeps paused until Redis is reachable: %s", err)
            except Exception:
                log.exception("timer sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def stop(self, task: asyncio.Task) -> None:
        """Let a sweep under way finish (a committed reminder must still go out), then end."""
        self._stop.set()
        try:
            await asyncio.wait_for(task, STOP_GRACE)
        except TimeoutError:
            log.warning("timer sweep did not finish within %.0f s; cancelled", STOP_GRACE)
