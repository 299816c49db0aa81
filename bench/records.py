"""The records database under load: does the archiver keep up with the webhook peak, what does
it cost the webhooks, and how fast does an export of many responses stream, in how much memory.

- Three `canvass serve`, each with a Redis of its own (so no archiver sees another's
  responses): records in SQLite, records in PostgreSQL, and records in a database that does not
  answer (its archiver only waits, so the server runs without archiving). Rounds of the webhook
  load alternate between them; the figures are medians over rounds.
- Keeping up: each round starts with a round's worth of responses already waiting in the
  stream (as if the archiver had fallen behind). A sampler counts the rows in the database
  every SAMPLE seconds. The archived rate is those responses and the round's, over the time
  from the start of the round to the last row archived; the completed rate is the round's
  conversations over the round's duration (the load generator's). An archiver that keeps up
  drains the backlog and follows the load, finishing within its idle interval (1 s) of the
  round's end: with rounds longer than that, 1.0 or more. One slower than the webhooks
  (capacity C below the completion rate R) finishes after (2 rounds' responses) / C: C/R.
  The drain is how long after the load ended the last row was archived.
- The cost: webhook msg/s with each archiver against the server without one, paired per round.
- Exports: `canvass export --format csv` of a SQLite records database holding `export_small`
  and then `export_large` responses of the benchmark survey, to /dev/null; rows per second and
  the exporting process's peak RSS (wait4), whose ratio says whether memory grows with rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text

from bench.procs import (
    FLOWS,
    VENV_BIN,
    BenchError,
    Pinning,
    Process,
    bench_env,
    free_port,
    redis_server,
    run_alone,
    start_server,
)
from bench.webhook import AUTH_TOKEN, check, drive
from engine.flow import load_flow
from engine.records.database import connect
from engine.records.schema import responses
from engine.records.writes import insert_responses
from engine.redis.store import Store, responses_key

SURVEY = "bench-5q"
TARGETS = ("none", "sqlite", "postgresql")  # where each server keeps its records
SAMPLE = 0.05  # seconds between the sampler's readings
DRAIN_TIMEOUT = 120.0  # seconds the archiver may take to catch up after a round
SEED_BATCH = 5000  # rows per insert when filling the export database


@dataclass(frozen=True)
class RecordsShape:
    respondents: int = 800  # rounds of several seconds: well past the archiver's idle interval
    concurrency: int = 48
    rounds: int = 5
    warmup: int = 50
    deadline: float = 120.0
    export_small: int = 100_000
    export_large: int = 1_000_000


QUICK = RecordsShape(respondents=40, concurrency=16, rounds=1, warmup=8, deadline=30.0,
                     export_small=2_000, export_large=20_000)


# ---------------------------------------------------------------- PostgreSQL


class Postgres:
    """A throwaway PostgreSQL cluster (Debian's postgresql package), pinned with Redis on the
    load core, with fsync on as in production."""

    def __init__(self, pinning: Pinning):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise BenchError("PostgreSQL is not installed: install Debian's postgresql package "
                             "(./dev does) to benchmark the archiver on it")
        self.bin, self.pinning = Path(found[-1]).parent, pinning
        # a folder of its own: the postgres user must reach it, which it cannot in a private temp dir
        self.directory, self.port = Path(tempfile.mkdtemp(prefix="canvass-bench-pg-")), free_port()
        self.data = self.directory / "data"
        self.as_root = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        command = self.pinning.command([str(self.bin / argv[0]), *argv[1:]], self.pinning.load_core)
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise BenchError(f"PostgreSQL: {argv[0]} failed:\n{done.stderr[-2000:]}")

    def __enter__(self) -> str:
        if self.as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "canvass", "-A", "trust", "-E", "UTF8",
                  "--no-instructions")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.directory}'\n")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "log"), "-w", "-t", "60", "start")
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "canvass", "-d", "postgres",
                  "-c", "CREATE DATABASE canvass")
        return f"postgresql://canvass@127.0.0.1:{self.port}/canvass"

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(BenchError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


# ---------------------------------------------------------------- servers


def start_canvass(name: str, redis_url: str, database_url: str, workdir: Path, pinning: Pinning) -> tuple[Process, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = bench_env(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_BASE_URL=base, REDIS_URL=redis_url,
                    CANVASS_ADMIN_TOKEN="bench-admin-token", DATABASE_URL=database_url)
    if name != "none":
        upgrade(env)
    argv = [str(VENV_BIN / "canvass"), "serve", "--flows", str(FLOWS), "--port", str(port)]
    return start_server(f"canvass serve ({name})", argv, port, "/readyz", env,
                        workdir / f"canvass-{name}.log", pinning), base


def upgrade(env: dict[str, str]) -> None:
    done = subprocess.run([str(VENV_BIN / "canvass"), "db", "upgrade"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"canvass db upgrade failed:\n{done.stderr[-2000:]}")


# ---------------------------------------------------------------- keeping up


async def _sample(redis_url: str, database_url: str | None, stop: asyncio.Event) -> list[tuple[float, int, int]]:
    """(time, responses closed so far, rows archived so far) every SAMPLE seconds until stop."""
    store = Store.from_url(redis_url)
    engine = connect(database_url) if database_url else None
    samples = []
    try:
        while True:
            info = await store.redis.xinfo_stream(responses_key(SURVEY))
            archived = 0
            if engine is not None:
                async with engine.connect() as connection:
                    archived = await connection.scalar(select(func.count()).select_from(responses))
            samples.append((time.perf_counter(), info["entries-added"], archived))
            if stop.is_set():
                return samples
            await asyncio.sleep(SAMPLE)
    finally:
        await store.aclose()
        if engine is not None:
            await engine.dispose()


async def _drained(redis_url: str, database_url: str) -> None:
    """Wait until every closed response is archived."""
    store, engine = Store.from_url(redis_url), connect(database_url)
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            added = (await store.redis.xinfo_stream(responses_key(SURVEY)))["entries-added"]
            async with engine.connect() as connection:
                if await connection.scalar(select(func.count()).select_from(responses)) >= added:
                    return
            await asyncio.sleep(SAMPLE)
        raise BenchError(f"the archiver did not catch up within {DRAIN_TIMEOUT:.0f} s")
    finally:
        await store.aclose()
        await engine.dispose()


def archived_rate(samples: list[tuple[float, int, int]], since: float) -> float:
    """Rows archived per second from `since` (the backlog was there) to the last row archived."""
    final = samples[-1][2]
    done = next(t for t, _, archived in samples if archived == final)
    return (final - samples[0][2]) / max(done - since, SAMPLE)


async def _backlog(redis_url: str, count: int, first: int) -> None:
    """`count` closed responses in the survey's stream, as if the archiver had fallen behind."""
    store = Store.from_url(redis_url)
    try:
        async with store.redis.pipeline(transaction=False) as pipe:
            for n in range(first, first + count):
                pipe.xadd(responses_key(SURVEY), {"r": json.dumps(_record(n, "backlog"))})
            await pipe.execute()
    finally:
        await store.aclose()


async def _round(server: Process, base: str, redis_url: str, database_url: str | None, first: int,
                 shape: RecordsShape, pinning: Pinning) -> dict:
    """One round of the load. With an archiver, it starts a round's worth of responses behind,
    so it has work all through the round: its rate is what it can archive under the load."""
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(redis_url, database_url, stop))
    await asyncio.sleep(2 * SAMPLE)  # a reading before the first row archived
    if database_url is not None:
        await _backlog(redis_url, shape.respondents, first)
    behind = time.perf_counter()
    result = await asyncio.to_thread(drive, base, True, shape.respondents, first, shape, pinning)
    load_ended = time.perf_counter()
    check("canvass", result, server)
    if database_url is not None:
        await _drained(redis_url, database_url)
    stop.set()
    samples = await sampler
    figures = {"messages_per_s": result["messages_per_s"], "completed": result["completed"]}
    if database_url is not None:
        completed = result["completed"] / result["seconds"]
        archived = archived_rate(samples, behind)
        figures.update(completed_per_s=completed, archived_per_s=archived, keeps_up=archived / completed,
                       drain_s=max(0.0, samples[-1][0] - load_ended))
    return figures


def run_records(workdir: Path, pinning: Pinning, shape: RecordsShape, progress) -> dict:
    progress(f"records: {shape.rounds} round(s) of {shape.respondents} respondents against servers "
             f"archiving into SQLite, into PostgreSQL, and not archiving")
    with contextlib.ExitStack() as stack:
        servers = {}
        postgres_url = stack.enter_context(Postgres(pinning))
        databases = {"none": f"postgresql://canvass@127.0.0.1:{free_port()}/nothing-listens",
                     "sqlite": f"sqlite:///{workdir / 'records.db'}", "postgresql": postgres_url}
        for name in TARGETS:
            redis, redis_url = redis_server(workdir / f"redis-{name}", pinning)
            stack.enter_context(redis)
            server, base = start_canvass(name, redis_url, databases[name], workdir, pinning)
            stack.enter_context(server)
            servers[name] = (server, base, redis_url, None if name == "none" else databases[name])
        first = 1_000_000  # respondents of their own, apart from the webhook benchmark's
        for name, (server, base, _, _) in servers.items():
            check(name, drive(base, True, shape.warmup, first, shape, pinning), server)
            first += shape.warmup
        rounds: dict[str, list[dict]] = {name: [] for name in TARGETS}
        for number in range(1, shape.rounds + 1):
            for name, (server, base, redis_url, database_url) in servers.items():
                figures = asyncio.run(_round(server, base, redis_url, database_url, first, shape, pinning))
                first += shape.respondents
                rounds[name].append(figures)
                kept = f", archived/completed {figures['keeps_up']:.2f}" if "keeps_up" in figures else ""
                progress(f"records round {number}/{shape.rounds} {name}: "
                         f"{figures['messages_per_s']:.0f} msg/s{kept}")
        export_redis = servers["sqlite"][2]  # holds the benchmark survey's flow (its live set)
        return {"archiver": _summarise(rounds), "export": run_exports(workdir, export_redis, pinning, shape, progress),
                "shape": {"respondents": shape.respondents, "concurrency": shape.concurrency,
                          "rounds": shape.rounds}}


def _summarise(rounds: dict[str, list[dict]]) -> dict:
    figures = {}
    for name in ("sqlite", "postgresql"):
        paired = [with_ / without["messages_per_s"] for with_, without in
                  zip((r["messages_per_s"] for r in rounds[name]), rounds["none"], strict=True)]
        figures[name] = {key: statistics.median(r[key] for r in rounds[name])
                         for key in ("messages_per_s", "completed_per_s", "archived_per_s", "keeps_up", "drain_s")}
        figures[name]["webhook_ratio"] = statistics.median(paired)
    figures["none"] = {"messages_per_s": statistics.median(r["messages_per_s"] for r in rounds["none"])}
    figures["rounds"] = rounds
    return figures


# ---------------------------------------------------------------- exports


def _record(n: int, version: str) -> dict:
    """A response of the benchmark survey, as its webhooks leave one."""
    at = 1_714_550_400 + n
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    return {
        "response_id": f"bench{n:012d}", "survey": SURVEY, "version": version, "channel": "sms",
        "phone": f"+1555{n:07d}", "status": "complete", "started_at": iso, "ended_at": iso,
        "fields": {"FirstName": "Ana", "Store": "Northwind Market", "Q_RecipientPhoneNumber": f"+1555{n:07d}"},
        "answers": {"recommend": n % 11, "visit": {"code": "2", "label": "Clothing"},
                    "reason": "Long queues at the till", "staff": 9, "again": {"code": "1", "label": "Yes"}},
        "not_shown": [], "messages_in": 6, "messages_out": 6, "segments_in": 6, "segments_out": 7,
        "end": "(end)", "last_question": None,
        "answered_at": {q: iso for q in ("recommend", "visit", "reason", "staff", "again")},
    }


async def _seed(database_url: str, rows: int, version: str) -> None:
    """Fill the database to `rows` responses: a tenth (or all, when few) inserted as the
    archiver inserts them, the rest copied from those in SQL, each copy with ids of its own."""
    engine = connect(database_url)
    original = responses.c.response_id.not_like("%.%")
    try:
        async with engine.connect() as connection:
            have = await connection.scalar(select(func.count()).select_from(responses))
            originals = await connection.scalar(select(func.count()).select_from(responses).where(original))
        wanted = min(rows, max(SEED_BATCH, rows // 10))
        for start in range(originals, wanted, SEED_BATCH):
            async with engine.begin() as connection:
                await insert_responses(connection, [_record(n, version) for n in range(start, min(wanted, start + SEED_BATCH))])
            have += min(wanted, start + SEED_BATCH) - start
        originals = max(originals, wanted)
        columns = ", ".join(c.name for c in responses.columns if c.name != "response_id")
        while have < rows:
            take = min(originals, rows - have)
            async with engine.begin() as connection:
                await connection.execute(text(
                    f"INSERT INTO responses (response_id, {columns}) SELECT response_id || '.{have}', {columns} "
                    f"FROM responses WHERE response_id NOT LIKE '%.%' ORDER BY response_id LIMIT {take}"))
            have += take
    finally:
        await engine.dispose()


def _export(database_url: str, redis_url: str, pinning: Pinning) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of `canvass export --format csv` to /dev/null."""
    env = bench_env(DATABASE_URL=database_url, REDIS_URL=redis_url)
    argv = pinning.command([str(VENV_BIN / "canvass"), "export", SURVEY, "--format", "csv"], pinning.server_core)
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise BenchError(f"canvass export failed:\n{process.stderr.read().decode(errors='replace')[-2000:]}")
    process.stderr.close()
    return seconds, usage.ru_maxrss * 1024


def run_exports(workdir: Path, redis_url: str, pinning: Pinning, shape: RecordsShape, progress) -> dict:
    database_url = f"sqlite:///{workdir / 'export.db'}"
    upgrade(bench_env(DATABASE_URL=database_url))
    version = load_flow(FLOWS / f"{SURVEY}.yaml").version  # the live version: it gives the columns
    figures = {}
    for label, rows in (("small", shape.export_small), ("large", shape.export_large)):
        progress(f"export: filling the records database to {rows} responses")
        asyncio.run(_seed(database_url, rows, version))
        progress(f"export: {rows} responses as CSV")
        seconds, rss = _export(database_url, redis_url, pinning)
        figures[label] = {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_bytes": rss}
    figures["rss_ratio"] = figures["large"]["peak_rss_bytes"] / figures["small"]["peak_rss_bytes"]
    return figures


def main() -> int:
    """`python -m bench.records [--quick]`: this part alone (bench/run runs it with the rest)."""
    import argparse

    parser = argparse.ArgumentParser(prog="bench.records")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    shape = QUICK if args.quick else RecordsShape()
    return run_alone("records", lambda workdir, progress: run_records(workdir, Pinning(), shape, progress))


if __name__ == "__main__":
    raise SystemExit(main())
