"""Sending through Twilio: what the outbox costs against a bare client, and the pace it keeps.

Both parts send to the fake Twilio Messages API (`python -m tests.fake_twilio`), a process of
its own pinned with Redis on the load core; on SIGTERM it writes every request's arrival
(its time, number, sender, outcome) as JSON lines, which the figures are read from.

- Sender overhead: `invitations` messages (to US numbers, each invitation with a first name
  and a store in it) put into the outbox before `canvass serve` starts (one worker, on the
  server core, CANVASS_PACING=off), made due once it is up, then drained by its senders:
  each claimed, begun, requested through the twilio package, finished and its delivery
  noted, as every message the server sends. Its rate, over the span of the arrivals at the fake (first to last), is
  compared with the floor's: a bare aiohttp client in this process (pinned to the server
  core) posting the same create-message form (To, From, Body, StatusCallback; Basic auth;
  twilio's headers) with the outbox's concurrency (IN_FLIGHT of one worker), over the same
  span. Before each floor, a warm-up of WARMUP messages. The two alternate, `rounds` times
  (floor, senders, floor, senders, ..., floor): each senders' rate is compared with the mean
  of the floors run just before and after it, and the ratio is the median of those rounds,
  since this machine's speed drifts by a fifth or more from one run to the next. Shown
  beside it, no target: the floor client's CPU per message over the server's, and each
  drain's Redis CPU and AOF bytes per message (the outbox's scripts, fsyncs included).
- At Twilio's latency (shown, no target): the same floor and senders when the fake answers
  each request LATENCY seconds after it came, as Twilio's API does from across the internet:
  IN_FLIGHT x `latency_batches` messages each, the floor then the senders. Both are then bound
  by the requests in flight (at most IN_FLIGHT / LATENCY a second), no longer by their CPU.
- A distribution of as many contacts, end to end (shown, no target): from its creation (the
  POST answered) to the last arrival, the distributor rendering and committing each
  invitation, the outbox sending it and the archiver recording its sid and state.
- Pacing: `canvass serve --workers 2` with CANVASS_PACING=phone=RATE and one sender number,
  a distribution of RATE x `pace_seconds` contacts. From the arrivals: the most in any
  one-second window (half-open, [t, t + 1 s)) and the mean rate, (created - 1) / (last
  arrival - first arrival).

This part alone (bench/run runs it with the others), its figures as JSON on stdout:

    python -m bench.sending [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import phonenumbers

from bench.procs import (
    FLOWS,
    VENV_BIN,
    BenchError,
    Pinning,
    Process,
    bench_env,
    cpu_seconds,
    free_port,
    pinned_to,
    redis_server,
    run_alone,
    start_server,
)
from bench.records import upgrade
from engine.runtime.outbox import IN_FLIGHT

SURVEY = "bench-5q"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-sending-auth-token"
ADMIN_TOKEN = "bench-admin-token"
FROM_NUMBER = "+12025550123"  # the one sender address: what the pace counts per
WARMUP = 100  # messages each side sends before it is timed
POLL = 0.1  # seconds between looks at a distribution's progress
UNAVAILABLE_POLLS = 20  # looks a server may answer 503 (Redis slow to answer) in one run
OVERHEAD_TARGET = 0.8
# Twilio's API answers from across the internet in about this (seconds): the senders against
# the floor when both wait for it, as they do in production (shown, no target)
LATENCY = 0.1
LATENCY_BATCHES = 50  # of IN_FLIGHT messages each side sends at that latency
PACE_TARGET_SHARE = 0.95  # the mean rate at least this share of the configured one


@dataclass(frozen=True)
class SendingShape:
    invitations: int = 10_000
    pace_rate: int = 50  # messages per second configured
    pace_seconds: float = 20.0  # the pacing distribution's length at that rate
    pace_workers: int = 2
    deadline: float = 300.0  # seconds one distribution may take to be done
    rounds: int = 5  # senders runs, each between two floors (as many as the other parts' rounds)
    latency_batches: int = LATENCY_BATCHES


QUICK = SendingShape(invitations=300, pace_seconds=5.0, deadline=90.0, rounds=1, latency_batches=4)


# ---------------------------------------------------------------- the contacts


def numbers(first: int, count: int) -> list[str]:
    """`count` distinct valid US numbers (+1 202 2XX XXXX), from the `first`th on."""
    found = []
    for n in range(first, first + count):
        local = 2_000_000 + n
        number = f"+1202{local:07d}"
        if not phonenumbers.is_valid_number(phonenumbers.parse(number)):
            raise BenchError(f"the benchmark's number {number} is not valid for phonenumbers")
        found.append(number)
    return found


def invitation(n: int) -> str:
    """The invitation bench-5q renders for the nth contact (what the floor sends too)."""
    return (f"Hi Person {n}! How likely are you to recommend Store {n % 50} to a friend? "
            "Reply 0-10. Text STOP to opt out.")


def contacts_csv(phones: list[str], first: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Phone", "FirstName", "Store"])
    for n, phone in enumerate(phones, first):
        writer.writerow([phone, f"Person {n}", f"Store {n % 50}"])
    return out.getvalue().encode()


# ---------------------------------------------------------------- the fake Twilio


class FakeTwilio:
    """`python -m tests.fake_twilio` pinned to the load core; its arrivals once stopped."""

    def __init__(self, workdir: Path, name: str, pinning: Pinning, latency: float = 0.0):
        self.log = workdir / f"arrivals-{name}.jsonl"
        argv = [sys.executable, "-m", "tests.fake_twilio", "--port", "0", "--log", str(self.log),
                "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN, "--latency", repr(latency)]
        self.process = Process(f"fake Twilio ({name})", pinning.command(argv, pinning.load_core),
                               workdir / f"fake-twilio-{name}.log", bench_env())
        self.url = ""

    def __enter__(self) -> FakeTwilio:
        self.process.start()
        deadline = time.monotonic() + 20
        while not self.url:
            text = self.process.log_path.read_text(errors="replace")
            if "listening on " in text:
                self.url = text.split("listening on ", 1)[1].split()[0]
                break
            self.process.check_running()
            if time.monotonic() > deadline:
                self.process.stop()
                raise BenchError(f"the fake Twilio did not start in 20 s:\n{self.process.log_tail()}")
            time.sleep(0.05)
        return self

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def arrivals(self) -> list[dict]:
        """Stop it (it writes its log on SIGTERM) and read every arrival."""
        self.process.stop()
        try:
            return [json.loads(line) for line in self.log.read_text().splitlines()]
        except (OSError, ValueError) as err:
            raise BenchError(f"the fake Twilio's arrival log {self.log} cannot be read: {err}\n"
                             f"{self.process.log_tail()}") from None

    def __exit__(self, *exc) -> None:
        self.process.stop()


def created(arrivals: list[dict], phones: set[str]) -> list[dict]:
    """The messages the fake created for these numbers, by arrival time."""
    return sorted((a for a in arrivals if a["sid"] and a["to"] in phones), key=lambda a: a["at"])


def max_in_window(times: list[float], seconds: float = 1.0) -> int:
    """The most arrivals in any half-open window [t, t + seconds): it starts at some arrival."""
    times = sorted(times)
    return max((bisect_left(times, at + seconds, first) - first for first, at in enumerate(times)), default=0)


# ---------------------------------------------------------------- Canvass and its admin API


class Canvass:
    """`canvass serve` sending to the fake Twilio, records in SQLite under the workdir."""

    def __init__(self, name: str, workdir: Path, redis_url: str, twilio_url: str, pacing: str,
                 workers: int, pinning: Pinning):
        self.name, self.port = name, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = bench_env(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                        TWILIO_API_BASE_URL=twilio_url, TWILIO_FROM_NUMBER=FROM_NUMBER,
                        PUBLIC_BASE_URL=self.base, CANVASS_ADMIN_TOKEN=ADMIN_TOKEN, REDIS_URL=redis_url,
                        DATABASE_URL=f"sqlite:///{workdir / f'records-{name}.db'}", CANVASS_PACING=pacing)
        upgrade(env)
        self.argv = [str(VENV_BIN / "canvass"), "serve", "--flows", str(FLOWS), "--port", str(self.port),
                     "--workers", str(workers)]
        self.env, self.log, self.pinning = env, workdir / f"canvass-{name}.log", pinning
        self.process: Process | None = None
        self.unavailable = 0  # the looks the server answered 503 (Redis was slow), shown

    def __enter__(self) -> Canvass:
        self.process = start_server(f"canvass serve ({self.name})", self.argv, self.port, "/readyz", self.env,
                                    self.log, self.pinning)
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.stop()

    def cpu_seconds(self) -> float:
        """CPU of the server and its workers (children still running are read from /proc)."""
        total = cpu_seconds(self.process.pid)
        for child in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for pid in child.read_text().split():
                with contextlib.suppress(OSError):
                    total += cpu_seconds(int(pid))
        return total

    def _call(self, method: str, path: str, body: bytes | None = None,
              content_type: str = "application/json") -> dict:
        request = urllib.request.Request(self.base + path, data=body, method=method, headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as err:
            if err.code == 503 and method == "GET" and self.unavailable < UNAVAILABLE_POLLS:
                # Redis did not answer within its second (a stalled fsync on this machine's
                # disk): the server says so, and a look a moment later answers
                err.read()
                err.close()
                self.unavailable += 1
                time.sleep(POLL)
                return self._call(method, path, body, content_type)
            raise BenchError(f"{method} {path}: {err.code} {err.read()[:500].decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as err:
            self.process.check_running()
            raise BenchError(f"{method} {path}: {err}") from None

    def import_list(self, name: str, phones: list[str], first: int) -> None:
        report = self._call("POST", f"/admin/lists/{name}/import", contacts_csv(phones, first), "text/csv")
        if report["imported"] != len(phones) or report["rejected"]:
            raise BenchError(f"list {name}: {report['imported']} of {len(phones)} contacts imported, "
                             f"rejected {report['rejected'][:3]}")

    def distribute(self, list_name: str) -> tuple[str, float]:
        """A distribution of the list, now: its id, and when its POST was answered (time.time)."""
        created = self._call("POST", "/admin/distributions",
                             json.dumps({"survey": SURVEY, "list": list_name, "name": list_name}).encode())
        return created["id"], time.time()

    def wait_done(self, distribution: str, recipients: int, deadline: float) -> dict:
        """Poll the distribution until it is done; its description. BenchError past the deadline."""
        until = time.monotonic() + deadline
        while True:
            described = self._call("GET", f"/admin/distributions/{distribution}")
            if described["status"] == "done":
                break
            self.process.check_running()
            if time.monotonic() > until:
                raise BenchError(f"distribution {distribution} was not done after {deadline:.0f} s: "
                                 f"{described['counts']}\n{self.process.log_tail()}")
            time.sleep(POLL)
        sent = described["counts"].get("sent", 0) + described["counts"].get("delivered", 0)
        if sent != recipients:
            raise BenchError(f"distribution {distribution}: {sent} of {recipients} invitations sent: "
                             f"{described['counts']}\n{self.process.log_tail()}")
        return described


# ---------------------------------------------------------------- the floor


async def _post_all(twilio_url: str, phones: list[str], first: int, status_callback: str) -> None:
    """Create a message to each number, IN_FLIGHT at once, as twilio's client posts them."""
    url = f"{twilio_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    headers = {"Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN), "User-Agent": "twilio-python", "Accept-Charset": "utf-8", "Accept": "application/json"}
    work = iter(enumerate(phones, first))
    failures: list[str] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for n, phone in work:
            form = {"To": phone, "From": FROM_NUMBER, "Body": invitation(n), "StatusCallback": status_callback}
            async with session.post(url, data=form, headers=headers) as answer:
                message = await answer.json(content_type=None)
                if answer.status != 201 or not message.get("sid"):
                    failures.append(f"{answer.status} {message}")

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(IN_FLIGHT)))
    if failures:
        raise BenchError(f"the floor's requests failed ({len(failures)}), e.g. {failures[0]}")


def floor(workdir: Path, pinning: Pinning, name: str, phones: list[str], first: int, latency: float = 0.0) -> dict:
    """The bare client's rate: from its first request to the last arrival at the fake."""
    with FakeTwilio(workdir, name, pinning, latency) as fake, pinned_to(pinning.server_core):
        callback = "http://127.0.0.1:9/twilio/status"  # never called: the fake sends no statuses
        warm = numbers(first + len(phones), WARMUP)
        asyncio.run(_post_all(fake.url, warm, 0, callback))
        fake_cpu, cpu, started = fake.cpu_seconds(), time.process_time(), time.time()
        asyncio.run(_post_all(fake.url, phones, first, callback))
        cpu, fake_cpu = time.process_time() - cpu, fake.cpu_seconds() - fake_cpu
        arrivals = created(fake.arrivals(), set(phones))
    return _rate("floor", arrivals, len(phones), started) | {
        "client_cpu_us_per_message": cpu / len(phones) * 1e6, "fake_cpu_share": fake_cpu / (
            arrivals[-1]["wall"] - started)}


def _rate(name: str, arrivals: list[dict], expected: int, started: float) -> dict:
    if len(arrivals) != expected:
        raise BenchError(f"{name}: the fake Twilio created {len(arrivals)} of {expected} messages")
    seconds = arrivals[-1]["wall"] - started
    span = arrivals[-1]["wall"] - arrivals[0]["wall"]
    return {"messages": expected, "seconds": seconds, "messages_per_s": expected / seconds,
            "first_arrival_s": arrivals[0]["wall"] - started, "span_s": span,
            "span_messages_per_s": (expected - 1) / span if span > 0 else float("inf")}


def fill_outbox(redis_url: str, phones: list[str], first: int, due: float = 0.0) -> None:
    """Queue an invitation to each number in the outbox, as the distributor's commits do, due at
    `due` (a time, as the outbox's scores are)."""
    from engine.redis.outbox import Message, new_id
    from engine.redis.store import OUTBOX_DUE, OUTBOX_MESSAGES, Store

    async def fill() -> None:
        store = Store.from_url(redis_url)
        try:
            for start in range(0, len(phones), 1000):
                async with store.redis.pipeline(transaction=False) as pipe:
                    for n, phone in enumerate(phones[start:start + 1000], first + start):
                        message = Message(new_id("sms", phone), "invite", "sms", phone, {"from": FROM_NUMBER},
                                          ({"body": invitation(n)},), SURVEY)
                        pipe.hset(OUTBOX_MESSAGES, message.id, message.dumps())
                        pipe.zadd(OUTBOX_DUE, {message.id: due})
                    await pipe.execute()
        finally:
            await store.aclose()

    asyncio.run(fill())


def due_now(redis_url: str) -> None:
    """Every message in the outbox due at once: their scores (due times) all made 0."""
    from engine.redis.store import OUTBOX_DUE, Store

    async def release() -> None:
        store = Store.from_url(redis_url)
        try:
            await store.redis.zunionstore(OUTBOX_DUE, {OUTBOX_DUE: 0})  # (each score times 0)
        finally:
            await store.aclose()

    asyncio.run(release())


def aof_bytes(redis_url: str) -> int:
    """How many bytes Redis has written to its AOF (since it started, or its last rewrite)."""
    from engine.redis.store import Store

    async def size() -> int:
        store = Store.from_url(redis_url)
        try:
            return int((await store.redis.info("persistence"))["aof_current_size"])
        finally:
            await store.aclose()

    return asyncio.run(size())


def drain(workdir: Path, pinning: Pinning, phones: list[str], first: int, deadline: float,
          latency: float = 0.0) -> dict:
    """The outbox's senders alone: a full outbox drained by a server started on it, each drain
    on a Redis of its own (not one that loaded the earlier drains' AOF: 15 MB each). The
    messages are queued due in an hour, and made due once the server is up and its CPU counted
    from there: the server drains them as soon as it starts, and would be done with a quick
    run's before it answered its first request."""
    redis, redis_url = redis_server(workdir / f"redis-drain-{first}", pinning)
    with redis, FakeTwilio(workdir, "drain", pinning, latency) as fake:
        fill_outbox(redis_url, phones, first, due=time.time() + 3600)
        with Canvass("drain", workdir, redis_url, fake.url, "off", 1, pinning) as server:
            aof = aof_bytes(redis_url)
            redis_cpu, cpu, started = cpu_seconds(redis.pid), server.cpu_seconds(), time.time()
            due_now(redis_url)
            until = time.monotonic() + deadline
            while server._call("GET", "/admin/outbox")["waiting"]:
                server.process.check_running()
                if time.monotonic() > until:
                    raise BenchError(f"the outbox was not drained after {deadline:.0f} s")
                time.sleep(POLL)
            cpu, redis_cpu = server.cpu_seconds() - cpu, cpu_seconds(redis.pid) - redis_cpu
            aof = aof_bytes(redis_url) - aof
        arrivals = created(fake.arrivals(), set(phones))
    return _rate("canvass senders", arrivals, len(phones), started) | {
        "server_cpu_us_per_message": cpu / len(phones) * 1e6, "unavailable_polls": server.unavailable,
        "redis_cpu_us_per_message": redis_cpu / len(phones) * 1e6, "aof_bytes_per_message": aof / len(phones)}


# ---------------------------------------------------------------- the two parts


def overhead(workdir: Path, pinning: Pinning, shape: SendingShape, progress) -> dict:
    count = shape.invitations
    phones = numbers(0, count)
    progress(f"sending: canvass, a distribution of {count} invitations, pacing off")
    redis, redis_url = redis_server(workdir / "redis-overhead", pinning)
    with redis, FakeTwilio(workdir, "canvass", pinning) as fake, \
            Canvass("overhead", workdir, redis_url, fake.url, "off", 1, pinning) as server:
        warm = numbers(count + WARMUP, WARMUP)
        server.import_list("warmup", warm, count + WARMUP)
        server.wait_done(server.distribute("warmup")[0], WARMUP, shape.deadline)
        server.import_list("bench", phones, 0)
        server_cpu, fake_cpu = server.cpu_seconds(), fake.cpu_seconds()
        distribution, started = server.distribute("bench")
        server.wait_done(distribution, count, shape.deadline)
        server_cpu, fake_cpu = server.cpu_seconds() - server_cpu, fake.cpu_seconds() - fake_cpu
        done = time.time()
        arrivals = created(fake.arrivals(), set(phones))
    canvass = _rate("canvass", arrivals, count, started) | {
        "server_cpu_us_per_message": server_cpu / count * 1e6, "done_s": done - started,
        "fake_cpu_share": fake_cpu / (arrivals[-1]["wall"] - started)}
    progress(f"sending: a distribution {canvass['messages_per_s']:.0f} msg/s; then {shape.rounds} "
             f"round(s) of the floor ({count} create-message requests, {IN_FLIGHT} in flight) and the "
             f"senders alone ({count} messages queued)")
    floors = [floor(workdir, pinning, "floor-0", phones, 0)]
    rounds = []
    for n in range(1, shape.rounds + 1):
        first = 100_000 * n
        senders = drain(workdir, pinning, numbers(first, count), first, shape.deadline)
        floors.append(floor(workdir, pinning, f"floor-{n}", phones, 0))
        floor_rate = (floors[-2]["span_messages_per_s"] + floors[-1]["span_messages_per_s"]) / 2
        floor_cpu = (floors[-2]["client_cpu_us_per_message"] + floors[-1]["client_cpu_us_per_message"]) / 2
        rounds.append({"senders": senders, "floor_messages_per_s": floor_rate,
                       "ratio": senders["span_messages_per_s"] / floor_rate,
                       # (a quick run's few messages may cost the server less than a clock tick)
                       "cpu_ratio": floor_cpu / max(senders["server_cpu_us_per_message"], 1e-9)})
        progress(f"sending: round {n}: the senders {senders['span_messages_per_s']:.0f} msg/s, the floors "
                 f"around them {floor_rate:.0f}: {rounds[-1]['ratio']:.2f}")
    middle = sorted(rounds, key=lambda found: found["ratio"])[len(rounds) // 2]
    latency = at_latency(workdir, pinning, shape, progress)
    return {"invitations": count, "in_flight": IN_FLIGHT, "floor": floors, "canvass": canvass, "at_latency": latency,
            "rounds": rounds, "senders": middle["senders"], "floor_messages_per_s": middle["floor_messages_per_s"],
            "ratio": middle["ratio"], "cpu_ratio": statistics.median(found["cpu_ratio"] for found in rounds),
            "target": OVERHEAD_TARGET}


def at_latency(workdir: Path, pinning: Pinning, shape: SendingShape, progress) -> dict:
    """The floor, then the senders, when the fake answers each request LATENCY seconds after it
    came: what bounds both is then how many requests are in flight, as against Twilio itself."""
    count = IN_FLIGHT * shape.latency_batches
    first = 900_000
    phones = numbers(first, count)
    progress(f"sending: {count} messages each way at Twilio's latency ({LATENCY * 1000:.0f} ms an answer)")
    bare = floor(workdir, pinning, "floor-latency", phones, first, LATENCY)
    senders = drain(workdir, pinning, numbers(first + count, count), first + count, shape.deadline, LATENCY)
    # over the span of the arrivals and one answer's wait after the last: the floor's requests
    # go in lockstep batches, whose span alone leaves out one batch's time
    floor_rate, senders_rate = (count / (found["span_s"] + LATENCY) for found in (bare, senders))
    return {"latency_s": LATENCY, "messages": count, "floor": bare, "senders": senders,
            "ceiling_messages_per_s": IN_FLIGHT / LATENCY, "floor_messages_per_s": floor_rate,
            "senders_messages_per_s": senders_rate, "ratio": senders_rate / floor_rate}


def pacing(workdir: Path, pinning: Pinning, shape: SendingShape, progress) -> dict:
    rate, workers = shape.pace_rate, shape.pace_workers
    count = int(rate * shape.pace_seconds)
    progress(f"sending: pacing, {count} invitations at phone={rate}, {workers} workers")
    phones = numbers(50_000, count)
    redis, redis_url = redis_server(workdir / "redis-pacing", pinning)
    with redis, FakeTwilio(workdir, "pacing", pinning) as fake, \
            Canvass("pacing", workdir, redis_url, fake.url, f"phone={rate}", workers, pinning) as server:
        server.import_list("paced", phones, 50_000)
        distribution, started = server.distribute("paced")
        server.wait_done(distribution, count, shape.deadline + count / rate)
        arrivals = created(fake.arrivals(), set(phones))
    if len(arrivals) != count:
        raise BenchError(f"pacing: the fake Twilio created {len(arrivals)} of {count} messages")
    if {a["sender"] for a in arrivals} != {FROM_NUMBER}:
        raise BenchError(f"pacing: messages came from {sorted({a['sender'] for a in arrivals})}")
    times = [a["at"] for a in arrivals]
    span = times[-1] - times[0]
    mean = (count - 1) / span if span > 0 else float("inf")
    return {"rate": rate, "workers": workers, "invitations": count, "max_in_window": max_in_window(times),
            "mean_per_s": mean, "span_s": span, "first_arrival_s": arrivals[0]["wall"] - started,
            "window_target": rate, "mean_target": rate * PACE_TARGET_SHARE}


def run(workdir: Path, pinning: Pinning, quick: bool, progress) -> dict:
    shape = QUICK if quick else SendingShape()
    return {"overhead": overhead(workdir, pinning, shape, progress),
            "pacing": pacing(workdir, pinning, shape, progress)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sending",
                                     description="the sending benchmarks alone (overhead and pacing)")
    parser.add_argument("--quick", action="store_true", help="tiny loads")
    args = parser.parse_args(argv)
    return run_alone("sending", lambda workdir, progress: run(workdir, Pinning(), args.quick, progress))


if __name__ == "__main__":
    sys.exit(main())
