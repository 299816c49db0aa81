"""A commit whose answer Redis is slow to give, or never gives: its step's messages go out
exactly once (in the webhook's answer, after a start, or through the REST API), never twice,
also when Twilio redelivers the message meanwhile. Redis is real, behind a delaying proxy."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

import pytest
import redis
from conftest import admin_headers
from fake_twilio import Phone
from redis_proxy import DelayingProxy

from engine.redis import store as store_module
from engine.runtime import settling
from server import SERVICE

SCORE_PROMPT = "Hi ! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."
ANA_PROMPT = "Hi Ana! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."
NEVER = 30.0  # seconds: replies held this long are not coming within the request
SID = "SM" + "5" * 32


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """A shorter patience and settling pause, so that giving up takes a test seconds, not ten."""
    monkeypatch.setattr(store_module, "PATIENT_TIMEOUT", 2.0)
    monkeypatch.setattr(settling, "SETTLE_PAUSE", 0.1)


@pytest.fixture
def redis_url(redis_server) -> str:
    """One Redis, also when the other tests run on a Cluster (CANVASS_TEST_REDIS=cluster): the
    proxy stands in front of one node, and a cluster's client goes to every node's own port.
    The cluster's own faults: tests/test_cluster.py."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
async def proxy(redis_server, redis_url):
    made = await DelayingProxy(redis_server.port).start()
    yield made
    await made.close()


@pytest.fixture
async def slow_client(make_client, settings, proxy):
    """The app, reaching Redis through the proxy."""
    return await make_client(dataclasses.replace(settings, redis_url=proxy.url))


async def settled(client, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    service = client.server.app[SERVICE]
    while service.settling.pending or (service.senders and not await service.senders.idle()):
        assert time.monotonic() < deadline, "the commit was never settled, or its messages never sent"
        await asyncio.sleep(0.02)


async def start(client, number: str):
    return await client.post("/admin/surveys/feedback/start", headers=admin_headers(),
                             json={"to": number, "fields": {"FirstName": "Ana"}})


# ---------------------------------------------------------------- slow, but answered within the request


async def test_a_commit_answered_late_still_gets_its_reply_in_the_webhook_answer(slow_client, proxy):
    proxy.delay = 1.5
    began = time.monotonic()
    assert await Phone(slow_client, "+15551239001").send("@feed") == [SCORE_PROMPT]
    assert proxy.held >= 1 and time.monotonic() - began > 1.0


async def test_a_start_answered_late_opens_the_session_and_sends_its_question_once(slow_client, proxy,
                                                                                   fake_twilio):
    proxy.delay = 1.5
    response = await start(slow_client, "+15551239002")
    assert response.status == 201, await response.text()
    proxy.delay = 0
    again = await start(slow_client, "+15551239002")
    assert again.status == 409 and (await again.json())["error"] == "open_session"
    assert fake_twilio.bodies() == [ANA_PROMPT]


# ---------------------------------------------------------------- unanswered: settled in the background


async def test_a_start_redis_never_confirms_is_a_503_and_its_question_goes_once_it_is_known(
        slow_client, proxy, fake_twilio):
    proxy.delay = NEVER
    response = await start(slow_client, "+15551239003")
    assert response.status == 503
    assert (await response.json())["error"] == "outcome_unknown"
    assert fake_twilio.messages == []
    proxy.delay = 0
    await settled(slow_client)
    assert fake_twilio.bodies() == [ANA_PROMPT]
    retried = await start(slow_client, "+15551239003")
    assert retried.status == 409  # it landed: the retry is refused, the question went once
    assert fake_twilio.bodies() == [ANA_PROMPT]


async def test_a_start_that_never_landed_sends_nothing_after_its_retry_opened_the_session(
        slow_client, client, proxy, fake_twilio):
    proxy.swallow = True  # the commit never reaches Redis
    assert (await start(slow_client, "+15551239004")).status == 503
    retried = await start(client, "+15551239004")  # the client retries; another worker answers
    assert retried.status == 201
    proxy.swallow = False
    await settled(slow_client)
    assert fake_twilio.bodies() == [ANA_PROMPT]


async def test_an_inbound_committed_after_its_503_gets_its_reply_through_the_rest_api(
        slow_client, proxy, fake_twilio):
    proxy.delay = NEVER
    phone = Phone(slow_client, "+15551239005")
    assert (await phone.post(phone.form("@feed", SID))).status == 503
    proxy.delay = 0
    await settled(slow_client)
    [sent] = fake_twilio.messages
    assert (sent.to, sent.body, sent.form["From"]) == ("+15551239005", SCORE_PROMPT, "+15550000000")


async def test_an_inbound_the_settling_lands_itself_gets_its_reply_through_the_rest_api(
        slow_client, proxy, fake_twilio):
    proxy.swallow = True  # the commit never reaches Redis; nothing else changes meanwhile
    phone = Phone(slow_client, "+15551239006")
    assert (await phone.post(phone.form("@feed", SID))).status == 503
    proxy.swallow = False
    await settled(slow_client)
    assert fake_twilio.bodies() == [SCORE_PROMPT]


async def test_an_inbound_whose_redelivery_was_applied_first_sends_nothing_more(
        slow_client, client, proxy, fake_twilio):
    proxy.swallow = True
    phone = Phone(slow_client, "+15551239009")
    assert (await phone.post(phone.form("@feed", SID))).status == 503
    assert await Phone(client, phone.number).send("@feed", SID) == [SCORE_PROMPT]  # applied there
    proxy.swallow = False
    await settled(slow_client)  # its own commit can no longer land: nothing to send
    assert fake_twilio.messages == []


async def test_an_inbound_whose_rest_claim_answers_too_late_still_gets_its_reply_once(
        slow_client, client, redis_server, proxy, fake_twilio):
    """The commit's answer is lost (503); the settling finds it landed and claims its reply for
    the REST API: that claim lands, but its answer is lost too (on the settling's connection,
    behind another commit Redis holds). The claim is repeated (it knows itself), the reply is
    sent, and a redelivery gets an empty answer: never a reply claimed and sent by nobody."""
    with redis.Redis.from_url(redis_server.url) as direct:
        direct.script_load(store_module.CLAIM.text)  # its answer, not a NOSCRIPT, is what is held
    proxy.delay = NEVER
    phone = Phone(slow_client, "+15551239301")
    assert (await phone.post(phone.form("@feed", SID))).status == 503  # it landed; nobody knows
    commits_held = proxy.held
    proxy.slow = is_claim  # from now on Redis holds back the claim's answer, not the commit's
    deadline = time.monotonic() + 10
    while proxy.held == commits_held:
        assert time.monotonic() < deadline, "the settling never claimed the reply"
        await asyncio.sleep(0.02)
    proxy.delay = 0
    await settled(slow_client)
    assert fake_twilio.bodies() == [SCORE_PROMPT]
    assert await Phone(client, phone.number).send("@feed", SID) == []


def is_claim(command: list[bytes]) -> bool:
    return command[:2] == [b"EVALSHA", store_module.CLAIM.sha.encode()]


# ---------------------------------------------------------------- a redelivery and the REST fallback: one reply


async def test_a_redelivery_before_the_rest_fallback_answers_and_the_fallback_sends_nothing(
        slow_client, client, proxy, fake_twilio):
    proxy.delay = NEVER
    phone = Phone(slow_client, "+15551239007")
    assert (await phone.post(phone.form("@feed", SID))).status == 503
    assert await Phone(client, phone.number).send("@feed", SID) == [SCORE_PROMPT]  # Twilio retries
    proxy.delay = 0
    await settled(slow_client)
    assert fake_twilio.messages == []


async def test_a_redelivery_after_the_rest_fallback_gets_an_empty_answer(slow_client, client, proxy,
                                                                       fake_twilio):
    proxy.delay = NEVER
    phone = Phone(slow_client, "+15551239008")
    assert (await phone.post(phone.form("@feed", SID))).status == 503
    proxy.delay = 0
    await settled(slow_client)
    assert await Phone(client, phone.number).send("@feed", SID) == []
    assert fake_twilio.bodies() == [SCORE_PROMPT]


@pytest.mark.parametrize("number", [f"+155512391{n:02d}" for n in range(6)])
async def test_a_redelivery_racing_the_rest_fallback_delivers_the_reply_once(slow_client, client, proxy,
                                                                           fake_twilio, number):
    proxy.delay = NEVER
    phone = Phone(slow_client, number)
    assert (await phone.post(phone.form("@feed", SID))).status == 503
    proxy.delay = 0  # the settling's next try and the redelivery, at once
    answered = await Phone(client, number).send("@feed", SID)
    await settled(slow_client)
    assert answered + fake_twilio.bodies() == [SCORE_PROMPT]


# ---------------------------------------------------------------- a reminder


async def test_a_reminder_redis_never_confirms_is_sent_once(make_client, settings, proxy, clock, fake_twilio):
    """Its commit wrote it into the outbox: it goes whether or not the commit's answer came."""
    client = await make_client(dataclasses.replace(settings, redis_url=proxy.url), timer_interval=0.05)
    started = await client.post("/admin/surveys/invite/start", headers=admin_headers(),
                                json={"to": "+15551239010", "fields": {"FirstName": "Ana"}})
    assert started.status == 201
    proxy.delay = NEVER
    clock.advance(31 * 60)  # the reminder is due: its commit lands, its answer does not come
    deadline = time.monotonic() + 10
    while not client.server.app[SERVICE].settling.pending:
        assert time.monotonic() < deadline, "the reminder's commit was never handed over"
        await asyncio.sleep(0.02)
    proxy.delay = 0
    await settled(client)
    await asyncio.sleep(0.3)  # more sweeps: the timer is not fired again
    assert fake_twilio.bodies() == ["Hi Ana, did your delivery arrive? Text STOP to opt out.\n1. Yes\n2. No",
                                    "Still there? Reply 1 for yes or 2 for no."]


async def test_a_redelivery_whose_read_answers_too_late_hands_the_reply_to_the_rest_api(
        slow_client, make_client, settings, redis_server, proxy, fake_twilio):
    """The commit's answer is lost (503, settled in the background). Twilio redelivers to a
    server whose READ claims the reply for TwiML but answers too late (503 again), before the
    settling could claim it for the REST API: the READ's claim goes to the REST API, and the
    reply is sent once."""
    every_script = await DelayingProxy(redis_server.port, slow=lambda command: command[:1] == [b"EVALSHA"]).start()
    try:
        other = await make_client(dataclasses.replace(settings, redis_url=every_script.url))
        assert await Phone(slow_client, "+15551239200").send("@feed") == [SCORE_PROMPT]  # scripts loaded
        proxy.delay = NEVER
        phone = Phone(slow_client, "+15551239201")
        assert (await phone.post(phone.form("@feed", SID))).status == 503  # it landed; nobody knows
        every_script.delay = NEVER
        again = Phone(other, phone.number)
        assert (await again.post(again.form("@feed", SID))).status == 503  # its READ claimed, late
        proxy.delay = every_script.delay = 0
        await settled(slow_client)
        await settled(other)
        assert fake_twilio.bodies() == [SCORE_PROMPT]
    finally:
        await every_script.close()


async def test_a_redelivery_whose_take_over_answers_too_late_still_gets_its_reply_once(
        slow_client, client, make_client, settings, redis_server, proxy, fake_twilio):
    """As above, and the TAKE_OVER that hands the READ's claim to the REST API lands with its
    answer lost too. It is repeated (it knows itself by the read's tag), the reply is sent once,
    and a further redelivery gets an empty answer: never a reply taken over and sent by nobody."""
    async with a_redelivery_read_too_late(slow_client, make_client, settings, redis_server, proxy,
                                          "+15551239211", is_read_or_take_over) as (other, every_script, phone):
        deadline = time.monotonic() + 10
        while every_script.held < 2:  # the READ's answer and the first TAKE_OVER's are held
            assert time.monotonic() < deadline, "the settling never took the READ's claim over"
            await asyncio.sleep(0.02)
        every_script.delay = 0  # the repeated TAKE_OVER is answered
        await settled(other)
        proxy.delay = 0
        await settled(slow_client)
        assert fake_twilio.bodies() == [SCORE_PROMPT]
        assert await Phone(client, phone.number).send("@feed", SID) == []


async def test_a_redelivery_whose_reply_is_taken_over_as_redis_goes_away_still_gets_it_once(
        slow_client, client, make_client, settings, redis_server, proxy, fake_twilio):
    """As above, and the TAKE_OVER is answered, but Redis then takes no command for a while
    (each is dropped with its connection): the reply it handed to the REST API is still queued
    (by the TAKE_OVER itself), and sent once Redis is back."""
    taken = asyncio.Event()

    def after_take_over(command: list[bytes]) -> bool:
        if is_take_over(command):
            taken.set()
            return False
        return taken.is_set()  # everything after it is dropped

    async with a_redelivery_read_too_late(slow_client, make_client, settings, redis_server, proxy,
                                          "+15551239212", is_read) as (other, every_script, phone):
        every_script.slow, every_script.delay, every_script.swallow = after_take_over, 0, True
        await asyncio.wait_for(taken.wait(), 10)
        deadline = time.monotonic() + 10
        while other.server.app[SERVICE].settling.pending:
            assert time.monotonic() < deadline, "the take over was never settled"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # what followed the take over met a Redis that was away
        every_script.swallow = False
        await settled(other)
        proxy.delay = 0
        await settled(slow_client)
        assert fake_twilio.bodies() == [SCORE_PROMPT]
        assert await Phone(client, phone.number).send("@feed", SID) == []


@contextlib.asynccontextmanager
async def a_redelivery_read_too_late(slow_client, make_client, settings, redis_server, proxy, number: str,
                                     slow: Callable[[list[bytes]], bool]):
    """A message's commit landed with its answer held back (503, settled in the background),
    and Twilio's redelivery, to a second server whose scripts `slow` picks are held back by a
    proxy of their own, claimed the reply for TwiML and answered too late (503 again). Yields
    that server's client, its proxy and the phone; the scripts are loaded first, so that
    their answers, not a NOSCRIPT, are what is held."""
    with redis.Redis.from_url(redis_server.url) as direct:
        load_scripts(direct)
    every_script = await DelayingProxy(redis_server.port, slow=slow).start()
    try:
        other = await make_client(dataclasses.replace(settings, redis_url=every_script.url))
        proxy.delay = NEVER
        phone = Phone(slow_client, number)
        assert (await phone.post(phone.form("@feed", SID))).status == 503  # it landed; nobody knows
        every_script.delay = NEVER
        again = Phone(other, phone.number)
        assert (await again.post(again.form("@feed", SID))).status == 503  # its READ claimed, late
        yield other, every_script, phone
    finally:
        await every_script.close()


def load_scripts(direct: redis.Redis) -> None:
    for script in (store_module.COMMIT, store_module.READ, store_module.TAKE_OVER, store_module.CLAIM):
        direct.script_load(script.text)


def is_read(command: list[bytes]) -> bool:
    return command[:2] == [b"EVALSHA", store_module.READ.sha.encode()]


def is_take_over(command: list[bytes]) -> bool:
    return command[:2] == [b"EVALSHA", store_module.TAKE_OVER.sha.encode()]


def is_read_or_take_over(command: list[bytes]) -> bool:
    return is_read(command) or is_take_over(command)


async def test_a_redelivery_answered_before_an_earlier_ones_take_over_gets_the_reply_once(
        slow_client, client, make_client, settings, redis_server, proxy, fake_twilio):
    """A redelivery's READ claims the reply for TwiML and answers too late (503); before its
    take over reaches Redis, Twilio's next redelivery is answered with the reply in TwiML. That
    later read holds the claim now: the earlier read's take over sends nothing more."""
    async with a_redelivery_read_too_late(slow_client, make_client, settings, redis_server, proxy,
                                          "+15551239213", is_read) as (other, every_script, phone):
        every_script.slow, every_script.delay, every_script.swallow = is_take_over, 0, True
        answered = await Phone(client, phone.number).send("@feed", SID)  # Twilio's next try
        every_script.swallow = False  # the take over reaches Redis now
        await settled(other)
        proxy.delay = 0
        await settled(slow_client)
        assert answered + fake_twilio.bodies() == [SCORE_PROMPT]
