"""Whether REDIS_URL names a Redis Cluster node: Canvass asks the node, nothing to configure.

`connect` (engine.redis.store) asks once, when a worker starts: `INFO cluster` says
cluster_enabled:1 on a cluster node. A node that cannot be reached then is taken for one
Redis; should it be a cluster node after all, its first redirection (MOVED) fails the call
with a message saying to restart the worker (engine.redis.multiplexer.Redirected).
"""

from __future__ import annotations

import redis
from redis.connection import ConnectionPool, parse_url
from redis.exceptions import RedisError

PROBE_TIMEOUT = 1.0  # seconds


def is_cluster_node(url: str) -> bool:
    """True when the Redis at `url` runs with cluster-enabled yes (False when unreachable)."""
    options = parse_url(url)
    db = options.pop("db", 0)  # a cluster node refuses SELECT: asked without it
    pool = ConnectionPool(**options, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT)
    try:
        with redis.Redis(connection_pool=pool) as client:
            enabled = bool(int(client.info("cluster").get("cluster_enabled", 0)))
    except RedisError:
        return False
    finally:
        pool.disconnect()
    if enabled and db:
        raise ValueError(f"{url}: a Redis Cluster has only database 0; drop the /<db> from REDIS_URL")
    return enabled
