"""engine.redis.multiplexer against a real Redis: every caller gets its own reply, whatever happens."""

from __future__ import annotations

import asyncio
import threading
import time

import hiredis
import pytest
import redis as redis_sync_lib
from conftest import free_port
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis_proxy import DelayingProxy

from engine.redis.multiplexer import Multiplexer, NotSent, bounded
from engine.redis.store import REDIS_TIMEOUT, connect


@pytest.fixture
def redis_url(one_redis_url) -> str:
    """One Redis, also when the other tests run on a Cluster: a Multiplexer is one node's
    pipelined link (the cluster's, one per master, is tests/test_cluster.py's)."""
    return one_redis_url


@pytest.fixture
async def mux(redis_url):
    client = connect(redis_url)
    mux = Multiplexer.like(client, timeout=1.0)
    yield mux
    await mux.aclose()
    await client.aclose()


async def test_concurrent_callers_each_get_their_own_reply(mux):
    payloads = [f"caller {n} é{'x' * (n % 50)}" for n in range(2000)]
    replies = await asyncio.gather(*(mux.execute("ECHO", p) for p in payloads))
    assert replies == payloads


async def test_replies_keep_their_types(mux):
    assert await mux.execute("SET", "k", "v") == "OK"
    assert await mux.execute("GET", "missing") is None
    assert await mux.execute("INCRBY", "n", 5) == 5
    assert await mux.execute("EVAL", "return {1, 'two', false}", 0) == [1, "two", None]


async def test_an_error_reply_fails_only_its_own_caller(mux):
    results = await asyncio.gather(
        mux.execute("SET", "a", "1"), mux.execute("INCR", "a", "too", "many"), mux.execute("GET", "a"),
        mux.execute("EVALSHA", "0" * 40, 0), return_exceptions=True)
    assert results[0] == "OK" and results[2] == "1"
    assert type(results[1]) is ResponseError and "wrong number of arguments" in str(results[1])
    assert isinstance(results[3], NoScriptError)


async def test_a_cancelled_caller_leaves_the_replies_in_step(mux):
    first = asyncio.ensure_future(mux.execute("ECHO", "first"))
    await asyncio.sleep(0)  # its command is queued
    first.cancel()
    assert await mux.execute("ECHO", "second") == "second"
    assert await asyncio.gather(*(mux.execute("ECHO", str(n)) for n in range(50))) == [str(n) for n in range(50)]


async def test_the_database_of_the_url_is_selected(redis_server, redis_sync):
    client = connect(redis_server.url.rsplit("/", 1)[0] + "/3")
    mux = Multiplexer.like(client)
    try:
        await mux.execute("SET", "in-db-3", "yes")
    finally:
        await mux.aclose()
        await client.aclose()
    assert redis_sync.get("in-db-3") is None
    other = redis_sync_lib.Redis(port=redis_server.port, db=3, decode_responses=True)
    try:
        assert other.get("in-db-3") == "yes"
        other.delete("in-db-3")
    finally:
        other.close()


async def test_a_killed_connection_is_replaced_and_the_call_retried(mux, redis_sync):
    for _ in range(3):
        connection_id = await mux.execute("CLIENT", "ID")
        redis_sync.client_kill_filter(_id=connection_id)
        assert await mux.execute("ECHO", "still here") == "still here"
        assert await mux.execute("CLIENT", "ID") != connection_id


async def test_a_busy_redis_is_a_timeout_and_then_the_next_call_works(redis_url, redis_server):
    client = connect(redis_url)
    mux = Multiplexer.like(client, timeout=0.3)
    await mux.execute("PING")
    busy = redis_sync_lib.Redis(port=redis_server.port)
    spin = "local t = redis.call('TIME')[1] + 2 repeat until tonumber(redis.call('TIME')[1]) >= t"
    blocker = threading.Thread(target=busy.eval, args=(spin, 0))
    try:
        blocker.start()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await mux.execute("ECHO", "while busy")
        assert time.monotonic() - started < 0.6
        blocker.join(10)
        assert await mux.execute("ECHO", "after") == "after"
    finally:
        blocker.join(10)
        busy.close()
        await mux.aclose()
        await client.aclose()


async def test_no_redis_is_a_connection_error_at_once():
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    mux = Multiplexer.like(client, timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(NotSent):  # it never ran: a caller may say so for sure
            await mux.execute("PING")
    finally:
        await mux.aclose()
        await client.aclose()
    assert time.monotonic() - started < 0.5


async def test_a_command_whose_connection_broke_under_it_may_have_run(redis_server):
    proxy = await DelayingProxy(redis_server.port, slow=lambda command: command[0] == b"ECHO").start()
    client = connect(proxy.url)
    mux = Multiplexer.like(client, timeout=1.0)
    try:
        assert await mux.execute("PING") == "PONG"
        proxy.swallow = True  # every connection the ECHO goes on breaks under it
        with pytest.raises(RedisConnectionError) as broken:
            await mux.execute("ECHO", "lost")
        assert not isinstance(broken.value, NotSent)
    finally:
        await mux.aclose()
        await client.aclose()
        await proxy.close()


async def test_a_reply_that_is_not_utf8_fails_only_its_own_caller(mux, redis_sync):
    redis_sync.set("binary", b"\xff\xfe")
    calls = [mux.execute("INCR", "counter") for _ in range(20)] + [mux.execute("GET", "binary")] + \
        [mux.execute("INCR", "counter") for _ in range(20)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[20], ResponseError) and "UTF-8" in str(results[20])
    assert results[:20] + results[21:] == list(range(1, 41))
    assert redis_sync.get("counter") == "40"  # nothing ran twice


async def test_a_blocked_event_loop_is_not_taken_for_a_silent_redis(redis_url):
    client = connect(redis_url)
    mux = Multiplexer.like(client, timeout=0.2)
    try:
        await mux.execute("PING")
        call = asyncio.ensure_future(mux.execute("ECHO", "after a stall"))
        await asyncio.sleep(0)
        time.sleep(0.5)  # a long synchronous job (a big flow compiling) holds the loop
        assert await call == "after a stall"
    finally:
        await mux.aclose()
        await client.aclose()


async def _paused_during(call, pause: float):
    """`call` started, then the event loop held for `pause` seconds (a full collection of a big
    heap took 1.5 s), then its result."""
    started = asyncio.ensure_future(call)
    for _ in range(3):
        await asyncio.sleep(0)
    time.sleep(pause)
    return await started


async def test_a_pause_of_the_worker_does_not_fail_a_call_of_the_pooled_client(redis_url):
    """The pooled client's bound (REDIS_TIMEOUT, 1 s) counts the loop's running time: a pause
    longer than it is not Redis's silence, whether the call was connecting, waiting for a
    pooled connection or for its reply."""
    client = connect(redis_url)  # (no connection yet: the call connects)
    crowded = connect(redis_url, max_connections=1)
    try:
        assert await _paused_during(client.echo("while connecting"), REDIS_TIMEOUT * 1.5) == "while connecting"
        assert await _paused_during(client.echo("while waiting"), REDIS_TIMEOUT * 1.5) == "while waiting"
        holding = asyncio.ensure_future(crowded.blpop(["nothing-here"], 0.3))  # the only connection
        await asyncio.sleep(0.05)
        assert await _paused_during(crowded.echo("after the pool"), REDIS_TIMEOUT * 1.5) == "after the pool"
        assert await holding is None
    finally:
        await client.aclose()
        await crowded.aclose()


async def test_a_silent_server_fails_a_call_of_the_pooled_client_within_its_bound():
    """A server that takes the connection and never answers (a Redis frozen mid-handshake)."""
    async def silent(reader, writer):
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    client = connect(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0")
    try:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await client.ping()
        assert REDIS_TIMEOUT <= time.monotonic() - started < REDIS_TIMEOUT * 2
    finally:
        await client.aclose()
        server.close()


async def test_bounded_fails_a_call_not_answered_within_its_time_and_only_then():
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError, match="within 0.2 s"):
        await bounded(asyncio.Event().wait(), 0.2)
    assert 0.2 <= time.monotonic() - started < 0.6
    assert asyncio.current_task().cancelling() == 0  # (its own cancellation taken back)
    assert await bounded(asyncio.sleep(0.3, "slow, not silent"), 0.5) == "slow, not silent"


async def test_bounded_does_not_count_a_pause_of_the_loop_up_to_twice_its_time():
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        await _paused_during(bounded(asyncio.Event().wait(), 0.2), 0.3)  # not counted
    assert time.monotonic() - started >= 0.3 + 0.2 * 7 / 8  # (checked every eighth of it)
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):  # counted beyond FORGIVEN (2) x 0.2 s: it expires at once
        await _paused_during(bounded(asyncio.Event().wait(), 0.2), 1.0)
    assert time.monotonic() - started < 1.0 + 0.1


async def test_bounded_passes_a_cancellation_from_outside_on_as_one():
    waiting = asyncio.ensure_future(bounded(asyncio.Event().wait(), 5.0))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_bounded_takes_its_cancellation_back_when_the_call_ends_otherwise():
    async def swallows():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "answered all the same"

    async def breaks():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            raise RedisConnectionError("the connection broke while it was cancelled") from None

    assert await bounded(swallows(), 0.1) == "answered all the same"
    assert asyncio.current_task().cancelling() == 0
    with pytest.raises(RedisConnectionError):
        await bounded(breaks(), 0.1)
    assert asyncio.current_task().cancelling() == 0


async def test_a_closed_multiplexer_refuses_calls_and_opens_no_connection(redis_url, redis_sync):
    client = connect(redis_url)
    mux = Multiplexer.like(client)
    await mux.execute("CLIENT", "SETNAME", "canvass-mux-test")
    in_flight = asyncio.ensure_future(mux.execute("ECHO", "in flight"))
    await asyncio.sleep(0)
    await mux.aclose()
    with pytest.raises(RedisConnectionError):
        await in_flight
    with pytest.raises(RedisConnectionError):
        await mux.execute("PING")
    await client.aclose()
    await asyncio.sleep(0.05)
    assert "canvass-mux-test" not in redis_sync.execute_command("CLIENT", "LIST")
    assert mux._link is None


async def test_one_wait_follows_every_command_of_a_turn_on_their_connection(redis_server):
    """A WAIT asked with commands written in one turn is sent once, after all of them (so it
    covers each); every caller gets its reply and the replicas WAIT counted."""
    client = connect(redis_server.url)
    mux = Multiplexer.like(client, timeout=1.0)
    wait = hiredis.pack_command(("WAIT", 0, 0))
    try:
        with redis_sync_lib.Redis(port=redis_server.port) as admin:
            admin.config_resetstat()
            replies = await asyncio.gather(*(mux.execute("INCR", f"waited:{n}", wait=wait) for n in range(10)),
                                           mux.execute("GET", "waited:0"))
            assert replies == [(1, 0)] * 10 + ["1"]  # the GET went in the same write, before the WAIT
            assert await mux.execute("INCR", "waited:0", wait=wait) == (2, 0)
            assert admin.info("commandstats")["cmdstat_wait"]["calls"] == 2
    finally:
        await mux.aclose()
        await client.aclose()
