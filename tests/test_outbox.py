"""The outbox against Twilio's bad days (the local fake answering 429, 5xx, time-outs, dropped
connections): each message goes at most once, is retried only when Twilio did not take it,
is kept as unknown when Twilio may have, and the pace of a sender holds across workers."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import time

import pytest
import redis
from conftest import RedisServer, admin_headers, eventually, free_port
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from redis.exceptions import RedisError
from redis_proxy import DelayingProxy

from engine.redis.outbox import (
    OUTBOX_BEGIN,
    OUTBOX_CLAIM,
    OUTBOX_FINISH,
    OUTBOX_PACE,
    OUTBOX_PACED,
    Batches,
    Message,
    Outbox,
)
from engine.redis.store import REDIS_TIMEOUT, Store, shard_index
from engine.runtime import outbox as runtime_outbox
from engine.runtime.outbox import HOLD, LEASE, Pacing, Senders, Slots
from engine.runtime.twilio import Sender
from server import SERVICE


async def start(client, number: str, survey: str = "feedback"):
    return await client.post(f"/admin/surveys/{survey}/start", headers=admin_headers(),
                             json={"to": number, "fields": {"FirstName": "Ana"}})


async def drained(client, timeout: float = 10.0) -> None:
    senders = client.server.app[SERVICE].senders
    deadline = time.monotonic() + timeout
    while not await senders.idle():
        assert time.monotonic() < deadline, "the outbox was never drained"
        await asyncio.sleep(0.02)


async def outbox(client) -> dict:
    answer = await client.get("/admin/outbox", headers=admin_headers())
    assert answer.status == 200
    return await answer.json()


def few_slots(monkeypatch, in_flight: int, held: int) -> None:
    """A worker with `in_flight` request slots that holds up to `held` messages without a pace."""
    monkeypatch.setattr(runtime_outbox, "IN_FLIGHT", in_flight)
    monkeypatch.setattr(runtime_outbox, "HELD", held)


async def no_final(message, result) -> None:
    """What a message's end means for its conversation: nothing, for senders tested alone."""


@contextlib.asynccontextmanager
async def running(store: Store, fake_twilio, pacing: str = "off"):
    """A worker's senders alone (no server around them), draining the outbox to the fake Twilio:
    (the senders, their running loop)."""
    sender = Sender(ACCOUNT_SID, AUTH_TOKEN, fake_twilio.base_url)
    senders = Senders(Outbox(store), sender, Pacing(pacing), time.time, no_final)
    run = asyncio.create_task(senders.run())
    try:
        yield senders, run
    finally:
        await senders.stop(run, grace=3.0)
        await sender.close()


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_twilio_busy_is_retried_after_a_backoff_and_the_message_goes_once(client, fake_twilio, clock,
                                                                                status):
    fake_twilio.fail_next(2, status=status)
    started = await start(client, "+12015550101")
    assert started.status == 201 and (await started.json())["status"] == "queued"
    assert fake_twilio.created() == []
    for backoff in (1, 2):  # seconds: 1, then 2
        clock.advance(backoff - 0.5)
        client.server.app[SERVICE].senders.wake()
        await drained(client)
        assert fake_twilio.created() == [], "retried before its backoff"
        clock.advance(0.5)
        client.server.app[SERVICE].senders.wake()
        await drained(client)
    assert len(fake_twilio.created()) == 1 and len(fake_twilio.arrivals) == 3
    assert (await outbox(client))["waiting"] == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'canvass_send_retries_total{channel="sms"} 2' in metrics


async def test_a_time_out_leaves_the_message_unknown_never_resent_unless_asked(make_client, settings,
                                                                               fake_twilio, clock):
    client = await make_client(dataclasses.replace(settings, send_timeout=0.3))
    fake_twilio.timeout_seconds = 1.0
    fake_twilio.time_out_next(1)
    started = await start(client, "+12015550102")
    assert started.status == 504 and (await started.json())["error"] == "send_unknown"
    kept = await outbox(client)
    [unknown] = kept["unknown"]
    assert 'canvass_send_unknown_total{channel="sms"} 1' in await (await client.get("/metrics")).text()
    assert (unknown["kind"], unknown["to"], unknown["unknown_part"]) == ("start", "+12015550102", 0)
    assert "did not answer" in unknown["reason"] and kept["waiting"] == 0
    clock.advance(3600)
    client.server.app[SERVICE].senders.wake()
    await asyncio.sleep(1.0)
    assert len(fake_twilio.created()) == 1  # Twilio did create it: not sent a second time
    # the session stays open: the message may have reached the respondent
    session = await client.get("/admin/sessions/+12015550102", headers=admin_headers())
    assert (await session.json())["channels"]["sms"]["respondent"]["session"] is not None
    resent = await client.post(f"/admin/outbox/{unknown['id']}/resend", headers=admin_headers())
    assert resent.status == 202
    await drained(client)
    await eventually(lambda: len(fake_twilio.created()) == 2)
    await asyncio.sleep(0.3)
    assert len(fake_twilio.created()) == 2 and (await outbox(client))["unknown"] == []
    again = await client.post(f"/admin/outbox/{unknown['id']}/resend", headers=admin_headers())
    assert again.status == 404 and (await again.json())["error"] == "no_unknown_message"


async def test_a_dropped_connection_is_unknown_too(client, fake_twilio):
    fake_twilio.drop_next(1)
    started = await start(client, "+12015550103")
    assert started.status == 504
    assert len(fake_twilio.created()) == 1 and len((await outbox(client))["unknown"]) == 1


async def test_twilio_unreachable_is_retried_as_the_request_never_went(make_client, settings, clock):
    client = await make_client(dataclasses.replace(settings, api_base_url=f"http://127.0.0.1:{free_port()}"))
    started = await start(client, "+12015550104")
    assert started.status == 201 and (await started.json())["status"] == "queued"
    kept = await outbox(client)
    assert kept["waiting"] == 1 and kept["unknown"] == []


def an_id(name: str, phone: str) -> str:
    """A message id as engine.redis.outbox.new_id makes them (its conversation's shard after the
    '.'), named for the test."""
    return f"OB{name}.{shard_index('sms', phone)}"


def a_reply(name: str, phone: str, sender: str, *bodies: str) -> Message:
    """A reply by SMS from `sender` to `phone`, one part per body (one "x" when none given)."""
    return Message(an_id(name, phone), "reply", "sms", phone, {"from": sender},
                   tuple({"body": body} for body in bodies or ("x",)))


def one_shards_phones(count: int, first: int = 0) -> list[str]:
    """Phone numbers whose conversations are in one shard (on a Cluster, one outbox's slot),
    from the `first`th such number on."""
    phones = [f"+120155{n:05d}" for n in range(10_000)]
    return [phone for phone in phones if shard_index("sms", phone) == shard_index("sms", phones[0])][first:first + count]


async def test_a_sender_that_dies_while_asking_twilio_leaves_its_message_unknown(redis_url):
    store = await Store.open(redis_url)
    try:
        dead, alive = Outbox(store), Outbox(store)
        message = Message(an_id("test1", "+12015550105"), "reminder", "sms", "+12015550105", {"from": "+15550000001"},
                          ({"body": "one"}, {"body": "two"}), "feedback", distribution="DS1")
        await dead.enqueue(message, 100.0)
        [claimed], _ = await dead.claim(100.0, LEASE, 10)
        assert await dead.begin(claimed, 0, 0, 100.0 + LEASE) == 0
        assert await dead.finish(claimed, 0, "sent", 101.0, sid="SM1")
        assert await dead.begin(claimed, 1, 0, 101.0 + LEASE) == 0  # part 2 asked of Twilio: then killed
        assert await alive.claim(102.0, LEASE, 10) == ([], 0)  # its lease holds
        assert await alive.claim(101.0 + LEASE + 1, LEASE, 10) == ([], 1)  # found unknown, not claimed
        [kept] = await alive.unknown()
        assert (kept["id"], kept["unknown_part"], kept["sids"]) == (message.id, 1, ["SM1"])
        assert await dead.finish(claimed, 1, "sent", 200.0, sid="SM2") is False  # too late to say
        assert await alive.resend(message.id, 300.0)
        [again], _ = await alive.claim(300.0, LEASE, 10)
        assert (again.part, again.sids) == (1, ("SM1",))  # from the unknown part on
    finally:
        await store.aclose()


async def test_a_part_begun_and_not_asked_for_is_given_back_by_its_sender_alone(redis_url):
    """A sender that stops gives back a part it began and has not asked Twilio for (it waited
    for a request slot, AHEAD): queued again at that part, its sent parts kept. Only that part,
    only its own: a part it says nothing of, or another part, stays being sent."""
    store = await Store.open(redis_url)
    try:
        sender, other = Outbox(store), Outbox(store)
        message = Message(an_id("ahead", "+12015550109"), "invite", "sms", "+12015550109", {"from": "+15550000001"},
                          ({"body": "one"}, {"body": "two"}), "feedback")
        await sender.enqueue(message, 100.0)
        [claimed], _ = await sender.claim(100.0, LEASE, 10)
        assert await sender.begin(claimed, 0, 0, 100.0 + LEASE) == 0
        assert await sender.finish(claimed, 0, "sent", 101.0, sid="SM1")
        assert await sender.begin(claimed, 1, 0, 101.0 + LEASE) == 0
        assert await other.give_back(claimed, 102.0, 1) is False  # not the other sender's
        assert await sender.give_back(claimed, 102.0) is False  # begun: not as a claim alone
        assert await sender.give_back(claimed, 102.0, 0) is False  # not the part begun
        assert await sender.give_back(claimed, 102.0, 1) is True
        [again], unknown = await other.claim(102.0, LEASE, 10)
        assert (again.message.id, again.part, again.sids, unknown) == (message.id, 1, ("SM1",), 0)
    finally:
        await store.aclose()


async def test_a_repeated_finish_whose_answer_was_lost_notes_the_message_queued_once(redis_url):
    """FINISH notes a part Twilio took as queued (the recipient's deliveries, and for a
    distribution's message its deliveries stream); its repeat after a lost answer notes nothing."""
    store = await Store.open(redis_url)
    try:
        sender, phone = Outbox(store), "+12015550107"
        message = Message(an_id("queued", phone), "invite", "sms", phone, {"from": "+15550000001"},
                          ({"body": "one"},), "feedback", distribution="DS7")
        await sender.enqueue(message, 100.0)
        [claimed], _ = await sender.claim(100.0, LEASE, 10)
        assert await sender.begin(claimed, 0, 0, 100.0 + LEASE) == 0
        assert await sender.finish(claimed, 0, "sent", 101.0, sid="SM7") is True
        assert await sender.finish(claimed, 0, "sent", 102.0, sid="SM7") is False  # the repeat
        assert await store.deliveries("sms", phone) == {"SM7": {"status": "queued", "error_code": None,
                                                               "at": 101.0, "d": "DS7"}}
        stream = store.layout.deliveries(store.layout.shard("sms", phone))
        events = [json.loads(fields["r"]) for _, fields in await store.redis.xrange(stream)]
        assert [(e["state"], e["sid"]) for e in events if e["distribution"] == "DS7"] == [("queued", "SM7"),
                                                                                       ("sent", "SM7")]
    finally:
        await store.aclose()


async def test_a_repeated_begin_whose_answer_was_lost_goes_without_counting_twice(redis_url):
    store = await Store.open(redis_url)
    try:
        sender = Outbox(store)
        for n in range(2):
            await sender.enqueue(Message(an_id(f"pace{n}", "+12015550106"), "reply", "sms", "+12015550106",
                                         {"from": "+15550000009"}, ({"body": "x"},)), 100.0)
        claimed, _ = await sender.claim(100.0, LEASE, 10)
        first, second = sorted(claimed, key=lambda c: c.message.id)
        assert await sender.begin(first, 0, 1, 200.0) == 0
        assert await sender.begin(first, 0, 1, 200.0) == 0  # the same call again: no second slot
        assert await sender.begin(second, 0, 1, 200.0) > 0  # one a second: wait
    finally:
        await store.aclose()


async def test_a_message_the_pace_holds_back_keeps_its_claim_past_the_lease(redis_url):
    """A sender waiting for its pace renews the lease each time it asks: another sender does not
    take the message when the first claim's lease has run out, however long the pace lasts."""
    store = await Store.open(redis_url)
    try:
        waiting, other = Outbox(store), Outbox(store)
        for n in range(2):
            await waiting.enqueue(Message(an_id(f"held{n}", "+12015550108"), "invite", "sms", "+12015550108",
                                          {"from": "+15550000013"}, ({"body": "x"},)), 100.0)
        first, second = sorted((await waiting.claim(100.0, LEASE, 10))[0], key=lambda c: c.message.id)
        assert await waiting.begin(first, 0, 1, 100.0 + LEASE) == 0
        assert await waiting.finish(first, 0, "sent", 101.0, sid="SM1")
        assert await waiting.begin(second, 0, 1, 150.0 + LEASE) > 0  # one a second: it waits, still asking
        assert await other.claim(100.0 + LEASE + 1, LEASE, 10) == ([], 0)  # the first lease is over: kept
        assert await other.claim(150.0 + LEASE + 1, LEASE, 10) != ([], 0)  # its sender stopped asking
        assert await waiting.begin(second, 0, 1, 220.0 + LEASE) == -1  # the claim is gone
    finally:
        await store.aclose()


async def test_a_senders_claimed_ids_are_those_it_has_not_begun_and_others_leave_at_its_next_claim(redis_url):
    """What a claim looks through when its answer was lost: kept exact where the state changes,
    so that an ordinary claim need not read every id its sender holds."""
    store = await Store.open(redis_url)
    try:
        sender, other = Outbox(store), Outbox(store)
        phone = "+12015550109"
        two = a_reply("kept2", phone, "+15550000014", "one", "two")
        one = a_reply("kept1", phone, "+15550000014")
        for message in (two, one):
            await sender.enqueue(message, 100.0)
        found = {c.message.id: c for c in (await sender.claim(100.0, LEASE, 10))[0]}
        last = sender.keys(two.id).claimed(sender.tag)
        assert await store.redis.smembers(last) == {two.id, one.id}
        assert await sender.begin(found[two.id], 0, 0, 100.0 + LEASE) == 0
        assert await store.redis.smembers(last) == {one.id}  # being sent
        assert await sender.finish(found[two.id], 0, "sent", 101.0, sid="SM1")
        assert await store.redis.smembers(last) == {one.id, two.id}  # its next part: still this sender's
        assert await sender.begin(found[two.id], 1, 0, 102.0 + LEASE) == 0
        sender.release(one.id)  # let go (Redis failed while it was begun): the lease brings it back
        assert [c.message.id for c in (await other.claim(100.0 + LEASE + 1, LEASE, 10))[0]] == [one.id]
        assert await store.redis.smembers(last) == {one.id}
        assert (await sender.claim(102.0, LEASE, 10))[0] == []  # it holds one: `last` is not read
        assert await store.redis.smembers(last) == {one.id}
        sender.release(two.id)
        three = a_reply("kept3", phone, "+15550000014", "y")
        await sender.enqueue(three, 103.0)  # (on a Cluster, a claim runs where messages are due)
        assert [c.message.id for c in (await sender.claim(103.0, LEASE, 10))[0]] == [three.id]  # it held none
        assert await store.redis.smembers(last) == {three.id}  # the other sender's is gone
    finally:
        await store.aclose()


async def test_every_claim_whose_answer_was_lost_is_taken_back_not_only_the_last(redis_server, one_redis_url):
    """Two starts' own messages claimed at once (send_now), and Redis slow to answer both
    claims past REDIS_TIMEOUT: both ran, neither answer came. The next claim takes back both
    messages at once, rather than the last claim's alone (the other waiting out the lease)."""
    proxy = await DelayingProxy(redis_server.port, slow=is_claim).start()
    store = await Store.open(proxy.url)
    try:
        sender = Outbox(store)
        for n in range(2):
            await sender.enqueue(Message(f"OBheld{n}", "start", "sms", f"+1201555011{n}",
                                         {"from": "+15550000001"}, ({"body": "first"},)), 100.0 + HOLD)
        assert await sender.claim(100.0, LEASE, 10) == ([], 0)  # held for their starts (and the script loaded)
        proxy.delay = 30 * REDIS_TIMEOUT  # never within the call
        lost = await asyncio.gather(*(sender.claim(100.0, LEASE, 1, (f"OBheld{n}",)) for n in range(2)),
                                    return_exceptions=True)
        assert all(isinstance(answer, RedisError) for answer in lost) and proxy.held == 2
        proxy.delay = 0
        claimed, _ = await sender.claim(101.0, LEASE, 10)
        assert sorted(c.message.id for c in claimed) == ["OBheld0", "OBheld1"]
        assert await sender.claim(102.0, LEASE, 10) == ([], 0)  # taken back once
    finally:
        await store.aclose()
        await proxy.close()


def is_claim(command: list[bytes]) -> bool:
    return len(command) > 1 and command[0].upper() == b"EVALSHA" and command[1] == OUTBOX_CLAIM.sha.encode()


async def command_calls(store: Store) -> collections.Counter[str]:
    """How often Redis ran each command (scripts' own commands included), over every master
    of a Cluster."""
    if store.layout.cluster:
        found = (await store.redis.info("commandstats", target_nodes=store.redis.PRIMARIES)).values()
    else:
        found = [await store.redis.info("commandstats")]
    return sum((collections.Counter({name.removeprefix("cmdstat_"): stats["calls"] for name, stats in each.items()})
                for each in found), collections.Counter())


async def script_calls(store: Store) -> int:
    """How many scripts Redis ran (EVALSHA)."""
    return (await command_calls(store))["evalsha"]


async def test_requests_begun_and_answered_together_go_in_one_call_each_and_keep_the_pace(redis_url):
    store = await Store.open(redis_url)
    try:
        sender = Outbox(store)
        for n, phone in enumerate(one_shards_phones(6)):  # three from a paced number (2 a second), three unpaced
            origin = {"from": "+15550000011" if n < 3 else "+15550000012"}
            await sender.enqueue(Message(an_id(f"burst{n}", phone), "reply", "sms", phone, origin,
                                         ({"body": "x"},)), 100.0)
        claimed = sorted((await sender.claim(100.0, LEASE, 10))[0], key=lambda c: c.message.id)
        for script in (OUTBOX_BEGIN, OUTBOX_FINISH, OUTBOX_PACE, OUTBOX_PACED):  # loaded: no NOSCRIPT answer to count
            await store.redis.script_load(script.text)
        before = await script_calls(store)
        waits = await asyncio.gather(*(sender.begin(c, 0, 2 if n < 3 else 0, 200.0)
                                       for n, c in enumerate(claimed)))
        assert waits[0] == 0 and waits[1] > 0 and waits[2] > 0  # 250 ms apart (the gap)
        assert waits[3:] == [0, 0, 0]
        begun = await script_calls(store)
        # one call for the begins; on a Cluster (the pace in a slot of its own, these messages in
        # one shard) one for the paced requests' pace, then one for the begins of those not
        # paced and one for the begin of the paced request the pace let go
        assert begun - before == (3 if store.layout.cluster else 1)
        went = [c for c, wait in zip(claimed, waits, strict=True) if wait == 0]
        # answers read in one turn of the event loop, each at its own time
        noted = await asyncio.gather(*(sender.finish(c, 0, "sent", 101.0 + n / 1000, sid=f"SM{n}")
                                       for n, c in enumerate(went)))
        assert noted == [True] * 4
        # one call for the answers; on a Cluster, then one for the answered paced request's pace
        assert await script_calls(store) - begun == (2 if store.layout.cluster else 1)
        for n, c in enumerate(went):  # each noted queued at the latest of the answers' times
            note = json.loads(await store.redis.hget(store.layout.delivery("sms", c.message.to), f"SM{n}"))
            assert note["status"] == "queued" and note["at"] == 101.003
        assert await sender.pending() == 2  # the two that wait for the pace
        assert await sender.finish(went[0], 0, "sent", 102.0, sid="SM0") is False  # a repeat: no change
    finally:
        await store.aclose()


async def test_a_batchs_writes_reach_redis_as_one_command_per_key_not_one_per_message(one_redis_url):
    """CLAIM, BEGIN and FINISH write a whole batch's changes to the state hash, the due set,
    the messages hash and the claimed set with one command per key (per 1,000 arguments),
    not one per message: Redis runs, and its AOF holds, a fraction of the commands. What
    they write is what one write per message wrote."""
    store = await Store.open(one_redis_url)
    try:
        sender, count = Outbox(store), 700  # a claim's HSET: 1,400 arguments, two commands
        # (one Redis: one outbox, whatever the numbers' shards)
        messages = [a_reply(f"many{n}", phone, "+15550000031") for n, phone in enumerate(f"+1201560{n:04d}" for n in range(count))]
        # queued as Outbox.enqueue does, in one pipeline: set-up, not what the test is about
        with redis.Redis.from_url(one_redis_url) as direct, direct.pipeline(transaction=False) as pipe:
            for message in messages:
                keys = sender.keys(message.id)
                pipe.hset(keys.messages, message.id, message.dumps())
                pipe.zadd(keys.due, {message.id: 100.0})
            pipe.execute()
        keys = sender.keys(messages[0].id)
        for script in (OUTBOX_CLAIM, OUTBOX_BEGIN, OUTBOX_FINISH):  # loaded: no NOSCRIPT answer to count
            await store.redis.script_load(script.text)
        await store.redis.config_resetstat()
        claimed, _ = await sender.claim(100.0, LEASE, count)
        calls = await command_calls(store)
        assert len(claimed) == count and calls["evalsha"] == 1
        assert (calls["hset"], calls["zadd"], calls["sadd"]) == (2, 2, 1)
        states = await store.redis.hgetall(keys.state)
        assert set(states.values()) == {f"c|0|0|{sender.tag}|"} and len(states) == count
        assert {score for _, score in await store.redis.zrange(keys.due, 0, -1, withscores=True)} == {100.0 + LEASE}
        assert await store.redis.scard(keys.claimed(sender.tag)) == count

        await store.redis.config_resetstat()
        assert await asyncio.gather(*(sender.begin(c, 0, 0, 150.0 + LEASE) for c in claimed)) == [0] * count
        calls = await command_calls(store)
        assert calls["evalsha"] < count // 10  # (batches of Batches' `most`)
        assert calls["hset"] == calls["zadd"] == calls["srem"] == calls["evalsha"]
        states = await store.redis.hgetall(keys.state)
        assert set(states.values()) == {f"s|0|0|{sender.tag}|"}
        assert {score for _, score in await store.redis.zrange(keys.due, 0, -1, withscores=True)} == {150.0 + LEASE}
        assert await store.redis.scard(keys.claimed(sender.tag)) == 0

        await store.redis.config_resetstat()
        noted = await asyncio.gather(*(sender.finish(c, 0, "sent", 151.0, sid=f"SM{n}") for n, c in enumerate(claimed)))
        assert noted == [True] * count
        calls = await command_calls(store)
        assert calls["evalsha"] < count // 10
        assert calls["zrem"] == calls["evalsha"] and calls["hdel"] == 2 * calls["evalsha"]
        assert await sender.pending() == 0 and await store.redis.hlen(keys.state) == 0
        assert await store.redis.hlen(keys.messages) == 0
    finally:
        await store.aclose()


async def test_a_message_met_twice_in_one_call_sees_its_own_change(redis_url):
    """The scripts write a batch's changes at their end: a message a call names twice is
    claimed once, begun once (the second request finds the mark of the first: a repeat), and
    finished once (the second answer finds it gone or moved on), as when each change was
    written at once; in one call, one message moves to its next part while another ends."""
    store = await Store.open(redis_url)
    try:
        sender, (phone, other_phone) = Outbox(store), one_shards_phones(2, first=40)
        two = a_reply("twice2", phone, "+15550000032", "one", "two")
        one = a_reply("twice1", other_phone, "+15550000032")
        for message in (two, one):
            await sender.enqueue(message, 100.0)
        for script in (OUTBOX_CLAIM, OUTBOX_BEGIN, OUTBOX_FINISH):  # loaded: no NOSCRIPT answer to count
            await store.redis.script_load(script.text)
        keys = sender.keys(two.id)
        found, _ = await sender.claim(100.0, LEASE, 3, (two.id, two.id, one.id))
        assert sorted(c.message.id for c in found) == sorted([two.id, one.id])
        claimed = {c.message.id: c for c in found}
        assert await store.redis.hget(keys.state, two.id) == f"c|0|0|{sender.tag}|"

        calls = await script_calls(store)
        begun = await asyncio.gather(sender.begin(claimed[two.id], 0, 0, 160.0),
                                     sender.begin(claimed[two.id], 0, 0, 170.0),
                                     sender.begin(claimed[one.id], 0, 0, 170.0))
        assert begun == [0, 0, 0] and await script_calls(store) - calls == 1  # one call
        assert await store.redis.hget(keys.state, two.id) == f"s|0|0|{sender.tag}|"
        assert await store.redis.zscore(keys.due, two.id) == 170.0  # the last lease

        calls = await script_calls(store)
        noted = await asyncio.gather(sender.finish(claimed[two.id], 0, "sent", 101.0, sid="SM1", paced=False),
                                     sender.finish(claimed[two.id], 0, "sent", 101.0, sid="SM1", paced=False),
                                     sender.finish(claimed[one.id], 0, "sent", 101.0, sid="SM3", paced=False))
        assert noted == [True, False, True] and await script_calls(store) - calls == 1
        assert await store.redis.hget(keys.state, two.id) == f"c|1|0|{sender.tag}|SM1"  # its next part, once
        assert await store.redis.hget(keys.state, one.id) is None  # done
        assert await store.redis.smembers(keys.claimed(sender.tag)) == {two.id}
        assert 0 < await store.redis.ttl(keys.claimed(sender.tag)) <= LEASE

        assert await sender.begin(claimed[two.id], 1, 0, 180.0) == 0
        calls = await script_calls(store)
        noted = await asyncio.gather(sender.finish(claimed[two.id], 1, "sent", 102.0, sid="SM2", paced=False),
                                     sender.finish(claimed[two.id], 1, "retry", 102.0, retry_at=200.0, paced=False))
        assert noted == [True, False] and await script_calls(store) - calls == 1
        assert await sender.pending() == 0 and await store.redis.hget(keys.state, two.id) is None
    finally:
        await store.aclose()


async def test_answers_wait_the_linger_for_others_in_one_call_unless_a_whole_call_is_ready():
    calls: list[list] = []

    async def run(items: list, common: str) -> list:
        calls.append(items)
        return [f"{common}:{item}" for item in items]

    batches = Batches(run, most=4, linger=0.05)
    first = batches.add(1, "a")
    await asyncio.sleep(0.01)  # a later turn of the event loop, within the linger
    second = batches.add(2, "a")
    assert await asyncio.gather(first, second) == ["a:1", "a:2"]
    assert calls == [[1, 2]]
    started = time.monotonic()
    assert await asyncio.gather(*(batches.add(n, "b") for n in range(4))) == ["b:0", "b:1", "b:2", "b:3"]
    assert time.monotonic() - started < 0.04  # four: sent at once, not after the linger
    assert calls[1:] == [[0, 1, 2, 3]]


async def test_a_slot_goes_to_a_waiting_start_before_the_outbox_and_a_cancelled_wait_keeps_none():
    slots = Slots(1)
    await slots.acquire()
    order: list[str] = []

    async def waiter(name: str, first: bool = False) -> None:
        await slots.acquire(first)
        order.append(name)

    outbox_one, outbox_two = asyncio.create_task(waiter("outbox 1")), asyncio.create_task(waiter("outbox 2"))
    gone = asyncio.create_task(waiter("cancelled"))
    await asyncio.sleep(0)
    start = asyncio.create_task(waiter("start", first=True))
    await asyncio.sleep(0)
    gone.cancel()
    for _ in range(3):  # each holder in turn lets it go
        slots.release()
        await asyncio.sleep(0)
    assert order == ["start", "outbox 1", "outbox 2"]
    assert start.done() and outbox_two.done() and outbox_one.done() and gone.cancelled()
    slots.release()  # the last holder's: one free slot, as at first
    await slots.acquire()
    late = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.01)
    assert not late.done()  # none left over from the cancelled wait
    late.cancel()


async def test_a_starts_message_takes_the_next_free_slot_before_messages_the_outbox_holds(
        make_client, settings, fake_twilio, monkeypatch):
    """Slow answers hold every slot and more outbox messages wait for one: a start's first
    message goes with the next slot freed, not after them."""
    few_slots(monkeypatch, 2, 6)
    client = await make_client(dataclasses.replace(settings, pacing="off"))
    service = client.server.app[SERVICE]
    waiting = [f"+1201555{n:04d}" for n in range(300, 306)]
    for phone in waiting:
        fake_twilio.delay_for(phone, seconds=0.6)
        await service.senders.outbox.enqueue(a_reply("slow", phone, "+15550000015"), 0.0)
    service.senders.wake()
    await eventually(lambda: len(fake_twilio.arrivals) >= 2)  # both slots taken: four wait for one
    started = time.monotonic()
    assert (await start(client, "+12015550310")).status == 201
    assert time.monotonic() - started < 1.0  # the first slot freed (0.6 s), not the third (1.8 s)
    await drained(client)
    order = [arrival.to for arrival in fake_twilio.created()]
    assert order.index("+12015550310") < 4 and sorted(order) == sorted([*waiting, "+12015550310"])


async def test_two_workers_keep_one_pace_per_sender(make_client, settings, fake_twilio):
    paced = dataclasses.replace(settings, pacing="phone=4")
    one, two = await make_client(paced), await make_client(paced)
    numbers = [f"+1201555{n:04d}" for n in range(200, 216)]
    await asyncio.gather(*(start(client, number) for client, number in zip([one, two] * 8, numbers, strict=True)))
    await drained(one, 15)
    await drained(two, 15)
    created = fake_twilio.created()
    assert sorted(arrival.to for arrival in created) == numbers  # each once
    assert fake_twilio.max_in_window(1.0) <= 4



async def test_a_429_waits_as_long_as_twilio_says_in_retry_after(client, fake_twilio, clock):
    fake_twilio.fail_next(1, status=429, retry_after=5)
    assert (await start(client, "+12015550107")).status == 201
    for seconds, sent in ((4.5, 0), (0.5, 1)):  # its own backoff would have retried after 1 s
        clock.advance(seconds)
        client.server.app[SERVICE].senders.wake()
        await drained(client)
        assert len(fake_twilio.created()) == sent


# ---------------------------------------------------------------- slots, leases, stopping


async def test_a_wait_cancelled_in_the_turn_its_slot_is_passed_over_ends_cancelled():
    """A holder lets its slot go in the same turn as a waiter is cancelled (a start's caller
    gone, or the end of Senders.stop's grace): release() pops the cancelled wait and passes over
    it, then the waiter's own handler removes it from the queue again."""
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    slots.release()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(slots.acquire(), 0.1)  # the one slot is free


async def test_stopped_slots_tell_every_waiter_at_once_and_give_none_after():
    """Slots.stop (Senders.stop): the waiters, first ones and others, learn at once that no slot
    comes (False); later acquires too, even once a slot is given back."""
    slots = Slots(1)
    assert await slots.acquire() is True
    waiters = [asyncio.create_task(slots.acquire(first)) for first in (False, True)]
    await asyncio.sleep(0)
    slots.stop()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 0.1) == [False, False]
    slots.release()
    assert await slots.acquire() is False


async def test_a_part_that_waited_past_its_lease_for_a_slot_is_not_sent_once_found_unknown(
        redis_url, fake_twilio, monkeypatch):
    """Unpaced, a lane begins its part, then waits for a slot (AHEAD). When that wait outlasts
    the claim's lease (here 1 s, RENEW_AFTER as shipped), another sender's claim finds the part being sent and keeps it as unknown:
    the lane, given its slot at last, begins it again, finds its claim gone, and does not send
    it (it would be delivered yet reported unknown, and sent twice on a resend)."""
    few_slots(monkeypatch, 1, 2)
    monkeypatch.setattr(runtime_outbox, "LEASE", 1.0)
    store = await Store.open(redis_url)
    try:
        async with running(store, fake_twilio) as (senders, _):
            assert await senders._slots.acquire() is True  # every slot at Twilio, for longer than a lease
            phone = "+12015550160"
            message = a_reply("late", phone, "+15550000025")
            await senders.outbox.enqueue(message, time.time() - 1)
            senders.wake()
            state = senders.outbox.keys(message.id).state
            await eventually(lambda: len(senders.outbox.holding) == 1)
            await until_begun(store, state, message.id)
            await asyncio.sleep(1.1)
            claimed, _ = await Outbox(store).claim(time.time(), LEASE, 10)  # (or the worker's own claim)
            assert claimed == []
            [kept] = await Outbox(store).unknown()  # its lease ran out: found being sent
            assert kept["id"] == message.id
            senders._slots.release()
            await eventually(lambda: not senders.outbox.holding)
        assert fake_twilio.arrivals == []  # found its claim gone
        assert [m["id"] for m in await Outbox(store).unknown()] == [message.id]
    finally:
        await store.aclose()


async def test_a_part_that_waited_long_for_a_slot_renews_its_lease_and_goes_once(redis_url, fake_twilio, monkeypatch):
    """A wait for a slot longer than RENEW_AFTER, within the lease: BEGIN again renews the lease,
    and the part goes, once; another sender's claim a lease after the first BEGIN finds nothing."""
    few_slots(monkeypatch, 1, 2)
    monkeypatch.setattr(runtime_outbox, "LEASE", 2.0)
    monkeypatch.setattr(runtime_outbox, "RENEW_AFTER", 0.5)
    store = await Store.open(redis_url)
    try:
        async with running(store, fake_twilio) as (senders, _):
            assert await senders._slots.acquire() is True
            phone = "+12015550161"
            message = a_reply("renew", phone, "+15550000026")
            fake_twilio.delay_for(phone, seconds=1.5)
            await senders.outbox.enqueue(message, time.time() - 1)
            senders.wake()
            state = senders.outbox.keys(message.id).state
            await until_begun(store, state, message.id)
            begun = time.time()
            await asyncio.sleep(1.2)
            senders._slots.release()
            await eventually(lambda: len(fake_twilio.arrivals) == 1)
            await asyncio.sleep(max(0.0, begun + 2.2 - time.time()))  # the first BEGIN's lease is over
            assert await Outbox(store).claim(time.time(), LEASE, 10) == ([], 0)  # renewed: still its own
            await eventually(lambda: not senders.outbox.holding)
        assert [a.to for a in fake_twilio.arrivals] == [phone]
        assert await Outbox(store).unknown() == []
    finally:
        await store.aclose()


async def until_begun(store: Store, state: str, message_id: str, timeout: float = 3.0) -> None:
    """Wait until the message's part is marked as being sent."""
    deadline = time.monotonic() + timeout
    while not ((await store.redis.hget(state, message_id)) or "").startswith("s|"):
        assert time.monotonic() < deadline, "the message was never begun"
        await asyncio.sleep(0.01)


async def test_a_senders_claimed_ids_expire_also_after_a_finish_adds_a_next_part(redis_url):
    """`last` (a sender's claimed ids) expires a lease after its claims; BEGIN's SREM deletes it
    when it empties and FINISH's SADD of a next part makes it anew without an expiry: a sender
    that dies before its next claim leaves it in Redis for ever."""
    store = await Store.open(redis_url)
    try:
        sender, phone = Outbox(store), "+12015550120"
        two = a_reply("ttl2", phone, "+15550000020", "one", "two")
        await sender.enqueue(two, 100.0)
        [claimed], _ = await sender.claim(100.0, LEASE, 10)
        last = sender.keys(two.id).claimed(sender.tag)
        assert 0 < await store.redis.ttl(last) <= LEASE
        assert await sender.begin(claimed, 0, 0, 100.0 + LEASE) == 0
        assert await sender.finish(claimed, 0, "sent", 101.0, sid="SM1")
        assert await store.redis.smembers(last) == {two.id}
        assert 0 < await store.redis.ttl(last) <= LEASE  # kept no longer than a lease
    finally:
        await store.aclose()


async def test_a_repeated_begin_whose_first_try_no_longer_counts_takes_the_pace_anew(redis_url):
    """A BEGIN that ran (the part marked) but whose answer was lost is repeated, for up to
    PATIENCE. Its request has not gone: it goes when a repeat answers. While the first try
    counts in the pace the repeat goes at once; once it no longer does (its time-out and a window
    later), the repeat takes the pace anew, beside the request the pace let go meanwhile: on one
    Redis in BEGIN, on a Cluster in the pace's own script (the claim's lease renewed meanwhile)."""
    store = await Store.open(redis_url)
    try:
        sender, phones = Outbox(store), one_shards_phones(2)
        for n, phone in enumerate(phones):
            await sender.enqueue(a_reply(f"again{n}", phone, "+15550000021"), 100.0 + n)
        first, second = sorted((await sender.claim(101.0, LEASE, 10))[0], key=lambda c: c.message.id)
        assert await sender.begin(first, 0, 1, 200.0, inflight=0.001) == 0  # (its answer lost)
        assert await sender.begin(first, 0, 1, 200.0, inflight=0.001) == 0  # a repeat at once: it counts
        await asyncio.sleep(1.1)  # its entry in the pace no longer counts; no request went
        assert await sender.begin(second, 0, 1, 300.0, inflight=0.001) == 0  # goes now
        assert await sender.begin(first, 0, 1, 300.0, inflight=0.001) > 0  # the repeat waits for the pace
        await asyncio.sleep(1.1)
        assert await sender.begin(first, 0, 1, 300.0, inflight=0.001) == 0  # then goes
        assert await Outbox(store).claim(250.0, LEASE, 10) == ([], 0)  # its lease renewed meanwhile
    finally:
        await store.aclose()


async def test_a_claim_whose_connection_broke_after_it_ran_is_taken_back_by_the_next_claim(
        redis_server, one_redis_url):
    """A start's own message claimed (send_now), and the connection breaks after the claim
    reached Redis, before its answer came. A claim is not repeated on a new connection (as
    other calls are): its sender learns that the answer was lost, and its next claim takes the
    message back, rather than leave it to wait out the lease."""
    proxy = await DelayingProxy(redis_server.port, slow=is_claim).start()
    store, direct = await Store.open(proxy.url), await Store.open(one_redis_url)
    try:
        sender = Outbox(store)
        await sender.enqueue(Message("OBcut", "start", "sms", "+12015550150", {"from": "+15550000041"},
                                     ({"body": "first"},)), 100.0 + HOLD)
        assert await sender.claim(100.0, LEASE, 10) == ([], 0)  # held for its start (and the script loaded)
        proxy.delay = 0.5 * REDIS_TIMEOUT  # its answer held back, within the call's time
        claiming = asyncio.create_task(sender.claim(100.0, LEASE, 1, ("OBcut",)))
        await eventually(lambda: proxy.held == 1)
        await asyncio.sleep(0.05)
        assert (await direct.redis.hget(sender.keys("OBcut").state, "OBcut")).startswith("c|")  # it ran
        proxy.delay = 0
        for link in list(proxy._links):  # the connection breaks, the answer unsent
            link.cancel()
        with pytest.raises(RedisError):
            await claiming
        claimed, _ = await sender.claim(101.0, LEASE, 10)
        assert [c.message.id for c in claimed] == ["OBcut"]
    finally:
        await store.aclose()
        await direct.aclose()
        await proxy.close()


async def test_with_a_pace_a_worker_holds_no_more_messages_than_its_slots(redis_url, fake_twilio, monkeypatch):
    """Messages beyond a worker's slots would wait for the pace behind the others (HELD x workers
    / rate seconds: 192 x 2 / 3 = 128 s), past their lease: with a pace a worker claims only as
    many as it has slots; without one, up to HELD (fewer when its lanes are slow: QUEUE_WAIT)."""
    few_slots(monkeypatch, 1, 2)
    store = await Store.open(redis_url)
    try:
        for pacing, holds in (("+15550000022=1", 1), ("off", 2)):
            async with running(store, fake_twilio, pacing) as (senders, _):
                phones = one_shards_phones(3, first=10 * holds)
                fake_twilio.delay_for(phones[0], seconds=1.0)
                for n, phone in enumerate(phones):
                    await senders.outbox.enqueue(a_reply(f"slot{pacing}{n}", phone, "+15550000022"),
                                                 time.time() - 2 + n / 10)
                senders.wake()
                await eventually(lambda: len(fake_twilio.arrivals) >= 1)  # the first holds the one slot for 1 s
                await asyncio.sleep(0.2)
                assert len(senders.outbox.holding) == holds
    finally:
        await store.aclose()


async def test_a_worker_whose_lanes_are_slow_holds_only_what_they_start_within_the_queue_wait(
        redis_url, fake_twilio, monkeypatch):
    """The messages queued behind a worker's lanes wait unrenewed: once its lanes have been slow
    (Twilio slow to answer, long messages), a worker claims only what they start within
    QUEUE_WAIT at that pace, not HELD, so that none outlasts its lease in the queue. A worker
    whose lanes are quick (the same QUEUE_WAIT, long enough) claims up to HELD."""
    few_slots(monkeypatch, 1, 8)
    monkeypatch.setattr(runtime_outbox, "AHEAD", 0)
    store = await Store.open(redis_url)
    try:
        for queue_wait, delay, most in ((0.3, 0.2, 3), (60.0, 0.4, 6)):
            # one lane at about `delay` a message: about one more held (and one whose note is
            # landing), or all six
            monkeypatch.setattr(runtime_outbox, "QUEUE_WAIT", queue_wait)
            async with running(store, fake_twilio) as (senders, _):
                phones = one_shards_phones(7, first=10 if most == 3 else 20)
                for phone in phones:
                    fake_twilio.delay_for(phone, seconds=delay)
                before = len(fake_twilio.created())

                async def enqueue(name: str, phone: str) -> None:
                    await senders.outbox.enqueue(a_reply(name, phone, "+15550000025"), time.time() - 1)

                await enqueue(f"warm{most}", phones[0])  # its time is the lanes' pace
                senders.wake()
                await eventually(lambda: senders._lane_seconds > 0)
                for n, phone in enumerate(phones[1:]):
                    await enqueue(f"slow{most}-{n}", phone)
                senders.wake()
                held = []
                while len(fake_twilio.created()) - before < len(phones):
                    held.append(len(senders.outbox.holding))
                    await asyncio.sleep(0.02)
                assert (max(held) <= most) if most == 3 else (max(held) == most)
    finally:
        await store.aclose()


async def test_a_worker_holds_fewer_as_soon_as_a_lane_is_slow_not_once_its_slow_message_ends(
        redis_url, fake_twilio, monkeypatch):
    """The lanes' pace is also the age of the message a lane is still on: when Twilio turns
    slow after quick answers, the worker claims no more than that pace allows at once, rather
    than fill its queue by the quick average until slow messages end."""
    few_slots(monkeypatch, 1, 8)
    monkeypatch.setattr(runtime_outbox, "AHEAD", 0)
    monkeypatch.setattr(runtime_outbox, "QUEUE_WAIT", 0.3)
    store = await Store.open(redis_url)
    try:
        async with running(store, fake_twilio) as (senders, _):
            quick, slow, *rest = one_shards_phones(8)
            fake_twilio.delay_for(slow, seconds=1.5)

            async def enqueue(name: str, phone: str) -> None:
                await senders.outbox.enqueue(a_reply(name, phone, "+15550000026"), time.time() - 1)
                senders.wake()

            await enqueue("quick", quick)
            await eventually(lambda: senders._lane_seconds > 0)
            assert senders._holds() == 8  # quick lanes: up to HELD
            await enqueue("slow", slow)
            await eventually(lambda: len(fake_twilio.arrivals) == 2)  # at Twilio, answered in 1.5 s
            await asyncio.sleep(0.4)  # the lane on it is older than QUEUE_WAIT: one lane, none queued
            for n, phone in enumerate(rest):
                await enqueue(f"after{n}", phone)
            await asyncio.sleep(0.3)
            assert len(senders.outbox.holding) == 1 and len(fake_twilio.arrivals) == 2
            await eventually(lambda: len(fake_twilio.created()) == 8, timeout=10)  # then all go
    finally:
        await store.aclose()


async def test_a_wake_while_an_empty_claim_is_under_way_brings_the_next_claim_at_once(
        redis_server, one_redis_url, fake_twilio, monkeypatch):
    """A message queued (and the senders woken) while a claim that finds nothing is under way
    is claimed as soon as that claim answers, not at the next look (INTERVAL later)."""
    monkeypatch.setattr(runtime_outbox, "INTERVAL", 5.0)
    proxy = await DelayingProxy(redis_server.port, slow=is_claim).start()
    store, direct = await Store.open(proxy.url), await Store.open(one_redis_url)
    try:
        async with running(store, fake_twilio) as (senders, _):
            await asyncio.sleep(0.2)  # its first claim found nothing: it waits for a wake
            proxy.delay = 0.5
            senders.wake()
            await eventually(lambda: proxy.held == 1)  # a claim under way (it ran: nothing due)
            phone = "+12015550161"
            await Outbox(direct).enqueue(a_reply("woken", phone, "+15550000027"), time.time() - 1)
            woken = time.monotonic()
            senders.wake()
            await eventually(lambda: len(fake_twilio.created()) == 1, timeout=4.0)
            assert time.monotonic() - woken < 2.0
    finally:
        await store.aclose()
        await direct.aclose()
        await proxy.close()


async def test_senders_that_stop_begin_no_request_they_would_cut_off(redis_url, fake_twilio, monkeypatch):
    """Senders.stop lets the requests under way finish within its grace, then cancels the rest.
    A message still waiting for a slot when they stop begins no request (the end of the grace
    would cut it off, and leave it unknown): it is given back to the other senders at once,
    though it was begun (unpaced, a lane begins its message before it waits for a slot)."""
    few_slots(monkeypatch, 1, 2)
    store = await Store.open(redis_url)
    try:
        async with running(store, fake_twilio) as (senders, run):
            phones = one_shards_phones(2)
            ids = {phone: an_id(f"stop{n}", phone) for n, phone in enumerate(phones)}
            for n, phone in enumerate(phones):
                fake_twilio.delay_for(phone, seconds=0.5)
                await senders.outbox.enqueue(Message(ids[phone], "reply", "sms", phone,
                                                     {"from": "+15550000023"}, ({"body": "x"},)), time.time() - 2 + n)
            senders.wake()
            await eventually(lambda: len(fake_twilio.arrivals) >= 1)
            await eventually(lambda: len(senders.outbox.holding) == 2)
            [sent] = [a.to for a in fake_twilio.arrivals]
            [waiting] = [phone for phone in phones if phone != sent]
            state = await store.redis.hget(senders.outbox.keys(ids[waiting]).state, ids[waiting])
            assert state.startswith("s|0|")  # begun, waiting for the one slot
            started = time.monotonic()
            await senders.stop(run, grace=0.8)
            assert time.monotonic() - started < 0.8  # the request under way let finish, no more
        assert [a.to for a in fake_twilio.arrivals] == [sent]
        other = Outbox(store)
        [given_back], _ = await other.claim(time.time(), LEASE, 10)  # at once, not after the lease
        assert given_back.message.to == waiting and given_back.part == 0
        _, unknown = await other.claim(time.time() + LEASE + 1, LEASE, 10)
        assert unknown == 0
    finally:
        await store.aclose()


async def test_a_starts_answer_waits_for_its_own_message_not_for_claims_it_takes_back(
        redis_server, one_redis_url, fake_twilio):
    """send_now's claim, after a claim whose answer was lost, takes those messages back too
    (recover): they go to the drain loop, and the start's answer does not wait for them (here
    four at one a second)."""
    proxy = await DelayingProxy(redis_server.port, slow=is_claim).start()
    store = await Store.open(proxy.url)
    sender = Sender(ACCOUNT_SID, AUTH_TOKEN, fake_twilio.base_url)
    senders = Senders(Outbox(store), sender, Pacing("+15550000030=1"), time.time, no_final)
    try:
        now = time.time()
        for n in range(4):
            await senders.outbox.enqueue(Message(f"OBpaced{n}", "invite", "sms", f"+1201555013{n}",
                                                 {"from": "+15550000030"}, ({"body": "x"},)), now - 1)
        await senders.outbox.enqueue(Message("OBstart", "start", "sms", "+12015550140",
                                             {"from": "+15550000031"}, ({"body": "first"},)), now + HOLD)
        assert await senders.outbox.claim(now - 10, LEASE, 1) == ([], 0)  # (the script loaded)
        proxy.delay = 30 * REDIS_TIMEOUT
        with pytest.raises(RedisError):
            await senders.outbox.claim(now, LEASE, 4)  # ran; its answer lost
        proxy.delay = 0
        started = time.monotonic()
        results = await senders.send_now(["OBstart"])
        assert results["OBstart"].state == "sent"
        assert time.monotonic() - started < 1.0, sorted(results)  # not about 3 s
    finally:
        await sender.close()
        await store.aclose()
        await proxy.close()


async def test_a_messages_next_part_follows_its_first_not_every_message_waiting_for_a_slot(
        redis_url, fake_twilio, monkeypatch):
    """A message's next part goes right after the one before, not behind the messages the worker
    holds waiting for a slot (up to HELD - IN_FLIGHT, within QUEUE_WAIT): the slot is kept
    through its last part."""
    few_slots(monkeypatch, 1, 4)
    store = await Store.open(redis_url)
    try:
        async with running(store, fake_twilio) as (senders, _):
            phones = one_shards_phones(4)
            for phone in phones:
                fake_twilio.delay_for(phone, seconds=0.2)
            parts = ({"body": "one"}, {"body": "two"})
            for n, phone in enumerate(phones):
                await senders.outbox.enqueue(Message(an_id(f"parts{n}", phone), "reply", "sms", phone,
                                                     {"from": "+15550000024"}, parts if n == 0 else parts[:1]),
                                             time.time() - 2 + n / 10)
            senders.wake()
            await eventually(lambda: len(fake_twilio.arrivals) == 5)
            order = [a.to for a in fake_twilio.arrivals]
            assert order[:2] == [phones[0], phones[0]], order
    finally:
        await store.aclose()


async def until_idle(senders: Senders, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await senders.idle():
        assert time.monotonic() < deadline, "the senders were never idle"
        await asyncio.sleep(0.02)


async def queue_replies(outbox: Outbox, name: str, phones: list[str], sender: str) -> list[str]:
    """A one-part reply to each number, due a tenth of a second after the one before (all due
    already): their ids."""
    ids = [an_id(f"{name}{n}", phone) for n, phone in enumerate(phones)]
    for n, (id_, phone) in enumerate(zip(ids, phones, strict=True)):
        await outbox.enqueue(Message(id_, "reply", "sms", phone, {"from": sender}, ({"body": "x"},)),
                             time.time() - 2 + n / 10)
    return ids


@contextlib.asynccontextmanager
async def counting_sent(redis_url: str, fake_twilio):
    """A worker's senders alone (as `running`), on a store of their own: (the senders, the ids
    of the messages they counted as sent, one entry each time)."""
    store = await Store.open(redis_url)
    sent: list[str] = []
    try:
        async with running(store, fake_twilio) as (senders, _):
            senders.on_sent = lambda message, part: sent.append(message.id)
            yield senders, sent
    finally:
        await store.aclose()


def noted_late(outbox: Outbox, seconds: float, fail_first: int = 0) -> list[str]:
    """Make the outbox's notes of Twilio's answers land `seconds` late (the first `fail_first`
    of them failing as a Redis that did not answer, after that wait): the ids noted, in order."""
    real, noted, calls = outbox.finish, [], []

    def finish(claimed, part, outcome, now, **details):
        calls.append(claimed.message.id)

        async def later():
            await asyncio.sleep(seconds)
            if len(calls) <= fail_first and calls.count(claimed.message.id) == 1:
                raise RedisError("no answer in time")
            answer = await real(claimed, part, outcome, now, **details)
            noted.append(claimed.message.id)
            return answer

        return asyncio.ensure_future(later())

    outbox.finish = finish
    return noted


async def test_a_slot_goes_on_to_the_next_message_while_the_last_answer_is_noted(redis_url, fake_twilio,
                                                                                    monkeypatch):
    """With one slot, three messages go one right after the other: a message's last answer is
    noted without the slot (a slow Redis delays the notes, not the requests), and each is noted
    once, counted as sent once, and leaves the outbox."""
    few_slots(monkeypatch, 1, 4)
    async with counting_sent(redis_url, fake_twilio) as (senders, sent):
        noted = noted_late(senders.outbox, 0.5)
        phones = one_shards_phones(3, first=40)
        await queue_replies(senders.outbox, "lane", phones, "+15550000025")
        senders.wake()
        await eventually(lambda: len(fake_twilio.arrivals) == 3)
        assert noted == []  # all three went before the first note landed (0.5 s)
        arrivals = [arrival.at for arrival in fake_twilio.arrivals]
        assert arrivals[-1] - arrivals[0] < 0.4
        await eventually(lambda: len(noted) == 3)
        await until_idle(senders)
        assert sorted(sent) == sorted(noted) and len(set(sent)) == 3
        assert await senders.outbox.pending() == 0 and await senders.outbox.unknown() == []
        assert [a.to for a in fake_twilio.created()] == phones  # each once


async def test_a_note_redis_did_not_answer_is_made_again_and_counts_once(redis_url, fake_twilio, monkeypatch):
    """The note of a message's last answer fails (Redis did not answer): it is made again,
    patiently, without holding the slot; the message is counted as sent once and leaves the
    outbox, and the senders are idle only after that."""
    few_slots(monkeypatch, 1, 4)
    async with counting_sent(redis_url, fake_twilio) as (senders, sent):
        noted = noted_late(senders.outbox, 0.1, fail_first=1)
        phones = one_shards_phones(2, first=50)
        await queue_replies(senders.outbox, "again", phones, "+15550000026")
        senders.wake()
        await eventually(lambda: len(fake_twilio.arrivals) == 2)
        assert not await senders.idle()  # the first note is still to be made again
        await eventually(lambda: len(noted) == 2)
        await until_idle(senders)
        assert sorted(sent) == sorted(noted) and len(set(sent)) == 2
        assert await senders.outbox.pending() == 0 and await senders.outbox.unknown() == []


async def test_a_message_whose_sending_broke_unexpectedly_is_let_go_and_the_lane_goes_on(
        redis_url, fake_twilio, monkeypatch):
    """A defect while a message is sent (here the sender raising what it never should) is
    logged; the worker lets the message go (its claim is no longer held, so a later claim of it
    is not skipped), and the lane goes on with the next message."""
    few_slots(monkeypatch, 1, 4)
    store = await Store.open(redis_url)
    try:
        async with running(store, fake_twilio) as (senders, _):
            phones = one_shards_phones(2, first=60)
            real_send = senders.sender.send

            async def send(channel, phone, *args, **kwargs):
                if phone == phones[0]:
                    raise ValueError("a defect")
                return await real_send(channel, phone, *args, **kwargs)

            senders.sender.send = send
            await queue_replies(senders.outbox, "broke", phones, "+15550000027")
            senders.wake()
            await eventually(lambda: len(fake_twilio.created()) == 1)
            await until_idle(senders)
            assert [a.to for a in fake_twilio.created()] == [phones[1]]
            assert senders.outbox.holding == set()
    finally:
        await store.aclose()


async def test_stopping_senders_wait_for_what_a_last_note_starts(redis_url, fake_twilio, monkeypatch):
    """A message Twilio refused for good is noted after its request; what its end means for the
    conversation (on_final) starts only when that note lands. Senders told to stop then still
    wait for it, within their grace."""
    few_slots(monkeypatch, 1, 4)
    store = await Store.open(redis_url)
    ended: list[str] = []

    async def final(message, result) -> None:
        await asyncio.sleep(0.3)
        ended.append(f"{message.to} {result.state} {result.code}")

    sender = Sender(ACCOUNT_SID, AUTH_TOKEN, fake_twilio.base_url)
    senders = Senders(Outbox(store), sender, Pacing("off"), time.time, final)
    noted = noted_late(senders.outbox, 0.3)
    run = asyncio.create_task(senders.run())
    try:
        [phone] = one_shards_phones(1, first=70)
        fake_twilio.fail_for(phone, status=400, code=21211)
        await senders.outbox.enqueue(a_reply("refused", phone, "+15550000028"), time.time() - 1)
        senders.wake()
        await eventually(lambda: len(fake_twilio.arrivals) == 1)
        await senders.stop(run, grace=3.0)
        assert noted and ended == [f"{phone} failed 21211"]
    finally:
        await sender.close()
        await store.aclose()


async def test_batched_calls_written_at_once_are_sent_again_on_a_lost_connection_and_load_a_lost_script(
        redis_server, one_redis_url):
    """A batch of BEGIN or FINISH calls leaves at once on the live connection. When that
    connection breaks under it, or Redis no longer has the script (restarted, or SCRIPT FLUSH),
    the batch goes the slower way, which connects again or loads the script: its callers get
    their answers all the same."""
    cut = {"left": 1}

    def first_begin(command: list[bytes]) -> bool:
        if len(command) > 1 and command[0].upper() == b"EVALSHA" and command[1] == OUTBOX_BEGIN.sha.encode() \
                and cut["left"]:
            cut["left"] -= 1
            return True
        return False

    proxy = await DelayingProxy(redis_server.port, slow=first_begin).start()
    store = await Store.open(proxy.url)
    written_at_once: list[bool] = []
    send_now = store.mux.send_now

    def counted_send_now(*args):
        reply = send_now(*args)
        written_at_once.append(reply is not None)
        return reply

    store.mux.send_now = counted_send_now
    try:
        sender, phones = Outbox(store), one_shards_phones(3)
        for n, phone in enumerate(phones):
            await sender.enqueue(a_reply(f"now{n}", phone, "+15550000029"), 100.0)
        claimed = sorted((await sender.claim(101.0, LEASE, 10))[0], key=lambda c: c.message.id)
        assert len(claimed) == 3
        proxy.swallow = True  # the first BEGIN's connection breaks with it unsent
        assert await sender.begin(claimed[0], 0, 0, 200.0) == 0
        assert proxy.held == 1 and cut["left"] == 0
        proxy.swallow = False
        await store.redis.script_flush()  # (through another connection: Redis forgets every script)
        assert await asyncio.gather(*(sender.begin(c, 0, 0, 200.0) for c in claimed[1:])) == [0, 0]
        await store.redis.script_flush()
        noted = await asyncio.gather(*(sender.finish(c, 0, "sent", 102.0, sid=f"SM{n}", paced=False)
                                       for n, c in enumerate(claimed)))
        assert noted == [True, True, True]
        assert await sender.pending() == 0
        assert written_at_once == [True, True, True]  # one BEGIN, one BEGIN of two, one FINISH of three
    finally:
        await store.aclose()
        await proxy.close()


async def redis_contents(store: Store) -> dict[str, object]:
    """Every key of one Redis and what it holds (its TTL aside)."""
    read = {"hash": store.redis.hgetall, "set": store.redis.smembers, "string": store.redis.get,
            "zset": lambda key: store.redis.zrange(key, 0, -1, withscores=True),
            "list": lambda key: store.redis.lrange(key, 0, -1)}
    return {key: await read[await store.redis.type(key)](key) for key in sorted(await store.redis.keys("*"))}


async def test_a_full_redis_refuses_the_outbox_scripts_whole_and_no_message_is_lost_or_sent_twice(
        tmp_path, fake_twilio, monkeypatch):
    """A Redis at its maxmemory (noeviction, as shipped) refuses a script at its first write, and
    the outbox's scripts write at their end: a refused claim, BEGIN or FINISH changes nothing.
    Senders whose last note is refused repeat it; once Redis has room again every message has
    been sent once, and none is left unknown."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    store = await Store.open(server.url)
    try:
        room = (await store.redis.config_get("maxmemory"))["maxmemory"]

        async def full(is_full: bool) -> None:
            await store.redis.config_set("maxmemory", 1 if is_full else room)

        outbox, phones = Outbox(store), one_shards_phones(5, first=60)
        messages = [a_reply(f"full{n}", phone, "+15550000033") for n, phone in enumerate(phones[:3])]
        for message in messages:
            await outbox.enqueue(message, 100.0)
        for script in (OUTBOX_CLAIM, OUTBOX_BEGIN, OUTBOX_FINISH):
            await store.redis.script_load(script.text)

        async def refused_whole(call) -> None:
            before = await redis_contents(store)
            await full(True)
            with pytest.raises(RedisError, match="OOM"):
                await call()
            assert await redis_contents(store) == before
            await full(False)

        await refused_whole(lambda: outbox.claim(100.0, LEASE, 10))
        claimed, _ = await outbox.claim(100.0, LEASE, 10)
        assert len(claimed) == 3
        await refused_whole(lambda: asyncio.gather(*(outbox.begin(c, 0, 0, 110.0 + LEASE) for c in claimed)))
        assert await asyncio.gather(*(outbox.begin(c, 0, 0, 110.0 + LEASE) for c in claimed)) == [0, 0, 0]
        await refused_whole(lambda: asyncio.gather(*(outbox.finish(c, 0, "sent", 111.0, sid=f"SM{n}")
                                                     for n, c in enumerate(claimed))))
        assert await asyncio.gather(*(outbox.finish(c, 0, "sent", 111.0, sid=f"SM{n}")
                                      for n, c in enumerate(claimed))) == [True] * 3
        assert await outbox.pending() == 0

        monkeypatch.setattr(runtime_outbox, "PATIENCE", 10.0)
        async with running(store, fake_twilio) as (senders, _):
            late = phones[3:]
            for n, phone in enumerate(late):
                fake_twilio.delay_for(phone, seconds=0.5)
                await senders.outbox.enqueue(a_reply(f"fuller{n}", phone, "+15550000033"), time.time() - 1)
            senders.wake()
            await eventually(lambda: len(fake_twilio.arrivals) == 2)  # begun, asked of Twilio
            await full(True)
            await asyncio.sleep(1.0)  # answered, their notes refused (and repeated)
            assert await senders.outbox.pending() == 2
            await full(False)
            await eventually(lambda: not senders.outbox.holding, timeout=5)
            assert await senders.outbox.pending() == 0 and await senders.outbox.unknown() == []
            assert sorted(a.to for a in fake_twilio.created()) == sorted(late)
    finally:
        await store.aclose()
        server.stop()
