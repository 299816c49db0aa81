"""Reminders and expiry through the timer task (injected clock), and WhatsApp's 24-hour window."""

from __future__ import annotations

import asyncio
import json

from conftest import admin_headers, eventually
from fake_twilio import Phone

from server import RESPONSES, STORE

TEMPLATE = "HX00000000000000000000000000000001"
REMINDER = "Still there? Reply 1 for yes or 2 for no."
FAST = 0.02  # timer interval in these tests, seconds


async def start(client, survey: str, to: str, channel: str = "sms", **fields):
    return await client.post(f"/admin/surveys/{survey}/start", headers=admin_headers(),
                             json={"to": to, "channel": channel, "fields": fields})


async def settle() -> None:
    """Long enough for several timer sweeps."""
    await asyncio.sleep(FAST * 10)


async def responses(client, survey: str) -> list[dict]:
    """The survey's response records, archived or not (the archiver runs every FAST seconds too)."""
    return [record async for _, record in client.app[RESPONSES].responses(survey)]


async def test_the_timer_task_sends_one_reminder_then_expires_the_session(make_client, settings, clock,
                                                                           fake_twilio, redis_sync):
    client = await make_client(settings, timer_interval=FAST)
    assert (await start(client, "invite", "+15551230201", FirstName="Ana")).status == 201
    clock.advance(29 * 60)
    await settle()
    assert len(fake_twilio.messages) == 1
    clock.advance(2 * 60)
    await eventually(lambda: len(fake_twilio.messages) == 2)
    assert fake_twilio.messages[1].body == REMINDER and fake_twilio.messages[1].to == "+15551230201"
    await settle()
    assert len(fake_twilio.messages) == 2
    clock.advance(2 * 3600)
    for _ in range(300):
        if await responses(client, "invite"):
            break
        await asyncio.sleep(0.01)
    [response] = await responses(client, "invite")
    assert response["status"] == "expired"
    assert redis_sync.zcard("cv:timers") == 0
    assert await Phone(client, "+15551230201").send("1") == ["You are not currently taking a survey."]


async def test_two_workers_send_a_due_reminder_once(make_client, settings, clock, fake_twilio):
    workers = [await make_client(settings, timer_interval=FAST / 4) for _ in range(2)]
    for n in range(5):
        assert (await start(workers[n % 2], "invite", f"+1555123021{n}")).status == 201
    clock.advance(31 * 60)
    await eventually(lambda: len(fake_twilio.messages) == 10)
    await settle()
    reminders = sorted(m.to for m in fake_twilio.messages if m.body == REMINDER)
    assert reminders == [f"+1555123021{n}" for n in range(5)]


async def test_a_claimed_timer_of_a_crashed_worker_fires_after_the_lease(make_client, settings, clock,
                                                                         fake_twilio):
    client = await make_client(settings, timer_interval=FAST)
    await start(client, "invite", "+15551230220")
    clock.advance(31 * 60)
    # another worker claims the due timer and dies before handling it
    assert (await client.server.app[STORE].claim_due(clock(), 60.0, 10))[0] == [("sms", "+15551230220")]
    await settle()
    assert len(fake_twilio.messages) == 1
    clock.advance(61)
    await eventually(lambda: len(fake_twilio.messages) == 2)
    assert fake_twilio.messages[1].body == REMINDER


async def test_whatsapp_start_outside_the_window_needs_a_template(client, fake_twilio, redis_sync):
    response = await start(client, "invite", "+15551230230", channel="whatsapp")
    assert response.status == 409
    assert (await response.json())["error"] == "whatsapp_window"
    assert fake_twilio.messages == [] and redis_sync.keys("cv:{*") == []
    response = await start(client, "templated", "+15551230230", channel="whatsapp", FirstName="Ana")
    assert response.status == 201
    [sent] = fake_twilio.messages
    assert sent.form["To"] == "whatsapp:+15551230230"
    assert sent.form["ContentSid"] == TEMPLATE and "Body" not in sent.form
    assert json.loads(sent.form["ContentVariables"]) == {"FirstName": "Ana"}
    assert sent.form["MessagingServiceSid"] == "MG00000000000000000000000000000001"


async def test_whatsapp_start_inside_the_window_sends_free_form_text(client, fake_twilio):
    await Phone(client, "+15551230231", channel="whatsapp").send("hello")
    response = await start(client, "invite", "+15551230231", channel="whatsapp", FirstName="Bo")
    assert response.status == 201
    [sent] = fake_twilio.messages
    assert sent.form["To"] == "whatsapp:+15551230231"
    assert sent.form["Body"].startswith("Hi Bo, did your delivery arrive?")
    metrics = await (await client.get("/metrics")).text()
    assert "canvass_sms_segments_out_total 0" in metrics  # WhatsApp has no segments


async def test_a_whatsapp_reminder_outside_the_window_is_skipped_without_a_template(
        make_client, settings, clock, fake_twilio, caplog):
    client = await make_client(settings, timer_interval=FAST)
    await Phone(client, "+15551230232", channel="whatsapp").send("hello")
    clock.advance(23 * 3600 + 50 * 60)
    assert (await start(client, "invite", "+15551230232", channel="whatsapp")).status == 201
    clock.advance(31 * 60)  # the reminder is due 24 h 21 min after the respondent's message
    await eventually(lambda: "outside the 24-hour window" in caplog.text)
    assert [m.body for m in fake_twilio.messages] == [fake_twilio.messages[0].body]
    session = (await (await client.get("/admin/sessions/+15551230232", headers=admin_headers())).json())
    stored = session["channels"]["whatsapp"]["respondent"]["session"]
    assert stored["reminded"] is False  # the reminder never went out: not counted (issue 10)
    assert stored["messages_out"] == 1  # the first question only


async def test_a_whatsapp_reminder_outside_the_window_uses_the_template(make_client, settings, clock,
                                                                         fake_twilio):
    client = await make_client(settings, timer_interval=FAST)
    assert (await start(client, "templated", "+15551230233", channel="whatsapp")).status == 201
    clock.advance(31 * 60)
    await eventually(lambda: len(fake_twilio.messages) == 2)
    assert [m.form.get("ContentSid") for m in fake_twilio.messages] == [TEMPLATE, TEMPLATE]
