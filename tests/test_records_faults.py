"""The records database under faults, with `canvass serve` processes: killed with SIGKILL
while archiving, PostgreSQL stopped under load and started again. Every response ends up
in the database exactly once, and the webhooks never depend on the database."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from conftest import LAYOUT, free_port
from faults_helpers import (
    SURVEYS,
    CanvassProcess,
    Load,
    Records,
    Texter,
    assert_all_complete_exactly_once,
    scripts,
    write_flows,
)
from sqlalchemy import func, select

from engine.records.commands import upgrade as upgrade_records
from engine.records.database import connect
from engine.records.schema import responses
from engine.redis.store import ARCHIVE_GROUP

pytestmark = pytest.mark.slow

BACKLOG = 6000  # responses waiting in Redis when the first server starts
KILLS = 3


def response(n: int) -> dict:
    """A response record as engine.responses writes one."""
    return {"response_id": f"backlog{n:08d}", "survey": "short", "version": "v1", "channel": "sms",
            "phone": f"+1555{n:07d}", "status": "complete", "started_at": "2024-05-01T09:00:00Z",
            "ended_at": "2024-05-01T09:03:00Z", "fields": {}, "answers": {"score": n % 11},
            "not_shown": [], "messages_in": 4, "messages_out": 4, "segments_in": 4, "segments_out": 4}


async def archived_ids(url: str) -> list[str]:
    engine = connect(url)
    try:
        async with engine.connect() as connection:
            return list(await connection.scalars(select(responses.c.response_id)))
    finally:
        await engine.dispose()


async def archived_count(url: str) -> int:
    engine = connect(url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(select(func.count()).select_from(responses))
    finally:
        await engine.dispose()


async def until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.01)


def drained(redis_sync):
    """True once every survey stream is archived and trimmed, nothing pending."""
    async def check() -> bool:
        for key in {LAYOUT.responses(shard, survey) for survey in SURVEYS for shard in LAYOUT.shards}:
            if redis_sync.exists(key) and (redis_sync.xlen(key)
                                           or redis_sync.xpending(key, ARCHIVE_GROUP)["pending"]):
                return False
        return True
    return check


@pytest.fixture
def serve(tmp_path, redis_url):
    flows = write_flows(tmp_path / "flows")
    started: list[CanvassProcess] = []

    def make(records_url: str) -> CanvassProcess:
        Records.url = records_url
        started.append(CanvassProcess(flows, redis_url, tmp_path / f"canvass-{len(started)}.log",
                                      free_port(), records_url))
        return started[-1]

    yield make
    for process in started:
        process.stop()
    Records.url = None


async def test_kill_9_mid_archive_stores_every_response_exactly_once(records_url, redis_sync, serve):
    pipe = redis_sync.pipeline(transaction=False)
    for n in range(BACKLOG):
        pipe.xadd(LAYOUT.responses(LAYOUT.shards[n % len(LAYOUT.shards)], "short"), {"r": json.dumps(response(n))})
    pipe.execute()
    server = serve(records_url)
    seen_at_kill = []
    for kill in range(1, KILLS + 1):
        await asyncio.to_thread(server.start)
        floor = kill * BACKLOG // (KILLS + 2)

        async def past_floor(floor=floor) -> bool:
            return await archived_count(records_url) >= floor

        await until(past_floor, f"{floor} responses archived")
        server.kill()  # SIGKILL, wherever the archiver is
        seen_at_kill.append(await archived_count(records_url))
    assert seen_at_kill[-1] < BACKLOG, "the kills came after the archiving was done"
    await asyncio.to_thread(server.start)
    await until(drained(redis_sync), "the backlog archived")  # a dead worker's batch is taken over
    ids = await archived_ids(records_url)
    assert len(ids) == BACKLOG and set(ids) == {f"backlog{n:08d}" for n in range(BACKLOG)}


async def test_postgresql_stopped_under_load_then_started_loses_nothing(
        postgres_server, redis_sync, serve):
    url = postgres_server.create_database("stopped_under_load")
    await asyncio.to_thread(upgrade_records, url)
    server = serve(url)
    await asyncio.to_thread(server.start)
    everyone = scripts(40)
    texter = Texter(server.url)
    try:
        load = Load(texter, everyone)
        await load.run(upto=2)
        await asyncio.to_thread(postgres_server.stop, "immediate")  # a crash, mid-load
        try:
            await load.run()  # every conversation completes while the database is down
            _, _, failures = load.count()
            assert not failures  # the webhooks never waited for the database
            assert sum(redis_sync.xlen(key) for key in {LAYOUT.responses(shard, s) for s in SURVEYS
                                                        for shard in LAYOUT.shards}) == len(everyone)  # none trimmed
        finally:
            await asyncio.to_thread(postgres_server.start)

        async def all_archived() -> bool:
            return await archived_count(url) == len(everyone)

        await until(all_archived, "the archiver catching up")
        await until(drained(redis_sync), "the streams trimmed")
        assert_all_complete_exactly_once(redis_sync, everyone)
    finally:
        await texter.close()
