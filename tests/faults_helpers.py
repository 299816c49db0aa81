"""The fault suite's machinery (tests/test_faults.py): a `canvass serve` subprocess, respondents
texting it through signed webhooks as Twilio delivers them, the checks on what Redis holds
afterwards, and the figures each fault test reports at the end of the run."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis
import yaml
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, replies_of
from sqlalchemy import func, select

from engine.conversation import Respondent
from engine.records.database import connect as connect_records
from engine.records.schema import credit_usage, responses
from engine.records.writes import response_record as archived_record
from engine.redis.store import (
    MARK_LENGTH,
    MARKS,
    SID_MARK_LENGTH,
    ClusterLayout,
    Layout,
    sid_mark,
    split_record,
)
from engine.runtime.twilio import sign

CANVASS = Path(sys.executable).with_name("canvass")
ADMIN_TOKEN = "fault-admin-token"
REQUEST_TIMEOUT = 10.0  # seconds a webhook may take before the load counts it unanswered
CHOICES = ("Red", "Green", "Blue")
END_MESSAGE = "Thanks, that is all!"

# ---------------------------------------------------------------- the surveys under load

# (question id, type, prompt) per survey; "short" has 3 questions, "long" 5.
SURVEYS = {
    "short": ("@SHORT", [("score", "nps", "How likely are you to recommend us? Reply 0-10."),
                         ("colour", "choice", "Which colour?"),
                         ("why", "text", "Why that colour?")]),
    "long": ("@LONG", [("score", "nps", "Rate the store, 0-10."),
                       ("colour", "choice", "Which colour did you buy?"),
                       ("why", "text", "What made you choose it?"),
                       ("again", "nps", "Rate us again, 0-10."),
                       ("more", "text", "Anything else?")]),
}


def write_flows(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for survey, (code, questions) in SURVEYS.items():
        flow = [{"ask": qid, "type": kind, "prompt": prompt, **({"choices": list(CHOICES)} if kind == "choice" else {})}
                for qid, kind, prompt in questions]
        document = {"survey": survey, "title": f"Fault suite {survey}", "expires_after": "24h",
                    "access_code": code, "end_message": END_MESSAGE, "flow": flow}
        (directory / f"{survey}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


def question_message(kind: str, prompt: str) -> str:
    if kind == "choice":
        return "\n".join([prompt, *(f"{n}. {label}" for n, label in enumerate(CHOICES, 1))])
    return prompt


@dataclass(frozen=True)
class Message:
    sid: str
    body: str
    expected: tuple[str, ...]  # the replies the server must answer it with


@dataclass
class Script:
    """One respondent's whole conversation, decided in advance."""

    number: str
    survey: str
    messages: list[Message]
    stored: dict[str, object]  # question id -> the answer as the session stores it
    recorded: dict[str, object]  # question id -> the answer as the response record shows it
    acked: int = 0  # how many of `messages` have been answered with a 200

    def acked_questions(self) -> list[str]:
        """The questions whose answers were acknowledged with a 200 (messages[0] is the code)."""
        return list(self.stored)[:max(0, self.acked - 1)]


def answer(kind: str, who: int, question: int) -> tuple[str, object, object]:
    """(text sent, stored answer, recorded answer) for one question of one respondent."""
    if kind == "nps":
        score = (who * 7 + question) % 11
        return str(score), score, score
    if kind == "choice":
        code = str((who + question) % len(CHOICES) + 1)
        return code, code, {"code": code, "label": CHOICES[int(code) - 1]}
    text = f"respondent {who}, question {question}: café ✓"
    return text, text, text


def scripts(count: int, first_number: int = 15551240000) -> list[Script]:
    made = []
    for who in range(count):
        survey = ("short", "long")[who % 2]
        code, questions = SURVEYS[survey]
        number = f"+{first_number + who}"
        prompts = [(question_message(kind, prompt),) for _, kind, prompt in questions] + [(END_MESSAGE,)]
        texts, stored, recorded = [code], {}, {}
        for index, (qid, kind, _) in enumerate(questions):
            text, stored[qid], recorded[qid] = answer(kind, who, index)
            texts.append(text)
        messages = [Message(f"SM{who:016x}{index:016x}", text, prompts[index])
                    for index, text in enumerate(texts)]
        made.append(Script(number, survey, messages, stored, recorded))
    return made


# ---------------------------------------------------------------- `canvass serve` as a process


class CanvassProcess:
    """`canvass serve` in its own process group, checking signatures against PUBLIC_BASE_URL."""

    def __init__(self, flows_dir: Path, redis_url: str, log_path: Path, port: int, database_url: str,
                 environment: dict[str, str] | None = None, workers: int = 1):
        self.flows_dir, self.redis_url, self.log_path, self.port = flows_dir, redis_url, log_path, port
        self.database_url, self.workers = database_url, workers
        self.extra = environment or {}  # more variables (TWILIO_ACCOUNT_SID... to send)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _environment(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("TWILIO_", "CANVASS_")) and k not in ("REDIS_URL", "PUBLIC_BASE_URL")}
        return {**inherited, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
                "REDIS_URL": self.redis_url, "CANVASS_ADMIN_TOKEN": ADMIN_TOKEN,
                "DATABASE_URL": self.database_url, **self.extra}

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until /readyz says ready."""
        if not CANVASS.exists():
            pytest.fail(f"{CANVASS} is missing: install the project (./dev does)", pytrace=False)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(CANVASS), "serve", "--flows", str(self.flows_dir), "--host", "127.0.0.1",
                 "--port", str(self.port), *(("--workers", str(self.workers)) if self.workers > 1 else ())],
                env=self._environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"canvass serve did not become ready:\n{self.log_path.read_text()[-3000:]}",
                            pytrace=False)
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:  # refused, or an HTTPError such as 503 while Redis is away
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the requests under way."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


# ---------------------------------------------------------------- respondents texting it


def inbound_form(number: str, sid: str, body: str) -> dict[str, str]:
    return {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": ACCOUNT_SID, "From": number,
            "To": "+15550000000", "Body": body, "NumMedia": "0", "NumSegments": "1"}


@dataclass(frozen=True)
class Delivery:
    sid: str
    status: int | None  # None: no HTTP answer at all (connection refused or cut)
    seconds: float


class Texter:
    """Delivers signed webhooks to a Canvass server, one TCP connection per delivery (a killed
    server leaves no stale keep-alive connection behind)."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))

    async def post(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None,
                   signed: bool = True) -> tuple[int | None, str]:
        if signed:
            headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, PUBLIC_BASE_URL + path, form), **(headers or {})}
        try:
            async with self.session.post(self.base_url + path, data=form, headers=headers or {}) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None, ""

    async def metric(self, name: str) -> float:
        async with self.session.get(self.base_url + "/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0

    async def close(self) -> None:
        await self.session.close()


@dataclass
class Duplication:
    """Which messages a load delivers more than once: sid -> extra copies sent at the same
    moment, and the sids delivered again after the respondent's next message was answered."""

    concurrent: dict[str, int] = field(default_factory=dict)
    late: set[str] = field(default_factory=set)

    @classmethod
    def drawn(cls, all_scripts: list[Script], share: float, seed: int) -> Duplication:
        """`share` of all messages, chosen at random: half sent twice or thrice at once, half again late."""
        chance = random.Random(seed)
        sids = [message.sid for script in all_scripts for message in script.messages]
        chosen = chance.sample(sids, round(share * len(sids)))
        half = len(chosen) // 2
        return cls({sid: chance.choice((1, 2)) for sid in chosen[:half]}, set(chosen[half:]))


class Diverged(Exception):
    """A 200 whose replies are not the expected ones: the server lost what it had acknowledged."""


class Load:
    """Respondents conversing at once. A delivery that gets no 200 is delivered again, with the
    same MessageSid and body, after `retry_delay` and once `gate` is open, as Twilio would;
    every 200 must carry the expected replies, and every delivery of one MessageSid the same
    TwiML as its first. With `count_divergence` (where a fault may lose acknowledged commits),
    a respondent answered otherwise stops, noted in `diverged`, instead of failing the test."""

    def __init__(self, texter: Texter, all_scripts: list[Script], retry_delay: float = 0.05,
                 duplication: Duplication | None = None, count_divergence: bool = False, pause: float = 0.0):
        self.texter, self.scripts, self.retry_delay = texter, all_scripts, retry_delay
        self.pause = pause  # about this long (0 to twice) between a respondent's messages: a person typing
        self.duplication = duplication or Duplication()
        self.count_divergence = count_divergence
        self.diverged: set[str] = set()
        self.gate = asyncio.Event()
        self.gate.set()
        self.deliveries: list[Delivery] = []
        self.first_twiml: dict[str, str] = {}
        self.in_flight = 0

    @property
    def acked(self) -> int:
        return sum(script.acked for script in self.scripts)

    async def deliver(self, script: Script, message: Message) -> int | None:
        await self.gate.wait()
        self.in_flight += 1
        started = time.monotonic()
        try:
            status, text = await self.texter.post(
                "/twilio/messages", inbound_form(script.number, message.sid, message.body))
        finally:
            self.in_flight -= 1
        self.deliveries.append(Delivery(message.sid, status, time.monotonic() - started))
        if status == 200:
            first = self.first_twiml.setdefault(message.sid, text)
            if self.count_divergence and (tuple(replies_of(text)) != message.expected or text != first):
                self.diverged.add(script.number)
                raise Diverged(script.number)
            assert tuple(replies_of(text)) == message.expected, (script.number, message.body, text)
            assert text == first, f"a redelivery of {message.sid} got another reply"
        return status

    async def until_answered(self, script: Script, message: Message) -> None:
        while await self.deliver(script, message) != 200:
            await asyncio.sleep(self.retry_delay)

    async def converse(self, script: Script, upto: int | None = None) -> None:
        """Send the script's messages from where it stands (up to message `upto`)."""
        try:
            await self._converse(script, upto)
        except Diverged:
            return

    async def _converse(self, script: Script, upto: int | None) -> None:
        late: Message | None = None
        for message in script.messages[script.acked:upto]:
            copies = self.duplication.concurrent.get(message.sid, 0)
            await asyncio.gather(*(self.until_answered(script, message) for _ in range(1 + copies)))
            script.acked += 1
            if self.pause:
                await asyncio.sleep(random.uniform(0, 2 * self.pause))
            if late is not None:
                await self.until_answered(script, late)
            late = message if message.sid in self.duplication.late else None
        if late is not None:
            await self.until_answered(script, late)

    async def run(self, upto: int | None = None, timeout: float = 60.0) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*(self.converse(s, upto) for s in self.scripts)), timeout)
        except TimeoutError:
            raise AssertionError(f"the load did not finish in {timeout:.0f}s: {self.stuck(upto)}") from None

    def stuck(self, upto: int | None = None) -> str:
        """Who has not been answered yet, and what their last deliveries got: why a load hangs."""
        waiting = [s for s in self.scripts if s.number not in self.diverged
                   and s.acked < len(s.messages[:upto])]
        sids = {s.messages[s.acked].sid: s.number for s in waiting}
        last: dict[str, Delivery] = {}
        for delivery in self.deliveries:
            if delivery.sid in sids:
                last[delivery.sid] = delivery
        statuses = Counter(d.status for d in last.values())
        return (f"{len(waiting)} respondents wait for an answer (e.g. {[s.number for s in waiting[:3]]}); "
                f"their last deliveries got {dict(statuses)}, {len(sids) - len(last)} not sent yet")

    async def settled(self) -> None:
        """Wait until no delivery is under way (call with the gate closed)."""
        while self.in_flight:
            await asyncio.sleep(0.01)

    def count(self) -> tuple[int, int, Counter]:
        """(deliveries, redeliveries of a MessageSid already delivered, statuses of the failures)."""
        seen: set[str] = set()
        again = 0
        for delivery in self.deliveries:
            again += delivery.sid in seen
            seen.add(delivery.sid)
        failures = Counter(d.status for d in self.deliveries if d.status != 200)
        return len(self.deliveries), again, failures


async def until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the load never got that far")
        await asyncio.sleep(0.002)


async def alongside(load: Load, fault, timeout: float = 60.0):
    """Run the load and a fault at once; the fault's result. The first failure of either
    ends both, so a broken fault never leaves the load waiting at a closed gate."""
    tasks = [asyncio.ensure_future(load.run(timeout=timeout)), asyncio.ensure_future(fault)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        return tasks[1].result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------- what Redis holds afterwards


def layout_of(redis_sync) -> Layout:
    """Where the server keeps each key on the Redis `redis_sync` talks to (one Redis or a Cluster)."""
    return ClusterLayout() if isinstance(redis_sync, redis.RedisCluster) else Layout()


def respondent_of(redis_sync, script: Script, layout: Layout | None = None) -> Respondent | None:
    stored, _ = split_record(redis_sync.get((layout or layout_of(redis_sync)).respondent("sms", script.number)))
    return Respondent.loads(stored, "sms", script.number) if stored else None


class Records:
    """The records database of the servers under test (set by the `canvass` fixture): the
    archiver moves response records there from Redis, so the checks read both."""

    url: str | None = None


def archived_records(survey: str) -> list[dict]:
    if Records.url is None:
        return []

    async def read() -> list[dict]:
        engine = connect_records(Records.url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(select(responses).where(responses.c.survey == survey))
                return [archived_record(row) for row in rows]
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as thread:  # the tests' own event loop is running
        return thread.submit(asyncio.run, read()).result()


def messages_counted(direction: str) -> int:
    """The messages the servers' usage counts wrote to the records database, in or out."""
    async def read() -> int:
        engine = connect_records(Records.url)
        try:
            async with engine.connect() as connection:
                total = await connection.scalar(select(func.coalesce(func.sum(credit_usage.c.messages), 0))
                                                .where(credit_usage.c.direction == direction))
                return int(total)
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, read()).result()


def response_streams(redis_sync, survey: str, layout: Layout | None = None) -> list[str]:
    """The streams `survey`'s closed responses go to (on a Cluster, every shard's, shared by
    the surveys)."""
    layout = layout or layout_of(redis_sync)
    return sorted({layout.responses(shard, survey) for shard in layout.shards})


def response_records(redis_sync, survey: str, layout: Layout | None = None) -> list[dict]:
    """Every response record of `survey`: those in Redis's streams, and those the archiver has
    moved to the records database and trimmed from the streams."""
    streamed = [record for stream in response_streams(redis_sync, survey, layout)
                for _, fields in redis_sync.xrange(stream) for record in [json.loads(fields["r"])]
                if record["survey"] == survey]
    in_stream = {record["response_id"] for record in streamed}
    return streamed + [r for r in archived_records(survey) if r["response_id"] not in in_stream]


def answers_lost(redis_sync, all_scripts: list[Script], layout: Layout | None = None) -> int:
    """How many answers acknowledged with a 200 Redis does not hold, in the open session or
    in the respondent's response record."""
    recorded = {r["phone"]: r for survey in SURVEYS for r in response_records(redis_sync, survey, layout)}
    lost = 0
    for script in all_scripts:
        respondent = respondent_of(redis_sync, script, layout)
        session = respondent.session if respondent is not None else None
        record = recorded.get(script.number)
        for qid in script.acked_questions():
            if session is not None:
                lost += session.answers.get(qid) != script.stored[qid]
            else:
                lost += record is None or record["answers"].get(qid) != script.recorded[qid]
    return lost


def messages_applied(redis_sync, all_scripts: list[Script], layout: Layout | None = None) -> dict[str, int]:
    """Respondent number -> how many of its messages Redis has applied (its open session's
    count, else its response record's)."""
    recorded = {r["phone"]: r for survey in SURVEYS for r in response_records(redis_sync, survey, layout)}
    applied = {}
    for script in all_scripts:
        respondent = respondent_of(redis_sync, script, layout)
        if respondent is not None and respondent.session is not None:
            applied[script.number] = respondent.session.messages_in
        else:
            applied[script.number] = recorded[script.number]["messages_in"] if script.number in recorded else 0
    return applied


def commits_lost(redis_sync, all_scripts: list[Script], layout: Layout | None = None) -> int:
    """How many messages answered with a 200 left no mark in their conversation's record (the
    record keeps the marks of its newest commits, more than a script's messages)."""
    layout = layout or layout_of(redis_sync)
    lost = 0
    for script in all_scripts:
        stored = redis_sync.get(layout.respondent("sms", script.number)) or ""
        marks = stored.partition(MARKS)[2]
        held = {marks[i:i + SID_MARK_LENGTH] for i in range(0, len(marks), MARK_LENGTH)}
        lost += sum(sid_mark(message.sid) not in held for message in script.messages[:script.acked])
    return lost


def committed_unanswered(redis_sync, all_scripts: list[Script], layout: Layout | None = None) -> int:
    """How many messages Redis has applied that were never answered with a 200 (their
    redelivery must be recognised, not applied again)."""
    applied = messages_applied(redis_sync, all_scripts, layout)
    return sum(applied[script.number] - script.acked for script in all_scripts)


def assert_all_complete_exactly_once(redis_sync, all_scripts: list[Script], layout: Layout | None = None,
                                     records: list[dict] | None = None) -> None:
    """One complete response record per respondent (of `records`, else those Redis and the
    records database hold), its answers exactly those sent, in order; no session left open
    and no timer left behind."""
    layout = layout or layout_of(redis_sync)
    if records is None:
        records = [record for survey in SURVEYS for record in response_records(redis_sync, survey, layout)]
    by_phone: dict[str, list[dict]] = {}
    for record in records:
        by_phone.setdefault(record["phone"], []).append(record)
    assert sorted(by_phone) == sorted(s.number for s in all_scripts)
    for script in all_scripts:
        [record] = by_phone[script.number]
        assert record["survey"] == script.survey and record["status"] == "complete", record
        assert list(record["answers"].items()) == list(script.recorded.items()), record
        assert record["messages_in"] == len(script.messages), record
        assert respondent_of(redis_sync, script, layout).session is None
    assert sum(redis_sync.zcard(timers) for timers in dict.fromkeys(map(layout.timers, layout.shards))) == 0


# ---------------------------------------------------------------- the figures of the run

FIGURES = pytest.StashKey[dict]()
COLUMNS = ("deliveries", "duplicates", "kills", "redeliveries", "answers_lost", "commits_lost", "silent",
           "doubled")


@dataclass
class Figures:
    deliveries: int = 0
    duplicates: int = 0  # deliveries of a MessageSid the server had already applied
    kills: int = 0  # outages: Canvass or Redis killed, shut down or frozen
    redeliveries: int = 0  # deliveries repeated because the first got no 200
    answers_lost: int = 0
    commits_lost: int | None = None  # messages answered with a 200 whose commit is gone (where measured)
    # measured where messages are sent on the server's own (None: not measured, shown as -)
    silent: int | None = None  # open sessions whose last question never reached the respondent
    doubled: int | None = None  # messages a respondent got more than once (TwiML and REST)
    notes: list[str] = field(default_factory=list)


def figures_for(config: pytest.Config, test_name: str) -> Figures:
    return config.stash.setdefault(FIGURES, {}).setdefault(test_name, Figures())


def write_figures(terminal, config: pytest.Config) -> None:
    """The summary table pytest prints after the run (when a fault test ran)."""
    table = config.stash.get(FIGURES, {})
    if not table:
        return
    width = max(len(name) for name in table)
    terminal.write_sep("-", "fault suite figures")
    terminal.write_line(f"{'test':<{width}}  " + "  ".join(f"{c:>12}" for c in COLUMNS))
    for name, figures in table.items():
        cells = "  ".join(f"{'-' if getattr(figures, c) is None else getattr(figures, c):>12}" for c in COLUMNS)
        terminal.write_line(f"{name:<{width}}  {cells}  {'; '.join(figures.notes)}")
