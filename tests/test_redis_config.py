"""The shipped Redis configuration (engine/redis/redis.conf) fails safe: a failed snapshot never
stops writes (the AOF, fsynced on every write, is the durability), memory has a limit and is never
freed by evicting conversation state, and the server shows Redis's memory and AOF status."""

from __future__ import annotations

import time

import pytest
import redis
from conftest import RedisServer


@pytest.fixture
def shipped_redis(tmp_path):
    """A redis-server with the shipped configuration exactly (no test overrides)."""
    server = RedisServer(tmp_path / "redis")
    server.overrides = ()
    server.start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield server, client
    client.close()
    server.stop()


def test_a_failed_snapshot_does_not_stop_writes(shipped_redis):
    server, client = shipped_redis
    (server.directory / client.config_get("dbfilename")["dbfilename"]).mkdir()  # the snapshot cannot land
    client.set("before", "1")
    client.bgsave()
    deadline = time.monotonic() + 10
    while client.info("persistence")["rdb_bgsave_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.info("persistence")["rdb_last_bgsave_status"] == "err"
    client.set("after", "1")  # with stop-writes-on-bgsave-error yes: MISCONF, every write refused
    assert client.get("after") == "1"


def test_the_shipped_configuration_limits_memory_without_evicting(shipped_redis):
    _, client = shipped_redis
    config = client.config_get("*")
    assert config["save"] == ""  # no snapshot forks: the AOF is the durability
    assert config["stop-writes-on-bgsave-error"] == "no"
    assert config["appendonly"] == "yes" and config["appendfsync"] == "always"
    assert int(config["maxmemory"]) >= 256 * 1024 * 1024
    assert config["maxmemory-policy"] == "noeviction"


def test_the_shipped_configuration_reclaims_the_expired_replies_promptly(shipped_redis):
    """Each message's replies expire a minute after it (cv:{T}:replies): at the default effort
    a tenth of them would stay in memory until touched (at the shipped 10, about a hundredth)."""
    _, client = shipped_redis
    with client.pipeline(transaction=False) as pipe:
        for n in range(60_000):
            pipe.set(f"cv:{{sms:+1555{n:07d}}}:r", "x" * 150, ex=86400)
            pipe.hset(f"cv:{{sms:+1555{n:07d}}}:replies", "mark", "a reply")
            pipe.pexpire(f"cv:{{sms:+1555{n:07d}}}:replies", 200)
        pipe.execute()
    deadline = time.monotonic() + 6
    while client.dbsize() >= 60_000 * 1.05 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.dbsize() < 60_000 * 1.05


def test_a_full_redis_refuses_writes_loudly(shipped_redis):
    _, client = shipped_redis
    client.config_set("maxmemory", str(client.info("memory")["used_memory"] + 64 * 1024))
    with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
        for n in range(10_000):
            client.set(f"cv:{{sms:+1555{n:07d}}}:r", "x" * 1024)
    assert client.exists("cv:{sms:+15550000000}:r")  # nothing written before was evicted


async def test_readyz_and_metrics_show_redis_memory_and_aof_status(client, redis_sync):
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    memory, persistence = ready["redis_memory"], ready["redis_persistence"]
    # (on a Cluster, redis_sync's INFO sums every master's, as the server's does)
    assert memory["used_bytes"] > 0 and memory["max_bytes"] == redis_sync.info("memory")["maxmemory"]
    assert memory["policy"] == "noeviction"
    aof = bool(redis_sync.info("persistence")["aof_enabled"])  # (the tests' cluster runs without)
    assert persistence == {"aof_enabled": aof, "aof_last_write": "ok", "aof_last_rewrite": "ok",
                           "rdb_last_snapshot": "ok"}
    metrics = await (await client.get("/metrics")).text()
    lines = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if not line.startswith("#"))
    assert float(lines["canvass_redis_used_memory_bytes"]) > 0
    assert float(lines["canvass_redis_maxmemory_bytes"]) == memory["max_bytes"]
    assert lines["canvass_redis_aof_enabled"] == str(int(aof)) and lines["canvass_redis_aof_last_write_ok"] == "1"
    assert lines["canvass_redis_up"] == "1"


async def test_readyz_is_503_when_redis_cannot_take_writes(client, redis_sync):
    """On a Cluster, one master refusing writes is enough: a third of the conversations cannot commit."""
    one = {"target_nodes": redis_sync.get_primaries()[0]} if isinstance(redis_sync, redis.RedisCluster) else {}
    limit = redis_sync.config_get("maxmemory", **one)["maxmemory"]
    redis_sync.config_set("maxmemory", "1", **one)  # below what Redis already holds: every write is refused
    try:
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["status"] == "unavailable"
        assert "maxmemory" in (await response.json())["redis"]
    finally:
        redis_sync.config_set("maxmemory", limit, **one)
