"""Attacks on the outbox, the distributor and the distributions API: races of Twilio's status
callbacks with the sender, reminders held by quiet hours, and admin input at the edges."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import admin_headers
from fake_twilio import Phone
from test_distribution_sending import distribute, import_list, recipients, status_form, work

from server import SERVICE

HELD = """\
survey: nightly
title: A reminder held overnight
expires_after: 2d
remind_after: 10m
fields: [FirstName]

flow:
  - ask: score
    type: nps
    prompt: Hi ${e://Field/FirstName}! How likely are you to recommend us? Reply 0-10.
  - ask: reason
    type: text
    prompt: What is the main reason for your score?
"""


@pytest.fixture
async def api(make_client, settings, records_url, flows_dir):
    (flows_dir / "nightly.yaml").write_text(HELD)
    client = await make_client(dataclasses.replace(settings, database_url=records_url))
    client.records_url = records_url
    return client


@pytest.mark.parametrize("send_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_a_send_at_out_of_the_calendar_is_a_400_not_a_500(api, send_at):
    await import_list(api)
    answer = await api.post("/admin/distributions", headers=admin_headers(),
                            json={"survey": "feedback", "list": "people", "send_at": send_at})
    assert answer.status == 400, await answer.text()
    assert (await answer.json())["error"] in ("bad_send_at", "send_at_past")


async def test_a_delivery_status_that_beats_the_senders_note_still_reaches_the_recipient(api):
    """Twilio may call back (sent, delivered) before the sender has noted the message it just
    created: the status must still move the distribution's recipient."""
    await import_list(api, "Phone,FirstName\n+12015550101,Al\n")
    distribution = await distribute(api)
    outbox = api.server.app[SERVICE].senders.outbox
    finish = outbox.finish  # where the sender notes the message queued

    async def callback_first(claimed, part, outcome, now, **details):
        if details.get("sid"):
            phone = claimed.message.to
            answer = await Phone(api, phone).post(status_form(details["sid"], phone, "delivered"),
                                                  path="/twilio/status")
            assert answer.status == 204
        return await finish(claimed, part, outcome, now, **details)

    outbox.finish = callback_first
    await work(api, rounds=2)
    [(state, *_)] = (await recipients(api, distribution)).values()
    assert state == "delivered"


@pytest.mark.parametrize("then", ["completes", "opts_out"])
async def test_a_reminder_held_for_quiet_hours_is_not_sent_once_the_session_moved_on(api, fake_twilio, clock,
                                                                                   then):
    await import_list(api, "Phone,FirstName\n+12015550101,Al\n")
    # START_TIME is 17:13 in New York: inside 09:00-17:20; the reminder, due 17:23, is not
    await distribute(api, survey="nightly", quiet_hours={"from": "09:00", "to": "17:20"})
    await work(api)
    assert len(fake_twilio.messages) == 1
    clock.advance(10 * 60)
    await api.server.app[SERVICE].sweep()  # the reminder is committed, held until 09:00
    await work(api)
    assert len(fake_twilio.messages) == 1
    phone = Phone(api, "+12015550101")
    if then == "completes":
        await phone.send("9")
        await phone.send("Fast")
    else:
        await phone.send("STOP")
    sent = len(fake_twilio.messages)
    clock.advance(16 * 3600)  # the next morning, inside the window
    api.server.app[SERVICE].senders.wake()
    await work(api)
    assert len(fake_twilio.messages) == sent, fake_twilio.bodies()


async def test_a_cancel_during_a_round_sends_nothing_to_a_recipient_it_reports_cancelled(api, fake_twilio):
    await import_list(api)
    distribution = await distribute(api)
    service = api.server.app[SERVICE]
    invite, cancelled = service.invite, []

    async def cancel_first(*args, **kwargs):
        if not cancelled:  # the operator cancels while the round is under way
            cancelled.append(True)
            answer = await api.post(f"/admin/distributions/{distribution}/cancel", headers=admin_headers())
            assert answer.status == 200
        return await invite(*args, **kwargs)

    service.invite = cancel_first
    await work(api, rounds=2)
    states = await recipients(api, distribution)
    invited = {message.to for message in fake_twilio.messages}
    assert not [phone for phone, state in states.items() if state[0] == "cancelled" and phone in invited]
