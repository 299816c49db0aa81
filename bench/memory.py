"""Redis memory per open session and per dedupe record, measured on the real store path.

N respondents each get a session of the benchmark survey opened with two contact fields
(as the admin start API opens one) and answer three questions through Service.receive, as
webhooks do. Then MEMORY USAGE is summed over every key: the respondent records over N give
bytes per open session, the dedupe records over their count give bytes per dedupe record,
and the keys shared by all conversations (the timer set, the flow source) are reported apart.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from bench import load
from bench.procs import FLOWS, BenchError
from engine import conversation
from engine.metrics import Metrics
from engine.registry import Registry
from engine.service import Service
from engine.settings import Settings
from engine.store import Store, connect
from engine.twilio import Inbound

FIELDS = {"FirstName": "Ana", "Store": "Northwind Market"}
ANSWERED = 3
SESSION_TARGET = 300
DEDUPE_TARGET = 120
BATCH = 50


def kind_of(key: str) -> str:
    """session | dedupe | global, from the key layout in engine/store.py."""
    if key.startswith("cv:{") and key.endswith("}:r"):
        return "session"
    if key.startswith("cv:{") and "}:in:" in key:
        return "dedupe"
    return "global"


async def _fill(service: Service, survey: str, count: int) -> None:
    flow = service.registry.get(survey)

    async def one(index: int) -> None:
        phone = load.phone(9_000_000 + index)
        # The admin start API's path, minus the REST send: open the session, commit it.
        await service._apply("sms", phone, lambda respondent, now: conversation.start(
            flow, respondent, FIELDS, now, flows=service.registry))
        for turn, body in enumerate(load.ANSWERS[:ANSWERED]):
            await service.receive(Inbound(f"SMmem{index:010d}{turn:02d}".ljust(34, "0"), "sms", phone, body))

    for start in range(0, count, BATCH):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + BATCH))))


async def _usage(store: Store) -> dict[str, dict[str, int]]:
    keys = [key async for key in store.redis.scan_iter(count=1000)]
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"keys": 0, "bytes": 0})
    globals_: dict[str, int] = {}
    for key, size in zip(keys, sizes, strict=True):
        kind = kind_of(key)
        totals[kind]["keys"] += 1
        totals[kind]["bytes"] += size or 0
        if kind == "global":
            globals_[key] = size or 0
    return {"totals": dict(totals), "globals": globals_}


async def measure(redis_url: str, sessions: int) -> dict:
    """Fill an empty database (db 1 of the bench's Redis) and sum what it holds."""
    client = connect(redis_url.rsplit("/", 1)[0] + "/1")
    try:
        await client.flushdb()
        store = Store(client)
        registry = Registry(FLOWS, store, time.time)
        loaded = await registry.reload()
        survey = next(iter(loaded.flows))
        service = Service(store, registry, Settings(flows_dir=FLOWS), Metrics(), time.time, None)
        await _fill(service, survey, sessions)
        usage = await _usage(store)
        await client.flushdb()
    finally:
        await client.aclose()
    totals = usage["totals"]
    session, dedupe = totals.get("session", {"keys": 0, "bytes": 0}), totals.get("dedupe", {"keys": 0, "bytes": 0})
    if session["keys"] != sessions or dedupe["keys"] != sessions * ANSWERED:
        raise BenchError(f"expected {sessions} sessions and {sessions * ANSWERED} dedupe records, "
                           f"found {session['keys']} and {dedupe['keys']}")
    return {
        "sessions": sessions,
        "bytes_per_session": session["bytes"] / sessions,
        "session_target": SESSION_TARGET,
        "dedupe_records": dedupe["keys"],
        "bytes_per_dedupe": dedupe["bytes"] / dedupe["keys"],
        "dedupe_target": DEDUPE_TARGET,
        "global_keys": usage["globals"],
        "global_bytes_per_session": sum(usage["globals"].values()) / sessions,
    }
