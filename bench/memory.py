"""Redis memory per open conversation, all in, measured on the server's own code path.

N respondents each text the benchmark survey's access code and answer three of its five
questions through Service.receive, as signed webhooks do, each message with a MessageSid of
Twilio's form ("SM" + 32 hex digits), so every conversation stays open. The figure is the
growth of Redis's own INFO used_memory over the fill, divided by N: everything Canvass keeps
for an open conversation (its keys, their entries in Redis's keyspace and expires tables, its
member of the shared timer set), nothing left out. A warm-up fill comes first, so that the
shared structures (the timer set, the flow source) exist before the measured one starts.

It is read twice: just after the fill, when the conversations that moved within the last
REPLIES_TTL seconds still keep their replies for a redelivery (cv:{T}:replies), and at rest,
REPLIES_TTL seconds later, once they expired (a SCAN of the keyspace reclaims them at once,
as Redis's expiry cycle does over time): what a million open conversations cost, the target.

Where the bytes go, per conversation: its own keys (MEMORY USAGE of every key under its hash
tag: name, value and keyspace entry), its timer (the growth of MEMORY USAGE of the timer set),
and the rest (the keyspace's and expires table's buckets and the TTL entries, which MEMORY
USAGE leaves out): the used_memory growth less the two.
"""

from __future__ import annotations

import asyncio
import time

from redis.exceptions import RedisError

from bench import load
from bench.procs import FLOWS, BenchError
from engine.redis.store import REPLIES_TTL, TIMERS, Store
from engine.runtime.metrics import Metrics
from engine.runtime.registry import Registry
from engine.runtime.service import Busy, Service
from engine.runtime.settings import Settings
from engine.runtime.twilio import Inbound

ANSWERED = 3
TARGET = 512  # bytes per open conversation: 1,000,000 of them in 512 MB
WARMUP = 2000
BATCH = 100
SAMPLE = 1000  # conversations whose keys MEMORY USAGE reads
CHANNEL = "sms"
RETRIES = 30  # deliveries of a message that got a 503, half a second apart (Redis can stall for
# seconds on a busy machine, rewriting its AOF)


def phone(index: int) -> str:
    return load.phone(9_000_000 + index)


def message_sid(index: int, turn: int) -> str:
    return f"SM{index:030d}{turn:02d}"  # Twilio's form, as bench/load.py sends


async def _fill(service: Service, first: int, count: int) -> None:
    async def one(index: int) -> None:
        number = phone(index)
        for turn, body in enumerate((load.ACCESS_CODE, *load.ANSWERS[:ANSWERED])):
            inbound = Inbound(message_sid(index, turn), CHANNEL, number, body)
            for attempt in range(RETRIES):
                try:
                    await service.receive(inbound)
                    break
                except (RedisError, Busy):  # a webhook's 503: delivered again, as Twilio does
                    if attempt == RETRIES - 1:
                        raise
                    await asyncio.sleep(0.5)

    for start in range(first, first + count, BATCH):
        await asyncio.gather(*(one(i) for i in range(start, min(first + count, start + BATCH))))


async def _drop_replies(store: Store) -> None:
    """Delete the warm-up's replies (cv:{T}:replies), as their TTL would a minute later."""
    keys = [key async for key in store.redis.scan_iter(match="cv:{*}:replies", count=5000)]
    if keys:
        await store.redis.delete(*keys)


async def _used(store: Store) -> int:
    return int((await store.redis.info("memory"))["used_memory"])


async def _own_keys(store: Store, indexes: range) -> tuple[int, int]:
    """(keys, MEMORY USAGE bytes) of the conversations at `indexes`: every key under their tags."""
    tags = {f"{CHANNEL}:{phone(index)}" for index in indexes}
    found = [key async for key in store.redis.scan_iter(match="cv:{*}*", count=5000)
             if key[key.index("{") + 1:key.index("}")] in tags]
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in found:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    return len(found), sum(size or 0 for size in sizes)


async def measure(redis_url: str, conversations: int) -> dict:
    """Fill an empty database (db 1 of the bench's Redis) and measure what it grew by."""
    store = Store.from_url(redis_url.rsplit("/", 1)[0] + "/1")
    client = store.redis
    try:
        await client.flushdb()
        registry = Registry(FLOWS, store, time.time)
        await registry.reload()
        service = Service(store, registry, Settings(flows_dir=FLOWS), Metrics(), time.time, None)
        warmup = min(WARMUP, conversations)
        await _fill(service, 0, warmup)
        await _drop_replies(store)  # so that the fill below starts from conversations at rest
        before, timers_before, keys_before = await _used(store), await client.memory_usage(TIMERS, samples=0), await client.dbsize()
        started = time.perf_counter()
        await _fill(service, warmup, conversations)
        seconds = time.perf_counter() - started
        just_filled, filled_keys = await _used(store), await client.dbsize()
        await asyncio.sleep(REPLIES_TTL + 1)
        async for _ in client.scan_iter(count=5000):  # visiting an expired key reclaims it
            pass
        await asyncio.sleep(1)  # Redis finishes growing its tables (it rehashes step by step)
        after, timers_after, keys_after = await _used(store), await client.memory_usage(TIMERS, samples=0), await client.dbsize()
        sample = range(warmup, warmup + min(SAMPLE, conversations))
        own_keys, own_bytes = await _own_keys(store, sample)
        open_now = await client.zcard(TIMERS)
        await client.flushdb(asynchronous=True)  # a million keys take seconds to free
    finally:
        await store.aclose()
    if open_now != warmup + conversations:
        raise BenchError(f"expected {warmup + conversations} open conversations with a timer, found {open_now}")
    per_conversation = (after - before) / conversations
    keys, timer = own_bytes / len(sample), (timers_after - timers_before) / conversations
    return {
        "conversations": conversations,
        "fill_seconds": seconds,
        "bytes_per_conversation": per_conversation,
        "target": TARGET,
        "keys_per_conversation": (keys_after - keys_before) / conversations,
        "just_filled": {"bytes_per_conversation": (just_filled - before) / conversations,
                        "keys_per_conversation": (filled_keys - keys_before) / conversations},
        "parts": {"own_keys": keys, "timer": timer, "keyspace": per_conversation - keys - timer},
        "sampled_keys_per_conversation": own_keys / len(sample),
    }
