"""Distributions sent: the distributor invites the recipients through the outbox, Twilio's
answers and delivery statuses move them forwards, skips are decided at send time, quiet hours
hold invitations back, and responses carry their distribution."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime

from conftest import START_TIME, admin_headers
from fake_twilio import UNSUBSCRIBED, Phone
from sqlalchemy import select
from test_distributions import import_list as import_contacts

from engine.records.database import connect
from engine.records.schema import distribution_recipients, distributions, responses
from server import ARCHIVER, DISTRIBUTOR, SERVICE

CONTACTS = ("Phone,Email,FirstName\n"
            "+12015550101,a@example.com,Al\n"
            "+12015550102,,Bo\n"
            "+447400123456,,Cy\n")


async def import_list(client, body: str = CONTACTS) -> None:
    await import_contacts(client, body=body)


async def distribute(client, **extra) -> str:
    answer = await client.post("/admin/distributions", headers=admin_headers(),
                               json={"survey": "feedback", "list": "people", **extra})
    assert answer.status == 201, await answer.text()
    return (await answer.json())["id"]


async def work(client, rounds: int = 1) -> None:
    """What the background tasks do, now: distributor rounds, the outbox drained, the
    reports archived."""
    app = client.server.app
    for _ in range(rounds):
        await app[DISTRIBUTOR].round()
        deadline = time.monotonic() + 15
        while not await app[SERVICE].senders.idle():
            assert time.monotonic() < deadline, "the outbox was never drained"
            await asyncio.sleep(0.02)
        await app[ARCHIVER].archive_once()


async def recipients(client, distribution: str) -> dict[str, tuple]:
    engine = connect(client.records_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(distribution_recipients).where(
                distribution_recipients.c.distribution_id == distribution))).all()
    finally:
        await engine.dispose()
    return {row.phone: (row.state, row.reason, row.sid, row.error_code, row.not_before) for row in rows}


async def status_of(client, distribution: str) -> dict:
    answer = await client.get(f"/admin/distributions/{distribution}", headers=admin_headers())
    assert answer.status == 200
    return await answer.json()


def status_form(sid: str, to: str, status: str, error_code: str | None = None) -> dict[str, str]:
    form = {"MessageSid": sid, "MessageStatus": status, "To": to, "From": "+15550000000"}
    if error_code:
        form["ErrorCode"] = error_code
    return form


async def test_a_distribution_invites_every_recipient_once_and_follows_them_to_delivery(api, fake_twilio):
    await import_list(api)
    distribution = await distribute(api)
    await work(api)
    assert sorted(fake_twilio.bodies()) == sorted(
        f"Hi {name}! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."
        for name in ("Al", "Bo", "Cy"))
    states = await recipients(api, distribution)
    sids = {message.to: message for message in fake_twilio.messages}
    assert {phone: state[0] for phone, state in states.items()} == dict.fromkeys(states, "sent")
    assert all(state[2] and state[2].startswith("SM") for state in states.values())
    # delivery statuses move recipients forwards; a late `sent` does not move one back
    sid = states["+12015550101"][2]
    for status in ("delivered", "sent"):
        answer = await Phone(api, "+12015550101").post(status_form(sid, "+12015550101", status),
                                                       path="/twilio/status")
        assert answer.status == 204
    failed = states["+12015550102"][2]
    await Phone(api, "+12015550102").post(status_form(failed, "+12015550102", "undelivered", "30003"),
                                          path="/twilio/status")
    await work(api)
    states = await recipients(api, distribution)
    assert states["+12015550101"][0] == "delivered"
    assert states["+12015550102"][:4] == ("undelivered", "twilio_30003", failed, 30003)
    described = await status_of(api, distribution)
    assert described["status"] == "done"
    assert (described["counts"]["delivered"], described["counts"]["undelivered"], described["counts"]["sent"]) == (1, 1, 1)
    assert len(sids) == 3 and len(fake_twilio.messages) == 3  # nobody twice, whatever the rounds
    # the respondent answers: the response carries the distribution and the contact's fields
    phone = Phone(api, "+12015550101")
    assert await phone.send("9") == ["What is the main reason for your score?"]
    await phone.send("Fast")
    await phone.send("1")
    await work(api)
    engine = connect(api.records_url)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(select(responses).where(responses.c.phone == "+12015550101"))).one()
    finally:
        await engine.dispose()
    assert row.distribution == distribution and row.fields["FirstName"] == "Al"


async def test_at_send_time_an_open_session_or_a_new_opt_out_is_skipped(api, fake_twilio):
    await import_list(api)
    distribution = await distribute(api)
    started = await api.post("/admin/surveys/invite/start", headers=admin_headers(), json={"to": "+12015550101"})
    assert started.status == 201
    await Phone(api, "+12015550102").send("STOP")
    await api.server.app[ARCHIVER].archive_once()
    before = len(fake_twilio.messages)
    await work(api)
    states = await recipients(api, distribution)
    assert states["+12015550101"][:2] == ("skipped", "open_session")
    assert states["+12015550102"][:2] == ("skipped", "opted_out")
    assert states["+447400123456"][0] == "sent"
    assert len(fake_twilio.messages) == before + 1


async def test_what_twilio_refuses_fails_with_its_code_and_21610_opts_the_number_out(api, fake_twilio):
    await import_list(api)
    fake_twilio.refuse["+12015550101"] = (21211, "Invalid 'To' Phone Number")
    fake_twilio.refuse["+12015550102"] = UNSUBSCRIBED
    distribution = await distribute(api)
    await work(api, rounds=2)  # the second finds no recipient waiting: done
    states = await recipients(api, distribution)
    assert states["+12015550101"][0] == "failed" and states["+12015550101"][3] == 21211
    assert states["+12015550102"][0] == "failed" and states["+12015550102"][3] == 21610
    sessions = await api.get("/admin/sessions/+12015550102", headers=admin_headers())
    respondent = (await sessions.json())["channels"]["sms"]["respondent"]
    assert respondent["opted_out"] is True and respondent["session"] is None
    invalid = await api.get("/admin/sessions/+12015550101", headers=admin_headers())
    assert (await invalid.json())["channels"]["sms"]["respondent"]["session"] is None  # the start undone
    assert (await status_of(api, distribution))["status"] == "done"


async def test_quiet_hours_hold_an_invitation_until_the_window_opens_where_the_recipient_is(
        api, fake_twilio, clock):
    await import_list(api, "Phone,FirstName\n+12015550101,Al\n")
    # START_TIME is 17:13 in New York (the number's zone): outside 09:00-17:00
    distribution = await distribute(api, quiet_hours={"from": "09:00", "to": "17:00"})
    await work(api)
    [(state, _, _, _, not_before)] = (await recipients(api, distribution)).values()
    opens = datetime(2023, 11, 15, 14, 0, tzinfo=UTC)  # 09:00 in New York
    assert state == "pending" and not_before.replace(tzinfo=UTC) == opens
    assert fake_twilio.messages == []
    assert (await status_of(api, distribution))["waiting"] == {"recipients": 1, "until": "2023-11-15T14:00:00Z"}
    clock.advance(opens.timestamp() - START_TIME - 60)
    await work(api)
    assert fake_twilio.messages == []  # a minute early
    clock.advance(60)
    await work(api)
    [(state, *_)] = (await recipients(api, distribution)).values()
    assert state == "sent" and len(fake_twilio.messages) == 1
    # its reminder keeps the quiet hours too: due at 09:10, inside the window
    clock.advance(10 * 60)
    await api.server.app[SERVICE].sweep()
    await work(api)
    assert len(fake_twilio.messages) == 2


async def test_a_cancelled_distribution_invites_nobody_more(api, fake_twilio):
    await import_list(api)
    distribution = await distribute(api, send_at="2023-11-15T12:00:00Z")
    await work(api)
    assert fake_twilio.messages == [] and (await status_of(api, distribution))["status"] == "scheduled"
    cancelled = await api.post(f"/admin/distributions/{distribution}/cancel", headers=admin_headers())
    assert cancelled.status == 200
    engine = connect(api.records_url)
    try:
        async with engine.connect() as connection:
            status = (await connection.execute(select(distributions.c.status))).scalar_one()
    finally:
        await engine.dispose()
    assert status == "cancelled"


async def test_a_batch_of_delivery_reports_moves_each_recipient_once_and_forwards(api):
    from engine.records.distributions import apply_deliveries

    await import_list(api)
    distribution = await distribute(api)
    engine = connect(api.records_url)
    at = START_TIME + 5
    reports = [
        {"distribution": distribution, "phone": "+12015550101", "state": "delivered", "sid": "", "at": at},
        {"distribution": distribution, "phone": "+12015550101", "state": "sent", "sid": "SM1", "at": at},
        {"distribution": distribution, "phone": "+12015550102", "state": "sent", "sid": "SM2", "at": at},
        {"distribution": distribution, "phone": "+12015550102", "state": "queued", "sid": "SM2", "at": at},
        {"distribution": distribution, "phone": "+447400123456", "state": "failed", "error_code": 21211,
         "sid": "", "at": at},
    ]
    try:
        async with engine.begin() as connection:  # one statement per state, many rows each
            assert await apply_deliveries(connection, reports) == 4  # a queued report moves nothing
        async with engine.begin() as connection:
            await apply_deliveries(connection, reports)  # archived twice: nothing changes
    finally:
        await engine.dispose()
    states = await recipients(api, distribution)
    assert states["+12015550101"][:3] == ("delivered", None, "SM1")  # sent, then delivered
    assert states["+12015550102"][:3] == ("sent", None, "SM2")
    assert states["+447400123456"][:4] == ("failed", "twilio_21211", None, 21211)


async def test_a_distributions_unknown_invitations_are_sent_again_only_when_asked(
        make_client, settings, fake_twilio):
    client = await make_client(dataclasses.replace(settings, send_timeout=0.3))
    client.records_url = settings.database_url
    fake_twilio.timeout_seconds = 1.0
    fake_twilio.time_out_next(1)  # Twilio creates the message, its answer never comes
    await import_list(client, body="Phone,FirstName\n+12015550101,Al\n")
    distribution = await distribute(client)
    await work(client)
    assert (await recipients(client, distribution))["+12015550101"][0] == "unknown"
    assert len(fake_twilio.created()) == 1
    for missing in ("DSnope", "DS%00nul"):
        answer = await client.post(f"/admin/distributions/{missing}/resend", headers=admin_headers())
        assert answer.status == 404 and (await answer.json())["error"] == "unknown_distribution"
    answer = await client.post(f"/admin/distributions/{distribution}/resend", headers=admin_headers())
    assert answer.status == 202 and await answer.json() == {"id": distribution, "resent": 1}
    await work(client)
    assert len(fake_twilio.created()) == 2
    assert (await recipients(client, distribution))["+12015550101"][0] == "sent"
    answer = await client.post(f"/admin/distributions/{distribution}/resend", headers=admin_headers())
    assert answer.status == 202 and (await answer.json())["resent"] == 0  # nothing unknown is left
