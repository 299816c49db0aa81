"""The fault suite: Canvass killed mid-load, Redis restarted, stopped and frozen, duplicated and
forged webhooks, and fuzzed requests. Loads run against `canvass serve` as a real process with
signature checks on; the figures of each test are printed after the run."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import random
import signal
import time
from collections import Counter
from urllib.parse import quote, urlencode

import faults_helpers
import pytest
import redis
from conftest import RedisServer, admin_headers, free_port, is_cluster_node
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, Phone, replies_of
from faults_helpers import (
    SURVEYS,
    CanvassProcess,
    Duplication,
    Figures,
    Load,
    Records,
    alongside,
    answers_lost,
    assert_all_complete_exactly_once,
    committed_unanswered,
    figures_for,
    inbound_form,
    response_records,
    response_streams,
    scripts,
    until,
    write_flows,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis_proxy import DelayingProxy

from engine.redis.store import PATIENT_TIMEOUT, REDIS_TIMEOUT
from engine.runtime.outbox import LEASE
from engine.runtime.twilio import sign

RESPONDENTS = 40
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def figures(request) -> Figures:
    return figures_for(request.config, request.node.name.removeprefix("test_"))


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own (shipped config: AOF, fsync always), to kill and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
    server.stop()


@pytest.fixture
def one_redis_sync(one_redis_url):
    """A client of one Redis, emptied (one_redis_url), for a test that stands a proxy in front of it."""
    client = redis.Redis.from_url(one_redis_url, decode_responses=True)
    yield client
    client.close()


def messages_in(all_scripts) -> int:
    return sum(len(script.messages) for script in all_scripts)


def record_load(figures: Figures, load: Load) -> Counter:
    deliveries, again, failures = load.count()
    figures.deliveries, figures.redeliveries = deliveries, again
    return failures


# ---------------------------------------------------------------- Canvass killed


async def test_kill_9_mid_load_then_redelivery_records_every_answer_exactly_once(
        canvass, redis_url, redis_sync, texter, figures):
    server = canvass(redis_url)
    everyone = scripts(RESPONDENTS)
    load = Load(texter(server.url), everyone)

    async def kill_part_way(share: float) -> None:
        await until(lambda: load.acked >= share * messages_in(everyone))
        load.gate.clear()  # whoever is not mid-request waits for the restart
        server.kill()
        figures.kills += 1
        await load.settled()
        figures.answers_lost += answers_lost(redis_sync, everyone)
        figures.duplicates += committed_unanswered(redis_sync, everyone)
        await asyncio.to_thread(server.start)  # the same port
        load.gate.set()  # every webhook that got no 200 is delivered again, then the rest

    async def kill_twice() -> None:
        await kill_part_way(0.3)
        await kill_part_way(0.65)

    await alongside(load, kill_twice())
    failures = record_load(figures, load)
    figures.notes += [f"{failures[None]} requests cut off by the kills",
                      f"{figures.duplicates} of them committed before the kill"]
    assert set(failures) == {None} and failures[None] > 0
    assert figures.redeliveries == failures[None]
    assert figures.answers_lost == 0
    assert_all_complete_exactly_once(redis_sync, everyone)


# ---------------------------------------------------------------- Redis restarted, stopped, frozen


async def test_redis_crash_and_restart_mid_load_loses_no_acknowledged_answer(
        canvass, own_redis, texter, figures):
    server = canvass(own_redis.url)
    everyone = scripts(RESPONDENTS)
    load = Load(texter(server.url), everyone, retry_delay=0.1)
    store = redis.Redis.from_url(own_redis.url, decode_responses=True)

    async def crash_and_restart() -> int:
        await until(lambda: load.acked >= 0.4 * messages_in(everyone))
        cut_off = load.in_flight
        own_redis.process.kill()  # SIGKILL: only what the AOF holds survives
        own_redis.process.wait()
        figures.kills += 1
        await asyncio.sleep(0.75)  # the outage, under load: deliveries get 503 and come again
        load.gate.clear()
        await load.settled()
        await asyncio.to_thread(own_redis.start)
        figures.answers_lost = answers_lost(store, everyone)  # every 200 so far is in Redis
        load.gate.set()
        return cut_off

    try:
        cut_off = await alongside(load, crash_and_restart())
        failures = record_load(figures, load)
        figures.duplicates = int(await load.texter.metric("canvass_duplicate_webhooks_total"))
        slowest = max(d.seconds for d in load.deliveries if d.status != 200)
        figures.notes += [f"{cut_off} requests under way at the crash", f"{failures[503]} answered 503",
                          f"slowest 503 {slowest:.2f}s", f"{figures.duplicates} committed but answered 503"]
        assert figures.answers_lost == 0
        assert set(failures) == {503} and slowest < 2.0
        assert_all_complete_exactly_once(store, everyone)
    finally:
        store.close()


def halt(own_redis: RedisServer, outage: str) -> None:
    if outage == "shut-down":
        own_redis.stop()
    else:
        own_redis.process.send_signal(signal.SIGSTOP)


def resume(own_redis: RedisServer, outage: str) -> None:
    if outage == "shut-down":
        own_redis.start()
    else:
        own_redis.process.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("outage", ["shut-down", "frozen"])
async def test_redis_down_is_a_503_within_seconds_and_conversations_resume(
        canvass, own_redis, texter, figures, outage):
    server = canvass(own_redis.url)
    everyone = scripts(10)
    load = Load(texter(server.url), everyone)
    await load.run(upto=3)  # the access code and two answers each
    halt(own_redis, outage)
    figures.kills += 1

    async def timed(request) -> tuple[int | None, float]:
        started = time.monotonic()
        status = await request
        return status, time.monotonic() - started

    async def redelivery_of_an_applied_one() -> int | None:
        first, answer = everyone[0], everyone[0].messages[1]
        status, _ = await load.texter.post("/twilio/messages", inbound_form(first.number, answer.sid, answer.body))
        return status

    async def readiness() -> int:
        async with load.texter.session.get(server.url + "/readyz") as response:
            return response.status

    answered = await asyncio.gather(*(timed(load.deliver(s, s.messages[s.acked])) for s in everyone),
                                    timed(redelivery_of_an_applied_one()), timed(readiness()))
    slowest = max(seconds for _, seconds in answered)
    assert [status for status, _ in answered] == [503] * (len(everyone) + 2)
    # Each of these messages goes straight to its commit (the worker skips the read of a
    # conversation it committed last), and a commit Redis does not answer may have landed:
    # it is repeated, patiently, before the 503. What does not commit answers within 2 s.
    assert slowest < REDIS_TIMEOUT + PATIENT_TIMEOUT + 1.0
    assert answered[-1][1] < 2.0  # readiness
    await asyncio.to_thread(resume, own_redis, outage)
    await load.run()  # each goes on where it was: the message that got 503 first
    store = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        failures = record_load(figures, load)
        figures.answers_lost = answers_lost(store, everyone)
        figures.notes.append(f"{failures[503]} answered 503, the slowest in {slowest:.2f}s")
        assert figures.answers_lost == 0
        assert_all_complete_exactly_once(store, everyone)
    finally:
        store.close()


# ---------------------------------------------------------------- duplicated deliveries


async def test_duplicated_deliveries_never_advance_a_conversation_twice(
        canvass, redis_url, redis_sync, texter, figures):
    server = canvass(redis_url)
    everyone = scripts(RESPONDENTS)
    plan = Duplication.drawn(everyone, share=0.3, seed=20240601)
    load = Load(texter(server.url), everyone, duplication=plan)
    await load.run()
    extra = sum(plan.concurrent.values()) + len(plan.late)
    failures = record_load(figures, load)
    figures.duplicates = int(await load.texter.metric("canvass_duplicate_webhooks_total"))
    figures.notes += [f"{len(plan.concurrent) + len(plan.late)} of {messages_in(everyone)} messages "
                      f"duplicated ({len(plan.concurrent)} concurrently, {len(plan.late)} late)"]
    assert not failures
    assert figures.deliveries == messages_in(everyone) + extra
    assert figures.duplicates == extra  # every extra copy was answered from its dedupe record
    assert_all_complete_exactly_once(redis_sync, everyone)
    figures.answers_lost = answers_lost(redis_sync, everyone)


# ---------------------------------------------------------------- Redis slow to answer commits

SLOW_RESPONDENTS = 24
SLOWDOWNS = ((1.5, 3.0), (0.0, 0.5), (1.5, 3.0), (0.0, 0.5), (7.0, 2.5), (0.0, 0.5), (1.5, 2.0))
# (seconds each commit's answer is held, for how long): 1.5 s is past REDIS_TIMEOUT but within
# the patient repeat (answered within the request); 7 s is past both (503, then settled).


async def test_redis_slow_to_answer_commits_leaves_no_session_silent_and_no_message_doubled(
        tmp_path, redis_server, one_redis_sync, fake_twilio, texter, figures, database_url):
    """Respondents started by the admin API or by access code converse while a proxy holds
    Redis's answers to commits back. Every webhook or start that gets no answer comes again,
    as Twilio does with `#rp=5xx` (or its fallback URL) and a client retrying a 503. Each
    respondent must get each question exactly once, by TwiML or through the REST API.
    On one Redis also when the other tests run on a Cluster: the proxy stands in front of one
    node (a cluster's client would go to every node's own port)."""
    redis_sync = one_redis_sync
    proxy = await DelayingProxy(redis_server.port).start()
    Records.url = database_url  # the archiver moves closed responses there: the checks read both
    server = CanvassProcess(write_flows(tmp_path / "flows"), proxy.url, tmp_path / "canvass.log", free_port(),
                            database_url, {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_BASE_URL": fake_twilio.base_url,
                             "TWILIO_FROM_NUMBER": "+15550000001",
                             # a pace above the load: what is tested is Redis's slowness (a request
                             # whose answer Redis has not noted counts against the pace meanwhile)
                             "CANVASS_PACING": "phone=50"})
    await asyncio.to_thread(server.start)
    phones = texter(server.url)
    everyone = scripts(SLOW_RESPONDENTS, first_number=15551250000)
    invited = {script.number for script in everyone[::2]}
    # Twilio comes again at once for some, later for others (so that the background repeat
    # is sometimes first to claim a reply, and sometimes the redelivery)
    redelivery_after = {script.number: (0.2, 0.2, 6.0)[n % 3] for n, script in enumerate(everyone)}
    answered: dict[str, list[str]] = {script.number: [] for script in everyone}  # by TwiML
    statuses: Counter = Counter()
    silent: list[str] = []

    def received(number: str) -> list[str | None]:
        return answered[number] + fake_twilio.bodies(number)

    async def got(number: str, count: int) -> bool:
        deadline = time.monotonic() + 20
        while len(received(number)) < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def deliver(script, message) -> None:
        while True:
            status, text = await phones.post("/twilio/messages", inbound_form(script.number, message.sid, message.body))
            figures.deliveries += 1
            if status == 200:
                answered[script.number] += replies_of(text)
                return
            statuses[f"webhook {status}"] += 1
            figures.redeliveries += 1
            await asyncio.sleep(redelivery_after[script.number])

    async def invite(script) -> None:
        while True:
            try:
                async with phones.session.post(f"{server.url}/admin/surveys/{script.survey}/start",
                                               json={"to": script.number},
                                               headers=admin_headers(faults_helpers.ADMIN_TOKEN)) as response:
                    status = response.status
                    reason = (await response.json()).get("error") if response.content_type == "application/json" else ""
            except TimeoutError:  # no answer within REQUEST_TIMEOUT: the client tries again
                # (a start that landed sends its first message from the outbox all the same; its
                # request waits for that send, whose notes to a slow Redis are repeated patiently)
                status, reason = None, "timed out"
            figures.deliveries += 1
            if status == 201 or reason == "open_session":  # 409: an earlier try landed after all
                return
            statuses[f"start {status} {reason or 'unavailable'}"] += 1
            figures.redeliveries += 1
            await asyncio.sleep(0.2)

    async def converse(script, pause: float) -> None:
        await asyncio.sleep(pause)
        messages = script.messages
        if script.number in invited:
            await invite(script)
            messages = messages[1:]  # the start sends the first question; no access code
        waiting = len(script.messages) - len(messages)
        if waiting and not await got(script.number, waiting):
            silent.append(script.number)
            return
        for message in messages:
            await deliver(script, message)
            waiting += 1
            if not await got(script.number, waiting):
                silent.append(script.number)
                return

    async def slow_redis() -> None:
        for delay, seconds in SLOWDOWNS:
            proxy.delay = delay
            figures.kills += delay > 0
            await asyncio.sleep(seconds)
        proxy.delay = 0

    pauses = random.Random(20261201)
    try:
        await asyncio.wait_for(asyncio.gather(
            slow_redis(), *(converse(script, pauses.uniform(0, 8)) for script in everyone)), 120)
        await asyncio.sleep(2.0)  # a message sent twice would arrive by now
        if silent:  # tell a question sent late (a claim's lease waited out) from one never sent
            waited = {number: len(received(number)) for number in silent}
            await asyncio.sleep(LEASE + 5)
            figures.notes += [f"{number} silent: {count} messages, {len(received(number))} after {LEASE + 5:g} s more"
                              for number, count in waited.items()]
        doubled = 0
        for script in everyone:
            expected = [message.expected[0] for message in script.messages]
            got_all = received(script.number)
            doubled += len(got_all) - len(set(got_all))
            assert sorted(got_all) == sorted(expected) or script.number in silent, (script.number, got_all)
        records = {r["phone"]: r for survey in SURVEYS for r in response_records(redis_sync, survey)}
        figures.answers_lost = sum(records.get(s.number, {}).get("answers") != s.recorded for s in everyone)
        figures.silent, figures.doubled = len(silent), doubled
        late = sum(1 for m in fake_twilio.messages if m.form.get("From") == "+15550000000")
        figures.notes += [f"{proxy.held} commit answers held", f"{late} replies sent by REST after a 503",
                          *(f"{count} {what}" for what, count in sorted(statuses.items()))]
        assert proxy.held > 0 and statuses  # the slow answers did reach past the patient repeat
        assert figures.silent == 0 and figures.doubled == 0 and figures.answers_lost == 0, silent
        await asyncio.to_thread(server.stop)  # its usage counts are written as it stops
        # each inbound message counted once, whether its commit was answered or settled later
        texted = sum(len(s.messages) - (s.number in invited) for s in everyone)
        assert faults_helpers.messages_counted("in") == texted
    finally:
        await asyncio.to_thread(server.stop)
        await proxy.close()
        Records.url = None


# ---------------------------------------------------------------- forged webhooks


def flipped(signature: str) -> str:
    return ("A" if signature[0] != "A" else "B") + signature[1:]


def forge(kind: str, path: str, form: dict[str, str], local_url: str) -> tuple[dict, dict]:
    """(form sent, headers sent) of one forgery of `form`, posted to `path`."""
    def signed(over: dict[str, str], url: str = PUBLIC_BASE_URL + path, token: str = AUTH_TOKEN) -> str:
        return sign(token, url, over)

    other_path = "/twilio/status" if path == "/twilio/messages" else "/twilio/messages"
    header = "X-Twilio-Signature"
    return {
        "unsigned": (form, {}),
        "empty": (form, {header: ""}),
        "random": (form, {header: base64.b64encode(hashlib.sha1(json.dumps(form).encode()).digest()).decode()}),
        "other-token": (form, {header: signed(form, token="not-" + AUTH_TOKEN)}),
        "local-address": (form, {header: signed(form, url=local_url + path)}),
        "other-path": (form, {header: signed(form, url=PUBLIC_BASE_URL + other_path)}),
        "tampered": ({**form, "Body": "STOP", "ErrorCode": "21610"}, {header: signed(form)}),
        "hijacked": (form, {header: signed({**form, "From": "+15559990000", "To": "+15559990000"})}),
        "dropped-field": (form, {header: signed({**form, "Extra": "1"})}),
        "one-char-off": (form, {header: flipped(signed(form))}),
        "sha256-claimed": (form, {header: signed(form),
                                  "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA256"}),
        "unknown-algorithm": (form, {header: signed(form),
                                     "X-Twilio-Webhooks-Signature-Settings": "algorithm=MD5"}),
    }[kind]


FORGERIES = ("unsigned", "empty", "random", "other-token", "local-address", "other-path", "tampered",
             "hijacked", "dropped-field", "one-char-off", "sha256-claimed", "unknown-algorithm")
FORGED_BODIES = ("STOP", "@SHORT", "@LONG", "9", "1", "START", "HELP", "anything at all")


def digest(url: str) -> tuple[int, str]:
    """The number of keys and a hash of every key's name, type, content (DUMP; a stream's
    entries, since the archiver's group notes when it last looked) and whether it expires;
    the workers' heartbeats (cv:fleet:..., rewritten every few seconds) left out."""
    client = (redis.RedisCluster if is_cluster_node(url) else redis.Redis).from_url(url)  # (scans every master)

    def content(key: bytes, kind: bytes):
        return client.xrange(key) if kind == b"stream" else client.dump(key)

    try:
        parts = sorted((key, kind, content(key, kind), client.ttl(key) == -1)
                       for key in client.scan_iter(count=1000) if not key.startswith(b"cv:fleet:")
                       for kind in [client.type(key)])
        return len(parts), hashlib.sha256(repr(parts).encode()).hexdigest()
    finally:
        client.close()


async def test_a_thousand_forged_or_unsigned_webhooks_are_403_and_change_nothing(
        canvass, redis_url, redis_sync, texter, figures):
    server = canvass(redis_url)
    everyone = scripts(10)
    load = Load(texter(server.url), everyone)
    await load.run(upto=3)
    for script in everyone[:4]:
        await load.converse(script)  # some complete (response records), some under way
    streams = {stream for survey in SURVEYS for stream in response_streams(redis_sync, survey)}
    await until(lambda: not any(redis_sync.exists(stream) and redis_sync.xlen(stream) for stream in streams), 10)
    before = digest(redis_url)  # once the archiver has moved the closed ones: it changes nothing after
    sids = (f"SM{n:032x}" for n in itertools.count(1))
    victims = itertools.cycle(everyone)
    bodies = itertools.cycle(FORGED_BODIES)
    requests = []
    for n, kind in zip(range(1000), itertools.cycle(FORGERIES), strict=False):
        victim = next(victims).number
        if n % 3 == 2:
            path, form = "/twilio/status", {"MessageSid": next(sids), "MessageStatus": "failed",
                                            "ErrorCode": "21610", "To": victim, "From": "+15550000000",
                                            "AccountSid": ACCOUNT_SID}
        else:
            path, form = "/twilio/messages", inbound_form(victim, next(sids), next(bodies))
        requests.append((path, *forge(kind, path, form, server.url)))
    limit = asyncio.Semaphore(32)

    async def send(path, form, headers) -> int | None:
        async with limit:
            status, _ = await load.texter.post(path, form, headers, signed=False)
            return status

    statuses = await asyncio.gather(*(send(*request) for request in requests))
    figures.deliveries = len(statuses)
    figures.notes.append(f"{Counter(statuses)[403]} refused with 403, Redis unchanged: "
                         f"{digest(redis_url) == before}")
    assert Counter(statuses) == {403: 1000}
    assert digest(redis_url) == before


# ---------------------------------------------------------------- fuzzing (in-process server)

VALID_NUMBERS = st.sampled_from(["+15551250001", "+15551250002", "whatsapp:+15551250003", "+1 (555) 125-0004",
                                 "WhatsApp:+44 20 7946 0958", "+442079460959"])
NUMBERS = VALID_NUMBERS | st.from_regex(r"(whatsapp:)?\+?[0-9 ()-]{0,18}", fullmatch=True) | st.text(max_size=24)
BODIES = st.sampled_from(["@feed", "@FEED", "STOP", "stop", "START", "HELP", "10", "11", "-1", "1", "2", "Clothing",
                          "", " ", "${e://Field/FirstName}"]) | st.text(max_size=300)
SIDS = st.sampled_from(["SM" + "1" * 32, "SM" + "2" * 32]) | st.text(min_size=1, max_size=40) | st.just("")
SHORT_TEXT = st.text(max_size=12)
ERROR_CODES = st.sampled_from(["21610", "30003", "", "0", "99999999999999999999999", "٣", "1e3", "-1"]) | SHORT_TEXT
STATUSES = st.sampled_from(["queued", "sent", "delivered", "failed", "undelivered", ""]) | SHORT_TEXT
MESSAGE_FORMS = st.fixed_dictionaries(
    {"MessageSid": SIDS, "From": VALID_NUMBERS | NUMBERS, "To": NUMBERS, "Body": BODIES},
    optional={"AccountSid": SHORT_TEXT, "NumMedia": st.sampled_from(["0", "1", "x"]), "ErrorCode": ERROR_CODES})
STATUS_FORMS = st.fixed_dictionaries(
    {"MessageSid": SIDS, "To": VALID_NUMBERS | NUMBERS, "MessageStatus": STATUSES},
    optional={"From": NUMBERS, "SmsStatus": STATUSES, "ErrorCode": ERROR_CODES, "Body": BODIES})


def webhook(path: str, form_strategy) -> st.SearchStrategy:
    """(path, form): a form of that kind, sometimes missing a field, sometimes with extra ones."""
    def shaped(form: dict, extra: dict, dropped: str | None) -> tuple[str, dict]:
        return path, {key: value for key, value in {**extra, **form}.items() if key != dropped}

    return st.builds(shaped, form_strategy,
                     st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3),
                     st.sampled_from([None] * 6 + ["MessageSid", "From", "To", "Body", "MessageStatus"]))


WEBHOOKS = webhook("/twilio/messages", MESSAGE_FORMS) | webhook("/twilio/status", STATUS_FORMS)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
START_BODIES = st.one_of(
    st.fixed_dictionaries({"to": VALID_NUMBERS | NUMBERS | JSON}, optional={
        "channel": st.sampled_from(["sms", "whatsapp", "fax"]) | JSON,
        "fields": st.dictionaries(st.text(max_size=10), JSON, max_size=4) | JSON}).map(json.dumps),
    JSON.map(json.dumps),
    st.text(max_size=200),
)
SURVEY_IDS = st.sampled_from(["feedback", "invite", "templated", "nope"]) | st.text(min_size=1, max_size=20)


def no_traceback(status: int, text: str) -> None:
    assert status < 500, (status, text)
    assert "Traceback" not in text and 'File "' not in text, text


@FUZZ
@given(request=WEBHOOKS)
async def test_fuzzed_signed_webhooks_never_fail(client, request):
    path, form = request
    headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, PUBLIC_BASE_URL + path, form),
               "Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post(path, data=urlencode(form).encode(), headers=headers)
    event(f"status {response.status}")  # shown by --hypothesis-show-statistics
    no_traceback(response.status, await response.text())
    assert response.status in (200, 204, 400), (response.status, form)


@FUZZ
@given(content_type=st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data; boundary=b",
                                     "multipart/form-data", "text/plain", ""]),
       body=st.binary(max_size=300),
       signature=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30))
async def test_fuzzed_raw_webhook_bodies_never_fail(client, content_type, body, signature):
    headers = {"Content-Type": content_type, "X-Twilio-Signature": signature}
    response = await client.post("/twilio/messages", data=body, headers=headers)
    event(f"status {response.status}")  # shown by --hypothesis-show-statistics
    no_traceback(response.status, await response.text())
    assert response.status in (400, 403, 415)


@FUZZ
@given(survey=SURVEY_IDS, body=START_BODIES)
async def test_fuzzed_admin_start_bodies_never_fail(client, survey, body):
    response = await client.post(f"/admin/surveys/{quote(survey, safe='')}/start", data=body,
                                 headers={**admin_headers(), "Content-Type": "application/json"})
    event(f"status {response.status}")  # shown by --hypothesis-show-statistics
    no_traceback(response.status, await response.text())
    assert response.status in (201, 400, 404, 405, 409)


@pytest.fixture
async def answered(client):
    """A server with one complete response and one open session to export."""
    phone = Phone(client, "+15551250010")
    for text in ("@feed", "9", "Quick service, ✓", "2"):
        await phone.send(text)
    await Phone(client, "+15551250011").send("@feed")
    return client


@FUZZ
@given(survey=SURVEY_IDS, query=st.dictionaries(st.sampled_from(["format", "since", "limit"]) | SHORT_TEXT,
                                                st.sampled_from(["jsonl", "csv", "CSV", "xml", ""]) | SHORT_TEXT,
                                                max_size=3))
async def test_fuzzed_response_exports_never_fail(answered, survey, query):
    response = await answered.get(f"/admin/responses/{quote(survey, safe='')}", params=query,
                                  headers=admin_headers())
    text = await response.text()
    event(f"status {response.status}")  # shown by --hypothesis-show-statistics
    no_traceback(response.status, text)
    assert response.status in (200, 400, 404)
    if response.status == 200 and query.get("format", "jsonl") == "jsonl":
        assert all(json.loads(line)["survey"] == survey for line in text.splitlines())


@pytest.mark.parametrize("body, status, error", [
    pytest.param("[" * 20_000, 400, "bad_json", id="deeply-nested-array"),
    pytest.param('{"a":' * 10_000 + "1" + "}" * 10_000, 400, "bad_json", id="deeply-nested-object"),
    pytest.param('"' + "\\u0000" * 1000 + '"', 400, "bad_json", id="nul-string"),
    pytest.param('{"to": "\\ud800"}', 400, "bad_json", id="lone-surrogate"),
    pytest.param('{"to": "+15551250020", "fields": {"x": 1e999}}', 400, "bad_json", id="infinite-number"),
    pytest.param('{"to": "+15551250021", "fields": {"x": NaN}}', 400, "bad_json", id="nan"),
])
async def test_pathological_admin_bodies_are_clear_errors(client, body, status, error):
    response = await client.post("/admin/surveys/feedback/start", data=body,
                                 headers={**admin_headers(), "Content-Type": "application/json"})
    no_traceback(response.status, await response.text())
    assert response.status == status
    if error:
        assert (await response.json())["error"] == error
