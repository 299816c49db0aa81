"""Redis memory per open session and per dedupe record, measured on the real store path.

N respondents each get a session of the benchmark survey opened with two contact fields
(as the admin start API opens one) and answer three questions through Service.receive, as
webhooks do, each message with a MessageSid of Twilio's form ("SM" + 32 hex digits). Then
MEMORY USAGE (what Redis attributes to a key: its name, its value and its keyspace entry;
not the entry a TTL adds to the expires table) is read for every key in the database, and
summed in three parts:
- per open session: the N respondent keys (store.respondent_key) / N;
- per dedupe record: every conversation's dedupe hashes (store.dedupe_keys, both
  generations) / the records they hold (the sum of their HLEN, 3 N);
- shared: every other key (the timer set, the flow source), reported apart, also per session;
- apart too, the commit nonces the starts left (store.nonce_key): each lives NONCE_TTL seconds.
"""

from __future__ import annotations

import asyncio
import time

from bench import load
from bench.procs import FLOWS, BenchError
from engine import conversation
from engine.redis.store import Store, dedupe_keys, nonce_key, respondent_key
from engine.runtime.metrics import Metrics
from engine.runtime.registry import Registry
from engine.runtime.service import Service
from engine.runtime.settings import Settings
from engine.runtime.twilio import Inbound

FIELDS = {"FirstName": "Ana", "Store": "Northwind Market"}
ANSWERED = 3
SESSION_TARGET = 300
DEDUPE_TARGET = 120
BATCH = 50
CHANNEL = "sms"


def phone(index: int) -> str:
    return load.phone(9_000_000 + index)


def message_sid(index: int, turn: int) -> str:
    return f"SM{index:030d}{turn:02d}"  # Twilio's form, as bench/load.py sends


async def _fill(service: Service, survey: str, count: int) -> None:
    flow = service.registry.get(survey)
    flows = await service.flows()

    async def one(index: int) -> None:
        number = phone(index)
        # The admin start API's path, minus the REST send: open the session, commit it.
        await service._apply(CHANNEL, number, lambda respondent, now: conversation.start(
            flow, respondent, FIELDS, now, flows=flows))
        for turn, body in enumerate(load.ANSWERS[:ANSWERED]):
            await service.receive(Inbound(message_sid(index, turn), CHANNEL, number, body))

    for start in range(0, count, BATCH):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + BATCH))))


async def _usage(store: Store, sessions: int) -> dict:
    """Bytes and counts of the three parts (see the module's docstring)."""
    keys = [key async for key in store.redis.scan_iter(count=1000)]
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = dict(zip(keys, [size or 0 for size in await pipe.execute()], strict=True))
    respondents = [respondent_key(CHANNEL, phone(i)) for i in range(sessions)]
    dedupes = [key for i in range(sessions) for key in dedupe_keys(CHANNEL, phone(i)) if key in sizes]
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in dedupes:
            pipe.hlen(key)
        records = sum(await pipe.execute())
    nonces = [key for i in range(sessions) if (key := nonce_key(CHANNEL, phone(i))) in sizes]
    shared = set(sizes) - set(respondents) - set(dedupes) - set(nonces)
    return {
        "respondent_keys": sum(key in sizes for key in respondents),
        "respondent_bytes": sum(sizes.get(key, 0) for key in respondents),
        "dedupe_records": records,
        "dedupe_bytes": sum(sizes[key] for key in dedupes),
        "shared": {key: sizes[key] for key in sorted(shared)},
        "nonce_keys": len(nonces),
        "nonce_bytes": sum(sizes[key] for key in nonces),
    }


async def measure(redis_url: str, sessions: int) -> dict:
    """Fill an empty database (db 1 of the bench's Redis) and sum what it holds."""
    store = Store.from_url(redis_url.rsplit("/", 1)[0] + "/1")
    client = store.redis
    try:
        await client.flushdb()
        registry = Registry(FLOWS, store, time.time)
        loaded = await registry.reload()
        survey = next(iter(loaded.flows))
        service = Service(store, registry, Settings(flows_dir=FLOWS), Metrics(), time.time, None)
        await _fill(service, survey, sessions)
        usage = await _usage(store, sessions)
        await client.flushdb()
    finally:
        await store.aclose()
    if usage["respondent_keys"] != sessions or usage["dedupe_records"] != sessions * ANSWERED:
        raise BenchError(f"expected {sessions} sessions and {sessions * ANSWERED} dedupe records, "
                         f"found {usage['respondent_keys']} and {usage['dedupe_records']}")
    return {
        "sessions": sessions,
        "bytes_per_session": usage["respondent_bytes"] / sessions,
        "session_target": SESSION_TARGET,
        "dedupe_records": usage["dedupe_records"],
        "bytes_per_dedupe": usage["dedupe_bytes"] / usage["dedupe_records"],
        "dedupe_target": DEDUPE_TARGET,
        "global_keys": usage["shared"],
        "global_bytes_per_session": sum(usage["shared"].values()) / sessions,
        "bytes_per_commit_nonces": usage["nonce_bytes"] / max(1, usage["nonce_keys"]),
    }
