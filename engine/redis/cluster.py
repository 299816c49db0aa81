"""Whether REDIS_URL names a Redis Cluster node: Canvass asks the node, nothing to configure.

Store.open (engine.redis.store) asks once, when a worker starts: `INFO cluster` says
cluster_enabled:1 on a cluster node. A node that cannot be reached then is taken for one
Redis; should it be a cluster node after all, its first redirection (MOVED) fails the call
with a message saying to restart the worker (engine.redis.multiplexer.Redirected).
"""

from __future__ import annotations

import asyncio

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import ConnectionPool, parse_url
from redis.exceptions import RedisError

from engine.redis.multiplexer import bounded

PROBE_TIMEOUT = 1.0  # seconds


async def is_cluster_node(url: str) -> bool:
    """True when the Redis at `url` runs with cluster-enabled yes (False when unreachable).
    ValueError for a cluster node's URL that names a database other than 0."""
    options = parse_url(url)
    db = options.pop("db", 0)  # a cluster node refuses SELECT: asked without it
    pool = ConnectionPool(**options, socket_connect_timeout=PROBE_TIMEOUT)
    client = redis.Redis(connection_pool=pool)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            enabled = bool(int((await client.info("cluster")).get("cluster_enabled", 0)))
    except (RedisError, TimeoutError):
        return False
    finally:
        await client.aclose()
        await pool.disconnect()
    if enabled and db:
        raise ValueError(f"{url}: a Redis Cluster has only database 0; drop the /<db> from REDIS_URL")
    return enabled


def cluster_client(url: str, timeout: float, max_connections: int) -> TimedRedisCluster:
    """redis-py's RedisCluster client seeded with the node `url` names, every command and
    pipeline bounded by `timeout` (as engine.redis.store.connect's client for one Redis)."""
    # (no timer of redis-py's own for connecting: the call's bound covers it, as for one Redis)
    client = TimedRedisCluster.from_url(url, socket_connect_timeout=None, socket_timeout=None,
                                        max_connections=max_connections, decode_responses=True)
    client.bound = timeout
    return client


class TimedClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list:
        return await bounded(super().execute(raise_on_error, allow_redirections), self.cluster_client.bound)


class TimedRedisCluster(RedisCluster):
    """The client for a Redis Cluster. Where one command of the client for one Redis would
    not work on a cluster, it does the equivalent: MGET per slot, INFO over every master."""

    bound = 1.0  # seconds: cluster_client sets it

    async def execute_command(self, *args, **options):
        return await bounded(super().execute_command(*args, **options), self.bound)

    def pipeline(self, transaction: bool | None = None, shard_hint: str | None = None) -> ClusterPipeline:
        super().pipeline(transaction, shard_hint)  # (its refusals)
        return TimedClusterPipeline(self, transaction)

    async def mget(self, keys, *args):
        """A cluster refuses an MGET across slots: one MGET per slot."""
        return await self.mget_nonatomic(keys, *args)

    async def info(self, section: str | None = None, *args, **kwargs) -> dict:
        """INFO summed over every master: sizes and counts added up; of the other fields
        (statuses, settings) a value no master agrees with the first on is "mixed"."""
        if "target_nodes" in kwargs:
            return await super().info(section, *args, **kwargs)
        found = await super().info(section, *args, target_nodes=self.PRIMARIES, **kwargs)
        merged: dict = {}
        for node_info in found.values():
            for name, value in node_info.items():
                if name not in merged:
                    merged[name] = value
                elif name in SUMMED:
                    merged[name] += value
                elif merged[name] != value:
                    merged[name] = _worst(merged[name], value)
        return merged


SUMMED = frozenset({"used_memory", "used_memory_rss", "used_memory_peak", "used_memory_dataset",
                    "maxmemory", "total_system_memory"})


def _worst(first, other):
    """Of two masters' differing statuses, the one that is not "ok" (a failed write on one
    master is the cluster's); other settings that differ: "mixed"."""
    if first == "ok":
        return other
    if other == "ok":
        return first
    return "mixed" if first != other else first
