"""The Twilio webhook: signatures, conversations, exactly-once delivery and bad input."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import LAYOUT
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, Phone, replies_of

from engine.conversation import Respondent
from engine.redis.store import (
    MARK_LENGTH,
    MARKS,
    sid_mark,
    split_record,
)
from engine.runtime.twilio import sign
from server import SERVICE, STORE

SCORE_PROMPT = "Hi ! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."
REASON_PROMPT = "What is the main reason for your score?"
VISIT_PROMPT = "What did you shop for?\n1. Groceries\n2. Clothing"


def record(redis_sync, channel: str, number: str) -> Respondent | None:
    stored, _ = split_record(redis_sync.get(LAYOUT.respondent(channel, number)))
    return Respondent.loads(stored, channel, number) if stored else None


def revision(redis_sync, channel: str, number: str) -> int:
    return int(split_record(redis_sync.get(LAYOUT.respondent(channel, number)))[1])


def hold_first_reads(client, parties: int) -> None:
    """Make the next `parties` reads of the store wait for each other, so that every one of
    those steps starts from the same revision and all but one commit must retry. (The
    service forgets what it committed last, so that every delivery reads.)"""
    client.server.app[SERVICE].recent.clear()
    store = client.server.app[STORE]
    barrier, read, calls = asyncio.Barrier(parties), store.read, 0

    async def held(*args, **kwargs):
        nonlocal calls
        snapshot = await read(*args, **kwargs)
        calls += 1
        if calls <= parties:
            await barrier.wait()
        return snapshot

    store.read = held


def stored_responses(redis_sync, survey: str) -> list[dict]:
    """The survey's closed responses still in Redis (on a Cluster, every shard's stream, which
    the shard's surveys share)."""
    streams = sorted({LAYOUT.responses(shard, survey) for shard in LAYOUT.shards})
    found = [json.loads(fields["r"]) for stream in streams for _, fields in redis_sync.xrange(stream)]
    return [response for response in found if response["survey"] == survey]


async def test_a_conversation_by_access_code_runs_to_its_end_and_leaves_a_response(phone, redis_sync):
    assert await phone.send("@feed") == [SCORE_PROMPT]
    assert await phone.send("9") == [REASON_PROMPT]
    assert await phone.send("Friendly staff") == [VISIT_PROMPT]
    assert await phone.send("2") == ["Thanks for your feedback!"]
    assert await phone.send("hello") == ["You are not currently taking a survey."]
    [response] = stored_responses(redis_sync, "feedback")
    assert response["status"] == "complete"
    assert response["answers"] == {"score": 9, "reason": "Friendly staff",
                                   "visit": {"code": "2", "label": "Clothing"}}
    assert response["phone"] == phone.number and response["channel"] == "sms"
    assert record(redis_sync, "sms", phone.number).session is None
    assert redis_sync.zcard(LAYOUT.timers(LAYOUT.shard("sms", phone.number))) == 0


async def test_replies_carry_the_status_callback_address(phone):
    response = await phone.post(phone.form("@feed"))
    assert f'action="{PUBLIC_BASE_URL}/twilio/status"' in await response.text()


@pytest.mark.parametrize("signature", [
    pytest.param("", id="missing"),
    pytest.param("bm90IGEgc2lnbmF0dXJl", id="forged"),
    pytest.param(sign("another-token", PUBLIC_BASE_URL + "/twilio/messages", {}), id="other-token"),
])
async def test_a_bad_signature_is_refused_and_stores_nothing(client, redis_sync, signature):
    phone = Phone(client, "+15551230002")
    response = await phone.post(phone.form("@feed"), signature=signature)
    assert response.status == 403
    assert redis_sync.keys("cv:{*") == []


async def test_a_signature_must_cover_the_public_address_and_the_exact_form(client, redis_sync):
    phone = Phone(client, "+15551230002")
    form = phone.form("@feed")
    local_url = str(client.make_url("/twilio/messages"))
    response = await phone.post(form, signature=sign(AUTH_TOKEN, local_url, form))
    assert response.status == 403
    tampered = dict(form, Body="STOP")
    response = await phone.post(tampered, signature=sign(AUTH_TOKEN, PUBLIC_BASE_URL + "/twilio/messages", form))
    assert response.status == 403
    assert redis_sync.keys("cv:{*") == []


async def test_a_redelivered_message_gets_the_same_reply_and_changes_nothing(phone, redis_sync, client):
    await phone.send("@feed")
    form = phone.form("7", sid="SM" + "a" * 32)
    first = await (await phone.post(form)).text()
    before = (revision(redis_sync, "sms", phone.number), record(redis_sync, "sms", phone.number))
    again = await (await phone.post(form)).text()
    assert again == first and replies_of(first) == [REASON_PROMPT]
    assert (revision(redis_sync, "sms", phone.number), record(redis_sync, "sms", phone.number)) == before
    # the conversation's key: its record, then the marks of the access code's message and this
    # one (newest first); beside it for a minute, their replies; and the redelivery's claim
    assert sorted(redis_sync.keys(LAYOUT.conversation("sms", phone.number) + "*")) == [
        LAYOUT.claims("sms", phone.number), LAYOUT.respondent("sms", phone.number), LAYOUT.replies("sms", phone.number)]
    marks = redis_sync.get(LAYOUT.respondent("sms", phone.number)).partition(MARKS)[2]
    assert len(marks) == 2 * MARK_LENGTH and marks.startswith(sid_mark("SM" + "a" * 32))
    assert redis_sync.hget(LAYOUT.replies("sms", phone.number), marks[:MARK_LENGTH]) == REASON_PROMPT
    metrics = await (await client.get("/metrics")).text()
    assert "canvass_duplicate_webhooks_total 1" in metrics


async def test_concurrent_deliveries_of_one_message_are_applied_once(phone, redis_sync, client):
    await phone.send("@feed")
    form = phone.form("8")
    hold_first_reads(client, 6)
    responses = await asyncio.gather(*(phone.post(form) for _ in range(6)))
    bodies = {await r.text() for r in responses}
    assert [r.status for r in responses] == [200] * 6
    assert len(bodies) == 1 and replies_of(bodies.pop()) == [REASON_PROMPT]
    assert record(redis_sync, "sms", phone.number).session.answers == {"score": 8}
    assert revision(redis_sync, "sms", phone.number) == 2
    metrics = await (await client.get("/metrics")).text()
    assert "canvass_commit_conflicts_total 5" in metrics
    assert "canvass_duplicate_webhooks_total 5" in metrics


async def test_two_messages_from_one_number_at_once_are_both_applied_in_turn(phone, redis_sync, client):
    await phone.send("@feed")
    hold_first_reads(client, 2)
    first, second = await asyncio.gather(phone.send("9"), phone.send("7"))
    assert sorted([first, second]) == sorted([[REASON_PROMPT], [VISIT_PROMPT]])
    answers = record(redis_sync, "sms", phone.number).session.answers
    score_first = "9" if first == [REASON_PROMPT] else "7"
    other = "7" if score_first == "9" else "9"
    assert answers == {"score": int(score_first), "reason": other}
    assert revision(redis_sync, "sms", phone.number) == 3
    assert "canvass_commit_conflicts_total 1" in await (await client.get("/metrics")).text()


async def test_stop_gets_no_reply_and_silences_the_number_until_start(phone, redis_sync):
    await phone.send("@feed")
    assert await phone.send("STOP") == []
    assert await phone.send("@feed") == []
    assert record(redis_sync, "sms", phone.number).opted_out
    assert redis_sync.ttl(LAYOUT.respondent("sms", phone.number)) == -1  # an opt-out is never forgotten
    [response] = stored_responses(redis_sync, "feedback")
    assert response["status"] == "opted_out"
    assert await phone.send("START") == ["You have been resubscribed. Reply STOP to opt out."]
    assert await phone.send("@feed") == [SCORE_PROMPT]


async def test_whatsapp_and_sms_of_one_number_are_separate_conversations(client, redis_sync):
    sms, whatsapp = Phone(client, "+15551230003"), Phone(client, "+15551230003", channel="whatsapp")
    assert await whatsapp.send("@FEED") == [SCORE_PROMPT]
    assert await sms.send("9") == ["You are not currently taking a survey."]
    assert await whatsapp.send("9") == [REASON_PROMPT]
    assert record(redis_sync, "whatsapp", "+15551230003").session.answers == {"score": 9}
    assert record(redis_sync, "sms", "+15551230003").session is None


BAD_FORMS = [
    pytest.param({"MessageSid": "SM1", "Body": "hi"}, "From", id="no-from"),
    pytest.param({"MessageSid": "SM1", "From": "+15551230004"}, "Body", id="no-body"),
    pytest.param({"From": "+15551230004", "Body": "hi"}, "MessageSid", id="no-sid"),
    pytest.param({"MessageSid": "SM1", "From": "not a number", "Body": "hi"}, "From", id="bad-from"),
]


@pytest.mark.parametrize("form, named", BAD_FORMS)
async def test_a_signed_webhook_missing_a_field_is_a_400(client, redis_sync, form, named):
    form = {"AccountSid": ACCOUNT_SID, **form}
    response = await Phone(client, "+15551230004").post(form)
    assert response.status == 400
    assert named in await response.text()
    assert redis_sync.keys("cv:{*") == []


@pytest.mark.parametrize("content_type, data", [
    ("application/x-www-form-urlencoded", b"\xff\xfe\x00garbage"),
    ("multipart/form-data; boundary=x", b"garbage"),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="Body"; filename="a"\r\n\r\nabc\r\n--x--\r\n'),
])
async def test_an_unreadable_form_is_a_400(client, redis_sync, content_type, data):
    response = await client.post("/twilio/messages", data=data, headers={"Content-Type": content_type})
    assert response.status == 400
    assert redis_sync.keys("cv:{*") == []


async def test_a_body_over_64_kib_is_a_413(phone):
    response = await phone.post(phone.form("x" * (65 * 1024)))
    assert response.status == 413


@pytest.mark.parametrize("content_type, data", [
    ("application/json", b'{"From": "+15551230005", "Body": "hi", "MessageSid": "SM1"}'),
    ("text/plain", b"From=+15551230005"),
])
async def test_a_body_that_is_not_a_form_is_a_415(client, content_type, data):
    response = await client.post("/twilio/messages", data=data, headers={"Content-Type": content_type})
    assert response.status == 415


@pytest.mark.parametrize("stored, logged", [
    ("1|{not json", "not a stored respondent: {not json"),
    ("1|[9,null,1]", "not a stored respondent: format 9 is unknown (this version reads 2)"),
    ("[2]", "not a stored respondent record: [2]"),
])
async def test_an_unreadable_record_is_a_plain_500_without_details_and_logged(phone, redis_sync, caplog,
                                                                              stored, logged):
    redis_sync.set(LAYOUT.respondent("sms", phone.number), stored)
    response = await phone.post(phone.form("hello"))
    assert response.status == 500
    assert await response.text() == "Internal server error.\n"
    assert logged in caplog.text
    assert redis_sync.get(LAYOUT.respondent("sms", phone.number)) == stored
