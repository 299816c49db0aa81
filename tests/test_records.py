"""The records database: its schema and migrations, the archiver (Redis's record streams into
SQL, exactly once), opt-outs that outlive Redis, and exports that read both. Every test runs
against SQLite and a real PostgreSQL (tests/postgres.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from conftest import LAYOUT, admin_headers
from fake_twilio import UNSUBSCRIBED, Phone
from sqlalchemy import func, select

from engine.records import migrate
from engine.records.archiver import MIN_SHARE, Archiver
from engine.records.commands import status
from engine.records.commands import upgrade as upgrade_records
from engine.records.database import DatabaseUrlError, connect, driver_url
from engine.records.schema import opt_out_events, opt_outs, responses
from engine.redis.store import ARCHIVE_GROUP
from server import ARCHIVER, SchemaNotCurrent

FEEDBACK = LAYOUT.responses(LAYOUT.shards[0], "feedback")  # where a test adds a record itself
# every stream the survey's responses go to (on a Redis Cluster, one per shard, shared by surveys)
STREAMS = sorted({LAYOUT.responses(shard, "feedback") for shard in LAYOUT.shards})


def streamed(redis_sync) -> int:
    return sum(redis_sync.xlen(stream) for stream in STREAMS)


def pending(redis_sync) -> int:
    return sum(redis_sync.xpending(stream, ARCHIVE_GROUP)["pending"] for stream in STREAMS if redis_sync.exists(stream))


async def complete(client, number: str) -> None:
    phone = Phone(client, number)
    await phone.send("@FEED")
    await phone.send("9")
    await phone.send("Friendly staff")
    assert await phone.send("1") == ["Thanks for your feedback!"]


async def rows(url: str, table) -> list:
    engine = connect(url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(select(table))).all()
    finally:
        await engine.dispose()


async def count(url: str, table) -> int:
    engine = connect(url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(select(func.count()).select_from(table))
    finally:
        await engine.dispose()


@pytest.fixture
async def records_client(make_client, settings, records_url):
    client = await make_client(dataclasses.replace(settings, database_url=records_url))
    client.records_url = records_url
    while client.app[ARCHIVER].rounds == 0:  # its first round (at start) is over: tests run the rest
        await asyncio.sleep(0.01)
    return client


async def archive(client) -> int:
    return await client.app[ARCHIVER].archive_once()


async def start(client, number: str, survey: str = "feedback"):
    return await client.post(f"/admin/surveys/{survey}/start", data=json.dumps({"to": number}),
                             headers={**admin_headers(), "Content-Type": "application/json"})


# ---------------------------------------------------------------- where the database is


@pytest.mark.parametrize("given, wanted", [
    ("postgresql://canvass@db.example:5433/records", "postgresql+asyncpg://canvass@db.example:5433/records"),
    ("postgres://u:secret@h/d", "postgresql+asyncpg://u:secret@h/d"),
    ("sqlite:///var/x.db", "sqlite+aiosqlite:///var/x.db"),
])
def test_database_urls_are_written_as_postgresql_takes_them(given, wanted):
    assert driver_url(given).render_as_string(hide_password=False) == wanted


@pytest.mark.parametrize("given, says", [
    ("mysql://u@h/d", "PostgreSQL"), ("postgresql+psycopg2://u@h/d", "leave out the driver"),
    ("not a url", "not a database URL"),
])
def test_a_database_url_canvass_cannot_use_is_refused_clearly(given, says):
    with pytest.raises(DatabaseUrlError, match=says):
        driver_url(given)


# ---------------------------------------------------------------- the schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def empty_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres_server").create_database(f"e{tmp_path.name[-20:].lower()}")


async def test_migrations_bring_an_empty_database_to_the_current_schema(empty_url):
    engine = connect(empty_url)
    try:
        with pytest.raises(migrate.SchemaNotCurrent, match="run `canvass db upgrade`"):
            await migrate.check(engine, "here")
        assert await migrate.upgrade(engine) == (None, migrate.head())
        assert await migrate.upgrade(engine) == (migrate.head(), migrate.head())  # nothing to do
        await migrate.check(engine, "here")
    finally:
        await engine.dispose()


def test_canvass_db_upgrade_and_status(empty_url, monkeypatch, capsys):
    from engine.tools.cli import main

    monkeypatch.setenv("DATABASE_URL", empty_url)
    assert main(["db", "status"]) == 1
    assert "behind: run `canvass db upgrade`" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert f"to revision {migrate.head()}" in capsys.readouterr().out
    assert main(["db", "status"]) == 0
    assert status(empty_url) == (migrate.head(), migrate.head())


async def test_the_server_refuses_a_schema_that_is_behind_and_says_the_command(
        make_client, settings, empty_url):
    with pytest.raises(SchemaNotCurrent, match="run `canvass db upgrade`"):
        await make_client(dataclasses.replace(settings, database_url=empty_url))


def test_canvass_serve_exits_on_a_schema_that_is_behind(tmp_path, redis_url, monkeypatch, capsys):
    from engine.tools.cli import main

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'behind.db'}")
    monkeypatch.setenv("REDIS_URL", redis_url)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "s.yaml").write_text("survey: s\ntitle: S\nflow:\n  - ask: q\n    type: text\n    prompt: Q?\n")
    assert main(["serve", "--flows", str(flows), "--insecure", "--port", "0"]) == 1
    assert "run `canvass db upgrade`" in capsys.readouterr().err


# ---------------------------------------------------------------- the archiver


async def test_closed_responses_are_archived_once_and_the_stream_trimmed(records_client, redis_sync):
    for n in range(5):
        await complete(records_client, f"+1555123{n:04d}")
    await archive(records_client)
    archived = await rows(records_client.records_url, responses)
    assert len(archived) == 5 and {r.status for r in archived} == {"complete"}
    first = next(r for r in archived if r.phone == "+15551230000")
    assert first.answers["score"] == 9 and first.answers["visit"]["label"] == "Groceries"
    assert first.started_at.year >= 2023 and first.extra["not_shown"] == []
    assert streamed(redis_sync) == 0  # trimmed: every entry is in the database
    await archive(records_client)
    assert await count(records_client.records_url, responses) == 5


async def test_a_batch_archived_but_not_acknowledged_is_stored_once(records_client, redis_sync):
    """kill -9 between the database's commit and XACK: the batch comes back and changes nothing."""
    for number in in_one_shard("+1555124", 3):  # one stream, one batch, on a Cluster too
        await complete(records_client, number)
    app = records_client.app
    first = app[ARCHIVER]
    original_ack = first.store.archive_ack
    first.store.archive_ack = _never  # dies before acknowledging
    with pytest.raises(RuntimeError):
        await first.archive_once()
    first.store.archive_ack = original_ack
    assert await count(records_client.records_url, responses) == 3
    assert streamed(redis_sync) == 3  # nothing trimmed: nothing acknowledged
    successor = Archiver(first.store, first.engine, lambda: ["feedback"], claim_idle=0)
    await successor.archive_once()
    assert await count(records_client.records_url, responses) == 3
    assert pending(redis_sync) == 0
    assert streamed(redis_sync) == 0


def in_one_shard(prefix: str, count: int) -> list[str]:
    """`count` numbers starting with `prefix` whose conversations share a shard (on one Redis,
    any numbers)."""
    numbers = [f"{prefix}{n:04d}" for n in range(10_000)]
    shard = LAYOUT.shard("sms", numbers[0])
    return [number for number in numbers if LAYOUT.shard("sms", number) == shard][:count]


async def _never(*_args, **_kwargs):
    raise RuntimeError("killed before XACK")


async def export(client, form: str = "jsonl") -> list[str]:
    response = await client.get(f"/admin/responses/feedback?format={form}", headers=admin_headers())
    assert response.status == 200
    return [line for line in (await response.text()).splitlines() if line]


async def test_exports_read_the_database_and_what_is_still_only_in_redis(records_client, redis_sync):
    numbers = [f"+1555125{n:04d}" for n in range(5)]
    for number in numbers[:4]:
        await complete(records_client, number)
    await archive(records_client)
    await complete(records_client, numbers[4])  # closed after the archiver's round: Redis only
    assert streamed(redis_sync) == 1
    for _ in range(2):  # before and after the last one is archived: each response once
        assert sorted(json.loads(line)["phone"] for line in await export(records_client)) == numbers
        assert len(await export(records_client, "csv")) == 1 + 5
        await archive(records_client)
    redis_sync.flushall()  # everything was archived: Redis losing it loses nothing
    assert sorted(json.loads(line)["phone"] for line in await export(records_client)) == numbers


# ---------------------------------------------------------------- opt-outs


async def test_an_opt_out_outlives_redis(records_client, redis_sync, fake_twilio):
    number = "+15551260001"
    phone = Phone(records_client, number)
    await phone.send("@FEED")
    await phone.send("STOP")
    await archive(records_client)
    [event] = await rows(records_client.records_url, opt_out_events)
    assert (event.channel, event.phone, event.opted_out, event.how) == ("sms", number, True, "keyword")
    [state] = await rows(records_client.records_url, opt_outs)
    assert state.opted_out and state.event_id == event.event_id
    [closed] = await rows(records_client.records_url, responses)
    assert closed.status == "opted_out"

    redis_sync.flushall()  # Redis forgets the opt-out ...
    response = await start(records_client, number)
    assert response.status == 409 and (await response.json())["error"] == "opted_out"
    assert fake_twilio.messages == []
    await archive(records_client)  # ... and the archiver, seeing Redis lost its data, restores it
    assert all(redis_sync.exists(LAYOUT.restored(shard)) for shard in LAYOUT.shards)
    restored = redis_sync.get(LAYOUT.respondent("sms", number))
    assert restored is not None and redis_sync.ttl(LAYOUT.respondent("sms", number)) == -1
    assert await phone.send("@FEED") == []  # opted out: nothing but START is answered


async def test_an_opt_in_after_an_opt_out_lets_starts_through_again(records_client, redis_sync):
    number = "+15551260002"
    phone = Phone(records_client, number)
    await phone.send("STOP")
    await phone.send("START")
    await archive(records_client)
    events = sorted(await rows(records_client.records_url, opt_out_events), key=lambda e: e.id)
    assert [e.opted_out for e in events] == [True, False]
    [state] = await rows(records_client.records_url, opt_outs)
    assert not state.opted_out
    redis_sync.flushall()
    assert (await start(records_client, number)).status == 201


async def test_a_carrier_opt_out_21610_is_recorded_as_such(records_client, fake_twilio):
    number = "+15551260003"
    fake_twilio.refuse[number] = UNSUBSCRIBED
    response = await start(records_client, number)
    assert response.status == 409
    await archive(records_client)
    [event] = await rows(records_client.records_url, opt_out_events)
    assert event.how == "carrier_21610" and event.opted_out


async def test_an_opt_out_event_is_written_in_the_commit_that_opts_out(records_client, redis_sync):
    await Phone(records_client, "+15551260004").send("STOP")
    [(_, fields)] = redis_sync.xrange(LAYOUT.opt_outs(LAYOUT.shard("sms", "+15551260004")))
    event = json.loads(fields["r"])
    assert event["phone"] == "+15551260004" and event["opted_out"] is True
    assert event["at"].endswith("+00:00")


async def test_an_export_while_the_archiver_moves_responses_has_each_once(records_client, redis_sync):
    """Responses move from the stream to the database while the export reads both."""
    app = records_client.app
    ids = set()
    pipe = redis_sync.pipeline(transaction=False)
    for n in range(300):
        record = {"response_id": f"moving{n:05d}", "survey": "feedback", "version": "v", "channel": "sms",
                  "phone": f"+1555127{n:04d}", "status": "complete", "started_at": "2024-05-01T09:00:00Z",
                  "ended_at": f"2024-05-01T09:{n // 60:02d}:{n % 60:02d}Z", "fields": {}, "answers": {},
                  "not_shown": [], "messages_in": 1, "messages_out": 1, "segments_in": 1, "segments_out": 1}
        ids.add(record["response_id"])
        pipe.xadd(FEEDBACK, {"r": json.dumps(record)})
    pipe.execute()
    mover = Archiver(app[ARCHIVER].store, app[ARCHIVER].engine, lambda: ["feedback"], batch=7)

    async def move_all() -> None:
        while await mover.archive_once():
            await asyncio.sleep(0)

    for _ in range(3):
        exported, _ = await asyncio.gather(export(records_client), move_all())
        got = [json.loads(line)["response_id"] for line in exported]
        assert len(got) == len(set(got)) == 300 and set(got) == ids


async def test_the_embedded_sqlite_database_runs_in_wal_mode(database_url):
    engine = connect(database_url)
    try:
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await connection.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
    finally:
        await engine.dispose()


async def test_consumers_of_stopped_processes_are_forgotten(records_client, redis_sync):
    await complete(records_client, "+15551280001")
    await archive(records_client)  # its stream has its group (on a Cluster, made by its first archiving)
    archiver, stream = records_client.app[ARCHIVER], LAYOUT.responses(LAYOUT.shard("sms", "+15551280001"), "feedback")
    redis_sync.xgroup_createconsumer(stream, ARCHIVE_GROUP, "stopped-long-ago")
    assert await archiver.store.archive_forget_consumers(stream, 0) >= 1
    names = {c["name"] for c in redis_sync.xinfo_consumers(stream, ARCHIVE_GROUP)}
    assert "stopped-long-ago" not in names


@pytest.mark.slow
async def test_a_start_is_refused_while_the_database_cannot_say(make_client, settings, postgres_server,
                                                                 fake_twilio):
    url = postgres_server.create_database("refused_while_down")
    await asyncio.to_thread(upgrade_records, url)
    client = await make_client(dataclasses.replace(settings, database_url=url))
    await asyncio.to_thread(postgres_server.stop, "immediate")
    try:
        response = await start(client, "+15551280002")
        assert response.status == 503 and (await response.json())["error"] == "records_unavailable"
        assert fake_twilio.messages == []
        assert await Phone(client, "+15551280003").send("@FEED")  # webhooks do not need the database
    finally:
        await asyncio.to_thread(postgres_server.start)
    assert (await start(client, "+15551280002")).status == 201


async def test_a_record_the_database_refuses_stays_in_redis_and_blocks_nothing_else(
        records_client, redis_sync, caplog):
    redis_sync.xadd(FEEDBACK, {"r": json.dumps({"response_id": "broken", "survey": "feedback"})})
    await complete(records_client, "+15551290001")
    await complete(records_client, "+15551290002")
    assert await archive(records_client) == 2  # the two good ones
    assert {r.phone for r in await rows(records_client.records_url, responses)} == {
        "+15551290001", "+15551290002"}
    [(entry_id, fields), *_] = redis_sync.xrange(FEEDBACK)  # kept, unacknowledged: no trim past it
    assert json.loads(fields["r"])["response_id"] == "broken"
    assert pending(redis_sync) == 1
    assert f"entry {entry_id} cannot be archived" in caplog.text
    assert await archive(records_client) == 0  # nothing to do: the next round waits, not spins


async def test_refused_records_beyond_a_rounds_share_hold_no_new_one_back(records_client, redis_sync):
    """More refused entries pending than a round claims from a stream: each round still reads
    the new ones."""
    number = "+15551290003"
    stream = LAYOUT.responses(LAYOUT.shard("sms", number), "feedback")
    for n in range(MIN_SHARE + 4):
        redis_sync.xadd(stream, {"r": json.dumps({"response_id": f"broken{n}", "survey": "feedback"})})
    app = records_client.app
    archiver = Archiver(app[ARCHIVER].store, app[ARCHIVER].engine, lambda: ["feedback"], batch=MIN_SHARE)
    for _ in range(3):  # the refused ones are this archiver's own pending entries from now on
        await archiver.archive_once()
    await complete(records_client, number)
    for _ in range(3):
        await archiver.archive_once()
    assert {r.phone for r in await rows(records_client.records_url, responses)} == {number}


async def test_the_migrations_build_exactly_the_tables_schema_py_defines(records_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from engine.records.schema import metadata

    engine = connect(records_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    finally:
        await engine.dispose()
    assert differences == []
