"""Redis Cluster mode against a real cluster (tests/redis_cluster.py): detection, routing by
slot, MOVED after a slot moved, ASK during a migration, a master killed while commands flow."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis as redis_sync_lib
from conftest import free_port
from redis.cluster import key_slot
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import select
from test_records_faults import response

from engine.records.archiver import Archiver
from engine.records.database import connect as connect_records
from engine.records.schema import responses
from engine.redis.cluster import TimedRedisCluster, is_cluster_node
from engine.redis.multiplexer import ClusterMultiplexer, CrossSlot, Multiplexer
from engine.redis.store import Store, TimedRedis, connect

TAGGED = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"  # a reply that names its caller


def slot_of(key: str) -> int:
    return key_slot(key.encode())


def keys_on_every_master(redis_cluster, per_master: int = 3) -> list[str]:
    """Keys spread so that each master serves `per_master` of them."""
    found: dict[int, list[str]] = {port: [] for port in redis_cluster.masters()}
    ranges = _ranges(redis_cluster)
    n = 0
    while any(len(keys) < per_master for keys in found.values()):
        key = f"cv:{{t{n}}}:r"
        owner = next(port for start, end, port in ranges if start <= slot_of(key) <= end)
        if len(found[owner]) < per_master:
            found[owner].append(key)
        n += 1
    return [key for keys in found.values() for key in keys]


def _ranges(redis_cluster):
    from redis_cluster import _slots
    with redis_cluster.client(redis_cluster.masters()[0]) as client:
        return _slots(client)


@pytest.fixture
async def cluster_mux(cluster_url):
    client = connect(cluster_url, cluster=True)
    mux = Multiplexer.like(client, timeout=1.0)
    yield mux
    await mux.aclose()
    await client.aclose()


async def test_a_cluster_node_is_detected_and_one_redis_is_not(cluster_url, redis_server):
    assert await is_cluster_node(cluster_url) and not await is_cluster_node(redis_server.url)
    assert not await is_cluster_node(f"redis://127.0.0.1:{free_port()}/0")  # unreachable
    cluster, single = await Store.open(cluster_url), await Store.open(redis_server.url)
    try:
        assert isinstance(cluster.redis, TimedRedisCluster) and isinstance(single.redis, TimedRedis)
        assert type(cluster.mux) is ClusterMultiplexer and type(cluster.patient) is ClusterMultiplexer
        assert type(single.mux) is Multiplexer  # one Redis pays for no routing
    finally:
        await cluster.aclose()
        await single.aclose()


async def test_a_cluster_url_with_a_database_is_refused(cluster_url):
    with pytest.raises(ValueError, match="only database 0"):
        await Store.open(cluster_url.rsplit("/", 1)[0] + "/2")


async def test_each_command_goes_to_the_master_of_its_slot(cluster_mux, redis_cluster):
    keys = keys_on_every_master(redis_cluster)
    replies = await asyncio.gather(*(cluster_mux.execute("EVAL", TAGGED, 1, key, f"caller {n}")
                                     for n, key in enumerate(keys)))
    assert replies == [[key, f"caller {n}", 1] for n, key in enumerate(keys)]
    for key in keys:
        owner = redis_cluster.master_of_slot(slot_of(key))
        for port in redis_cluster.masters():
            with redis_cluster.client(port) as client:
                held = client.execute_command("EVAL", "return redis.call('GET', KEYS[1])", 1, key) \
                    if port == owner else None
                assert held == ("1" if port == owner else None)
    assert await cluster_mux.execute("PING") == "PONG"  # a command without keys: any master


async def test_keys_in_different_slots_fail_loudly_and_are_not_sent(cluster_mux):
    assert slot_of("cv:{a}:r") != slot_of("cv:{b}:r")
    with pytest.raises(CrossSlot, match=r"CROSSSLOT EVALSHA.s keys hash to different .*cv:\{a\}:r \(slot \d+\) but cv:\{b\}:r"):
        await cluster_mux.execute("EVALSHA", "0" * 40, 2, "cv:{a}:r", "cv:{b}:r")
    with pytest.raises(CrossSlot):
        await cluster_mux.execute("EVAL", "return 1", 2, "cv:{a}:r", "cv:{b}:r")
    # keys sharing a hash tag share a slot
    assert await cluster_mux.execute("EVAL", "return #KEYS", 2, "cv:{a}:r", "cv:{a}:in") == 2


async def test_a_script_loaded_is_on_every_master(cluster_mux, redis_cluster):
    sha = await cluster_mux.execute("SCRIPT", "LOAD", TAGGED)
    keys = keys_on_every_master(redis_cluster, per_master=1)
    replies = await asyncio.gather(*(cluster_mux.execute("EVALSHA", sha, 1, key, "x") for key in keys))
    assert replies == [[key, "x", 1] for key in keys]


async def test_a_slot_moved_under_the_map_is_followed(cluster_mux, redis_cluster):
    key = "cv:{moved}:r"
    slot = slot_of(key)
    assert await cluster_mux.execute("SET", key, "before") == "OK"  # the map is read
    source = redis_cluster.master_of_slot(slot)
    target = next(port for port in redis_cluster.masters() if port != source)
    redis_cluster.begin_migration(slot, target)
    redis_cluster.migrate_key(key, source, target)
    redis_cluster.finish_migration(slot, target)
    assert cluster_mux._slots[slot][1] == source  # the map it holds is stale: MOVED
    assert await cluster_mux.execute("GET", key) == "before"
    assert cluster_mux._slots[slot][1] == target
    assert await cluster_mux.execute("SET", key, "after") == "OK"
    with redis_cluster.client(target) as client:
        assert client.execute_command("EVAL", "return redis.call('GET', KEYS[1])", 1, key) == "after"


async def test_a_slot_being_migrated_is_asked_for_and_the_map_kept(cluster_mux, redis_cluster):
    stays, moves = "cv:{asked}:r", "cv:{asked}:in"
    slot = slot_of(stays)
    await cluster_mux.execute("SET", stays, "on the source")
    await cluster_mux.execute("SET", moves, "on the target")
    source = redis_cluster.master_of_slot(slot)
    target = next(port for port in redis_cluster.masters() if port != source)
    redis_cluster.begin_migration(slot, target)
    try:
        redis_cluster.migrate_key(moves, source, target)
        assert await cluster_mux.execute("GET", moves) == "on the target"  # ASK, then ASKING + GET
        assert await cluster_mux.execute("GET", stays) == "on the source"
        assert cluster_mux._slots[slot][1] == source  # an ASK changes no map
        with pytest.raises(ResponseError, match="TRYAGAIN"):  # a script on keys split mid-migration
            await cluster_mux.execute("EVAL", "return redis.call('GET', KEYS[1])", 2, stays, moves)
    finally:
        redis_cluster.migrate_key(stays, source, target)
        redis_cluster.finish_migration(slot, target)
    assert await cluster_mux.execute("GET", stays) == "on the source"  # now MOVED


@pytest.mark.slow
async def test_a_reshard_of_many_slots_under_load_loses_and_doubles_nothing(cluster_mux, redis_cluster):
    keys = [f"cv:{{load{n}}}:r" for n in range(200)]
    done = {key: 0 for key in keys}
    stop = False

    async def load(key: str) -> None:
        while not stop:
            reply = await cluster_mux.execute("EVAL", TAGGED, 1, key, key)
            assert reply == [key, key, done[key] + 1]  # every increment once, in order
            done[key] += 1

    workers = [asyncio.ensure_future(load(key)) for key in keys]
    await asyncio.sleep(0.2)
    source, target = redis_cluster.masters()[:2]
    await asyncio.to_thread(redis_cluster.reshard, source, target, 1000)
    await asyncio.sleep(0.2)
    stop = True
    await asyncio.gather(*workers)
    for key in keys:
        assert int(await cluster_mux.execute("GET", key)) == done[key]
    assert sum(done.values()) > len(keys)


@pytest.mark.slow
async def test_a_master_killed_while_commands_flow(cluster_mux, redis_cluster):
    """Every call gets its own reply or an error within about the timeout; once the replica
    has taken over, calls to the dead master's slots succeed on it."""
    keys = keys_on_every_master(redis_cluster, per_master=20)
    victim = redis_cluster.masters()[0]
    lost = [key for key in keys if redis_cluster.master_of_slot(slot_of(key)) == victim]
    outcomes = {"ok": 0, "error": 0}
    slowest = 0.0
    stop = False

    async def load(key: str) -> None:
        nonlocal slowest
        n = 0
        while not stop:
            token = f"{key}#{n}"
            started = time.monotonic()
            try:
                reply = await cluster_mux.execute("EVAL", TAGGED, 1, key, token)
            except RedisError:
                outcomes["error"] += 1
                await asyncio.sleep(0.05)
            else:
                assert reply[:2] == [key, token]  # never another caller's reply
                outcomes["ok"] += 1
            slowest = max(slowest, time.monotonic() - started)
            n += 1

    workers = [asyncio.ensure_future(load(key)) for key in keys]
    await asyncio.sleep(0.3)
    promoted = await asyncio.to_thread(redis_cluster.kill_master, victim)
    ok_before = outcomes["ok"]
    await asyncio.sleep(1.0)
    stop = True
    await asyncio.gather(*workers)
    assert outcomes["ok"] > ok_before  # calls flow again after the failover
    assert slowest < 2 * cluster_mux.timeout + 1.0
    for key in lost:  # the promoted replica serves the dead master's keys
        reply = await cluster_mux.execute("EVAL", TAGGED, 1, key, "after")
        assert reply[:2] == [key, "after"]
        assert redis_cluster.master_of_slot(slot_of(key)) == promoted


def test_a_cluster_a_failed_test_left_broken_is_whole_for_the_next(cluster_url, redis_cluster):
    """What a reshard cut off mid-way leaves (a slot migrating and importing) and a killed
    node are healed before the next test: `redis-cli --cluster check` finds nothing open."""
    slot = slot_of("cv:{left-open}:r")
    source = redis_cluster.master_of_slot(slot)
    target = next(port for port in redis_cluster.masters() if port != source)
    redis_cluster.begin_migration(slot, target)
    assert any("open" in problem for problem in redis_cluster.problems())
    down = next(node for node in redis_cluster.nodes if node.port not in redis_cluster.masters())
    down.process.kill()
    down.process.wait()
    down.process = None
    redis_cluster.heal()
    assert all(node.process is not None for node in redis_cluster.nodes)
    assert redis_cluster.problems() == []
    with redis_cluster.client(redis_cluster.master_of_slot(slot)) as client:
        assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


async def test_no_reachable_node_is_a_connection_error(redis_cluster):
    mux = ClusterMultiplexer({}, redis_sync_lib.asyncio.connection.Connection,
                             [("127.0.0.1", free_port())], timeout=0.5)
    try:
        with pytest.raises(RedisError, match="no Redis Cluster node answered"):
            await mux.execute("GET", "cv:{x}:r")
    finally:
        await mux.aclose()


async def test_the_stores_other_commands_work_on_a_cluster(cluster_url, redis_cluster):
    """The admin reads and fleet writes through redis-py's RedisCluster client: scans over
    every master, MGET per slot, INFO summed over the masters, pub/sub across nodes."""
    store = await Store.open(cluster_url)
    try:
        phones = [f"+1555000{n:04d}" for n in range(30)]
        for phone in phones:
            await store.redis.set(store.layout.respondent("sms", phone), "1|stored")
        found = [entry async for entry in store.respondent_records(batch=7)]
        assert sorted(found) == sorted(("sms", phone, "stored") for phone in phones)
        assert await store.records(phones[0], ("sms", "whatsapp")) == {"sms": "stored", "whatsapp": None}
        health = await store.health()
        with redis_cluster.client(redis_cluster.masters()[0]) as client:
            one = client.info("memory")["used_memory"]
        assert health["used_bytes"] > 2 * one  # three masters' memory
        assert await store.beat("worker-1", 0) == 0
        assert list(await store.workers()) == ["worker-1"]
        announcements = store.reload_announcements()
        first = asyncio.ensure_future(announcements.__anext__())
        await asyncio.sleep(0.3)  # subscribed
        generation, _ = await store.announce_live({"s": "v1"}, "worker-1")
        assert await asyncio.wait_for(first, 5) == generation
        await announcements.aclose()
    finally:
        await store.aclose()


async def test_a_conversations_read_runs_on_the_master_of_its_slot(cluster_url, redis_cluster):
    """READ touches only the conversation's slot: it runs on a cluster (loaded by NOSCRIPT)."""
    store = await Store.open(cluster_url)
    try:
        key = store.layout.respondent("sms", "+15551230001")
        with redis_cluster.client(redis_cluster.master_of_slot(slot_of(key))) as owner:
            owner.execute_command("SET", key, "7|stored record")
            owner.execute_command("SCRIPT", "FLUSH")
        snapshot = await store.read("sms", "+15551230001")
        assert (snapshot.record, snapshot.revision) == ("stored record", "7")
    finally:
        await store.aclose()


async def test_one_redis_multiplexer_on_a_cluster_node_says_to_restart(redis_cluster, cluster_url):
    """A worker that took a cluster node for one Redis (it could not be reached at start) fails
    its first redirected call with a message saying what to do."""
    port = redis_cluster.masters()[0]
    key = next(f"cv:{{r{n}}}:r" for n in range(1000) if redis_cluster.master_of_slot(slot_of(f"cv:{{r{n}}}:r")) != port)
    mux = Multiplexer({"host": "127.0.0.1", "port": port}, redis_sync_lib.asyncio.connection.Connection)
    try:
        with pytest.raises(ResponseError, match=r"^MOVED \d+ .*restart"):
            await mux.execute("GET", key)
    finally:
        await mux.aclose()


def test_canvass_serve_on_a_cluster_url_with_a_database_says_so_and_exits(cluster_url, tmp_path, monkeypatch,
                                                                          capsys):
    from engine.tools.cli import main

    monkeypatch.setenv("REDIS_URL", cluster_url.rsplit("/", 1)[0] + "/2")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'records.db'}")
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "s.yaml").write_text("survey: s\ntitle: S\nflow:\n  - ask: q\n    type: text\n    prompt: Q?\n")
    assert main(["serve", "--flows", str(flows), "--insecure", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "REDIS_URL:" in err and "only database 0" in err and "Traceback" not in err


async def test_the_archiver_finds_the_record_streams_of_every_shard(cluster_url):
    """The streams of all 128 shards (three each) are asked for at once: more than one
    master's connection pool holds, so the asking must not need a connection per stream."""
    store = await Store.open(cluster_url)
    try:
        layout = store.layout
        first, last = layout.shards[0], layout.shards[-1]
        with redis_sync_lib.RedisCluster.from_url(cluster_url) as client:
            client.xadd(layout.responses(first, ""), {"r": "{}"})
            client.xadd(layout.opt_outs(last), {"r": "{}"})
        for _ in range(3):  # as every round of the archiver does, the client's nodes known
            assert await store.record_streams(set()) == [(layout.responses(first, ""), "responses"),
                                                         (layout.opt_outs(last), "optouts")]
    finally:
        await store.aclose()


async def test_the_archiver_archives_every_shards_stream_at_once(cluster_url, database_url):
    """A response in each of the 128 shards' streams (more streams than a master's connection
    pool holds): one round archives them all, in one transaction, and trims every stream."""
    store = await Store.open(cluster_url)
    engine = connect_records(database_url)
    try:
        layout = store.layout
        with redis_sync_lib.RedisCluster.from_url(cluster_url) as client:
            for n, shard in enumerate(layout.shards):
                client.xadd(layout.responses(shard, "short"), {"r": json.dumps(response(n))})
        archiver = Archiver(store, engine, lambda: ["short"])
        assert await archiver.archive_once() == len(layout.shards)
        async with engine.connect() as connection:
            stored = set(await connection.scalars(select(responses.c.response_id)))
        assert stored == {response(n)["response_id"] for n in range(len(layout.shards))}
        with redis_sync_lib.RedisCluster.from_url(cluster_url) as client:
            assert sum(client.xlen(layout.responses(shard, "")) for shard in layout.shards) == 0
        assert await archiver.archive_once() == 0
    finally:
        await engine.dispose()
        await store.aclose()


async def test_each_shard_keeps_its_own_mark_of_the_restored_opt_outs(cluster_url):
    """A master that loses its data alone loses its shards' marks: the opt-outs are restored again."""
    store = await Store.open(cluster_url)
    try:
        assert not await store.opt_outs_restored()
        await store.mark_opt_outs_restored()
        assert await store.opt_outs_restored()
        with redis_sync_lib.RedisCluster.from_url(cluster_url) as client:
            assert client.delete(store.layout.restored(store.layout.shards[77])) == 1
        assert not await store.opt_outs_restored()
    finally:
        await store.aclose()
