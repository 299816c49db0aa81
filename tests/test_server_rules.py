"""The core's conversation rules through the real server and a real Redis: the open survey's
access code racing an admin start, strangers (one reply a day, a one-day record), and a
reminder Twilio refused (not counted as sent)."""

from __future__ import annotations

import asyncio
import json

from conftest import LAYOUT, admin_headers, eventually
from fake_twilio import Phone

from engine.redis.store import REPLIES_TTL

DAY = 86400
TEXT_FIRST = """survey: text-first
access_code: "@TEXT"
flow:
  - ask: why
    type: text
    prompt: Why did you come today?
  - ask: score
    type: nps
    prompt: How likely are you to come back? Reply 0-10.
"""


async def start(client, survey: str, to: str, channel: str = "sms", **fields):
    return await client.post(f"/admin/surveys/{survey}/start", headers=admin_headers(),
                             json={"to": to, "channel": channel, "fields": fields})


async def respondent_of(client, number: str, channel: str = "sms") -> dict | None:
    response = await client.get(f"/admin/sessions/{number}", headers=admin_headers())
    assert response.status == 200
    return (await response.json())["channels"][channel]["respondent"]


async def test_an_access_code_racing_an_admin_start_is_never_an_answer(make_client, settings, flows_dir):
    (flows_dir / "text_first.yaml").write_text(TEXT_FIRST)
    client = await make_client(settings)
    races, admin_won = 150, 0
    async def text_after(number: str, delay: float) -> list[str]:
        await asyncio.sleep(delay)
        return await Phone(client, number).send("@TEXT")

    for i in range(races):
        number = f"+1555120{i:04d}"
        # The start checks the records database's opt-outs before it steps: give the text a
        # head start of 0 to 9 ms so that either can win.
        started, replies = await asyncio.gather(start(client, "text-first", number),
                                                text_after(number, (i % 10) / 1000))
        admin_won += started.status == 201
        assert replies == ["Why did you come today?"]  # the first question, whoever won
        session = (await respondent_of(client, number))["session"]
        assert (session["state"], session["answers"], session["attempts"]) == ("why", {}, 0), number
    assert admin_won > 0  # the race this guards against did happen


async def test_strangers_get_one_reply_a_day_and_leave_a_one_day_record(client, clock, redis_sync):
    phone = Phone(client, "+15551239000")
    assert await phone.send("hi") == ["You are not currently taking a survey."]
    assert await phone.send("hello?") == []  # empty TwiML: nothing sent, nothing paid
    clock.advance(DAY - 60)
    assert await phone.send("anyone?") == []
    clock.advance(60)
    assert await phone.send("hi") == ["You are not currently taking a survey."]
    assert 0 < redis_sync.ttl(LAYOUT.respondent("sms", "+15551239000")) <= DAY
    assert await Phone(client, "+15551239000").send("HELP")  # HELP is always answered


def data_memory(redis_sync) -> int:
    """What Redis holds, less what a cluster's masters keep for their replicas (a backlog that
    fills up to its fixed size whatever the keys)."""
    redis_sync.memory_purge()
    memory = redis_sync.info("memory")
    return memory["used_memory"] - memory.get("mem_total_replication_buffers", 0)


async def test_ten_thousand_strangers_leave_bounded_memory(client, redis_sync):
    """Each stranger leaves one key for a day, its record with the mark of its message, and for
    a minute the reply (so that a redelivery gets the same answer), nothing longer."""
    strangers = 10_000
    before = data_memory(redis_sync)
    for start_at in range(0, strangers, 200):
        numbers = [f"+1555{n:07d}" for n in range(start_at, start_at + 200)]
        replies = await asyncio.gather(*(Phone(client, number).send("hi") for number in numbers))
        assert all(r == ["You are not currently taking a survey."] for r in replies)
    per_stranger = (data_memory(redis_sync) - before) / strangers
    sample = [f"+1555{n:07d}" for n in range(0, strangers, 100)]
    record = sum(redis_sync.memory_usage(LAYOUT.respondent("sms", n)) for n in sample) / len(sample)
    print(f"\n{strangers} strangers: {per_stranger:.0f} bytes each, its reply kept (its record {record:.0f})")
    ttls = {key: redis_sync.ttl(key) for key in redis_sync.scan_iter("cv:{*", count=1000) if "sms:+1555" in key}
    records = {key: ttl for key, ttl in ttls.items() if key.endswith(":r")}
    assert len(records) == strangers and all(0 < ttl <= DAY for ttl in records.values())
    kept = {key: ttl for key, ttl in ttls.items() if key not in records}
    assert all(key.endswith(":replies") and 0 < ttl <= REPLIES_TTL for key, ttl in kept.items())
    assert per_stranger < 600  # what bounds the total is the TTLs above: a day of strangers at most


async def test_a_reminder_twilio_refused_is_not_counted_as_sent(make_client, settings, clock, fake_twilio):
    client = await make_client(settings, timer_interval=0.02)
    number = "+15551239100"
    assert (await start(client, "invite", number, FirstName="Ana")).status == 201
    fake_twilio.refuse[number] = (30003, "Unreachable destination handset")
    clock.advance(31 * 60)
    await eventually(lambda: len(fake_twilio.messages) == 2)  # the reminder was tried ...
    for _ in range(100):  # ... and taken back from the session
        session = (await respondent_of(client, number))["session"]
        if not session["reminded"]:
            break
        await asyncio.sleep(0.01)
    assert (session["reminded"], session["messages_out"], session["segments_out"]) == (False, 1, 1)
    metrics = (await (await client.get("/metrics")).text()).splitlines()
    assert 'canvass_messages_out_total{channel="sms"} 1' in metrics
    assert "canvass_sms_segments_out_total 1" in metrics
    assert 'canvass_send_failures_total{channel="sms"} 1' in metrics


async def test_a_reminder_to_an_unsubscribed_number_opts_it_out_uncounted(make_client, settings, clock,
                                                                          fake_twilio):
    client = await make_client(settings, timer_interval=0.02)
    number = "+15551239101"
    assert (await start(client, "invite", number, FirstName="Ana")).status == 201
    fake_twilio.refuse[number] = (21610, "Attempt to send to unsubscribed recipient")
    clock.advance(31 * 60)
    for _ in range(300):  # the reminder is refused, then taken back, in the background
        if (await respondent_of(client, number))["opted_out"]:
            break
        await asyncio.sleep(0.01)
    assert (await respondent_of(client, number))["opted_out"] is True
    # the closed response, in Redis or already archived into the records database: the export
    answer = await client.get("/admin/responses/invite?format=jsonl", headers=admin_headers())
    [record] = [json.loads(line) for line in (await answer.text()).splitlines()]
    assert record["status"] == "opted_out" and record["messages_out"] == 1, record
