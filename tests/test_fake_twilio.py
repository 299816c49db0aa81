"""The fake Twilio Messages API itself: each fault reaches the twilio package's client as the
real Twilio's would, and the arrival log's windows count what they say."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, UNSUBSCRIBED, FakeTwilio
from hypothesis import given
from hypothesis import strategies as st
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from engine.runtime.twilio import Origin, Sender, SendFailed, _HttpClient, message_form

REPO = Path(__file__).resolve().parents[1]
FROM = Origin(from_="+15550000000")
SERVICE = Origin(messaging_service_sid="MG" + "2" * 32)


@pytest.fixture
async def client(fake_twilio):
    """The twilio package's own client (aiohttp-based, as Sender builds it), on the fake."""
    http = _HttpClient()
    twilio = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)
    twilio.api.base_url = fake_twilio.base_url
    yield twilio
    await http.close()


@pytest.fixture
async def sender(fake_twilio):
    sender = Sender(ACCOUNT_SID, AUTH_TOKEN, fake_twilio.base_url)
    yield sender
    await sender.close()


async def create(client: Client, to: str = "+15551230001", **params):
    return await client.messages.create_async(to=to, from_="+15550000000", body="hi", **params)


async def refusal(client: Client, to: str = "+15551230001") -> TwilioRestException:
    with pytest.raises(TwilioRestException) as raised:
        await create(client, to)
    return raised.value


async def test_canvass_sends_what_the_twilio_clients_create_sends(fake_twilio, client, sender):
    """Sender asks the client for its headers and authentication once, and encodes the form
    itself: the request must be the one the client's own create makes."""
    await client.messages.create_async(to="+15551230001", from_="+15550000000", body="Hi & bye = 100%",
                                       status_callback="https://surveys.example.com/twilio/status")
    sender.status_callback = "https://surveys.example.com/twilio/status"
    await sender.send("sms", "+15551230001", FROM, "Hi & bye = 100%")
    theirs, ours = fake_twilio.messages
    assert ours.headers == theirs.headers and "twilio-python" in ours.headers["User-Agent"]
    assert ours.form == theirs.form and ours.username == theirs.username == ACCOUNT_SID


@pytest.mark.parametrize("fault, status, code", [
    ({"status": 429}, 429, 20429),
    ({"status": 500}, 500, 20500),
    ({"status": 503}, 503, 20503),
    ({"status": 503, "code": None}, 503, 503),  # no JSON body: the package takes the status as code
    ({"code": 21610}, 400, 21610),
    ({"code": 21211}, 400, 21211),
    ({"code": 21614}, 400, 21614),
])
async def test_each_error_reaches_the_twilio_client_as_twilio_answers_it(fake_twilio, client, fault, status, code):
    fake_twilio.fail_next(1, **fault)
    err = await refusal(client)
    assert (err.status, err.code) == (status, code)
    arrival = fake_twilio.arrivals[-1]
    assert (arrival.outcome, arrival.status, arrival.created) == ("error", status, False)
    assert arrival.code == fault.get("code", code)
    assert (await create(client)).sid.startswith("SM")  # only the next one failed
    assert len(fake_twilio.created()) == 1


async def test_the_unsubscribed_and_invalid_numbers_say_what_twilio_says(fake_twilio, client):
    fake_twilio.fail_for("+15551230002", code=21211)
    fake_twilio.fail_for("+15551230003", code=21614)
    fake_twilio.fail_for("+15551230004", code=21610)
    assert "The 'To' number +15551230002 is not a valid phone number." in (await refusal(client, "+15551230002")).msg
    assert "'To' number +15551230003 is not a valid mobile number" in (await refusal(client, "+15551230003")).msg
    assert "Attempt to send to unsubscribed recipient" in (await refusal(client, "+15551230004")).msg
    fake_twilio.fail_next(1, status=500, code=None)  # a bare answer, as from a proxy: its reason phrase
    async with aiohttp.ClientSession() as session:
        url = f"{fake_twilio.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        async with session.post(url, data={"To": "+15551230001", "From": "+15550000000"},
                                headers={"Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}) as answer:
            assert (answer.status, await answer.text()) == (500, "Internal Server Error")


async def test_a_429_says_retry_after_in_whole_seconds(fake_twilio):
    fake_twilio.fail_next(2, status=429)
    fake_twilio.fail_next(1, status=429, retry_after=2.5)
    url = f"{fake_twilio.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    form = {"To": "+15551230001", "From": "+15550000000", "Body": "hi"}
    answers = []
    auth = {"Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}
    async with aiohttp.ClientSession() as session:
        for _ in range(4):
            async with session.post(url, data=form, headers=auth) as response:
                answers.append((response.status, response.headers.get("Retry-After"),
                                (await response.json())["code"] if response.status != 201 else None))
    assert answers == [(429, "1", 20429), (429, "1", 20429), (429, "3", 20429), (201, None, None)]


async def test_a_number_fails_every_time_or_a_number_of_times_and_others_pass(fake_twilio, client):
    fake_twilio.fail_for("+15551230002", status=503)
    fake_twilio.fail_for("+15551230003", code=21610, times=2)
    fake_twilio.refuse["+15551230004"] = UNSUBSCRIBED  # the older way, still kept
    for _ in range(3):
        assert (await refusal(client, "+15551230002")).status == 503
    assert [(await refusal(client, "+15551230003")).code for _ in range(2)] == [21610, 21610]
    await create(client, "+15551230003")  # its two are used up
    assert (await refusal(client, "+15551230004")).code == 21610
    await create(client, "+15551230001")
    assert [a.to for a in fake_twilio.created()] == ["+15551230003", "+15551230001"]
    assert len(fake_twilio.arrivals) == 8


async def test_the_next_requests_fail_in_the_order_given(fake_twilio, client):
    fake_twilio.fail_next(2, status=429)
    fake_twilio.fail_next(1, status=500)
    outcomes = []
    for _ in range(4):
        try:
            await create(client)
            outcomes.append(201)
        except TwilioRestException as err:
            outcomes.append(err.status)
    assert outcomes == [429, 429, 500, 201]
    assert [a.status for a in fake_twilio.arrivals] == outcomes


async def test_a_slow_answer_comes_late_and_whole(fake_twilio, client):
    fake_twilio.delay_next(1, seconds=0.3)
    started = time.monotonic()
    message = await create(client)
    assert time.monotonic() - started >= 0.3
    assert fake_twilio.created()[0].sid == message.sid
    assert fake_twilio.arrivals[0].outcome == "slow"


async def test_a_time_out_creates_the_message_the_client_never_hears_of(fake_twilio):
    sender = Sender(ACCOUNT_SID, AUTH_TOKEN, fake_twilio.base_url, timeout=0.2)
    fake_twilio.timeout_seconds = 0.5
    fake_twilio.time_out_next(1)
    started = time.monotonic()
    try:
        with pytest.raises(SendFailed, match="did not answer") as raised:
            await sender.send("sms", "+15551230001", FROM, "hi")
        assert raised.value.unknown and not raised.value.retryable  # it may have been created
        assert 0.2 <= time.monotonic() - started < 0.5
        assert [(a.outcome, a.created) for a in fake_twilio.arrivals] == [("timeout", True)]
        assert await sender.send("sms", "+15551230001", FROM, "again")
    finally:
        await sender.close()


async def test_a_dropped_connection_leaves_the_outcome_unknown_but_the_message_created(fake_twilio, sender):
    fake_twilio.drop_next(1)
    with pytest.raises(SendFailed, match="did not answer") as raised:
        await sender.send("sms", "+15551230001", FROM, "hi")
    assert raised.value.status is None and raised.value.unknown
    assert [(a.outcome, a.status, a.created) for a in fake_twilio.arrivals] == [("drop", None, True)]
    sid = await sender.send("sms", "+15551230002", FROM, "next")  # the fake serves on
    assert [a.sid for a in fake_twilio.created()][-1] == sid
    assert len(fake_twilio.created()) == 2


async def test_a_fault_on_a_number_beats_the_next_requests_faults(fake_twilio, client):
    fake_twilio.fail_next(1, status=500)
    fake_twilio.fail_for("+15551230002", code=21211, times=1)
    assert (await refusal(client, "+15551230002")).code == 21211
    assert (await refusal(client, "+15551230001")).code == 20500


def test_a_fault_must_say_what_fails():
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN)
    with pytest.raises(ValueError, match="status or the code"):
        fake.fail_next(1)
    with pytest.raises(ValueError, match="no Twilio code for status 418"):
        fake.fail_next(1, status=418)
    with pytest.raises(ValueError, match="at least one request"):
        fake.drop_next(0)


async def test_windows_and_seconds_count_created_messages_by_arrival(aiohttp_server):
    now = [0.0]
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, clock=lambda: now[0])
    fake.base_url = str((await aiohttp_server(fake.app())).make_url("")).rstrip("/")
    sender = Sender(ACCOUNT_SID, AUTH_TOKEN, fake.base_url)
    timeline = [(0.0, FROM), (0.25, FROM), (0.5, SERVICE), (0.75, FROM), (1.0, FROM), (1.5, FROM),
                (1.6, SERVICE), (1.7, FROM), (1.8, FROM), (1.9, FROM), (3.2, FROM)]
    try:
        for at, origin in timeline:
            now[0] = at
            await sender.send("sms", "+15551230001", origin, "hi")
        now[0] = 1.95
        fake.fail_next(1, status=429)
        with pytest.raises(SendFailed):  # refused: not counted
            await sender.send("sms", "+15551230001", FROM, "hi")
    finally:
        await sender.close()
    # [1.0, 2.0) holds six; a window is half-open, so 0.0 and 1.0 are never in one together
    assert fake.max_in_window(1.0) == 6
    assert fake.max_in_window(0.5) == 5  # [1.5, 2.0)
    assert fake.max_in_window(0.25) == 3  # [1.6, 1.85)
    assert fake.rate_series() == [4, 6, 0, 1]
    assert fake.senders() == ["+15550000000", SERVICE.messaging_service_sid]
    assert fake.max_in_window(1.0, sender="+15550000000") == 5
    assert fake.rate_series(sender="+15550000000") == [3, 5, 0, 1]
    assert fake.rate_series(sender=SERVICE.messaging_service_sid) == [1, 1]
    assert [a.at for a in fake.created(SERVICE.messaging_service_sid)] == [0.5, 1.6]
    assert FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).max_in_window() == 0


async def test_it_runs_as_a_process_and_logs_its_arrivals_on_sigterm(tmp_path):
    log = tmp_path / "arrivals.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fake_twilio", "--port", "0", "--log", str(log),
        cwd=REPO, stdout=subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line.startswith("listening on http://127.0.0.1:")
        sender = Sender(ACCOUNT_SID, AUTH_TOKEN, line.split()[-1])
        try:
            sid = await sender.send("sms", "+15551230001", FROM, "hi")
        finally:
            await sender.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    [arrival] = [json.loads(line) for line in log.read_text().splitlines()]
    assert (arrival["sid"], arrival["to"], arrival["sender"], arrival["status"]) == (
        sid, "+15551230001", "+15550000000", 201)
    assert abs(arrival["wall"] - time.time()) < 60


async def test_the_sender_posts_the_form_twilio_reads_and_logs_the_request_only_at_info(sender, fake_twilio,
                                                                                      caplog):
    with caplog.at_level("WARNING", logger="twilio.async_http_client"):
        sid = await sender.send("sms", "+15551230009", FROM, "héllo & 100% = ok?")
    assert not [r for r in caplog.records if r.name == "twilio.async_http_client"]
    [arrival] = fake_twilio.created()
    assert (arrival.sid, arrival.to, arrival.body) == (sid, "+15551230009", "héllo & 100% = ok?")
    with caplog.at_level("INFO", logger="twilio.async_http_client"):
        await sender.send("sms", "+15551230010", FROM, "again")
    logged = [r.getMessage() for r in caplog.records if r.name == "twilio.async_http_client"]
    assert "-- BEGIN Twilio API Request --" in logged and "Response Status Code: 201" in logged
    assert not [line for line in logged if "Authorization" in line or AUTH_TOKEN in line]


TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(["", "&", "=", "+", " ", "%20", "a&b=c d+e", "😀"])


@given(channel=st.sampled_from(["sms", "whatsapp"]), origin=st.sampled_from([FROM, SERVICE]),
       body=TEXT, template=st.none() | st.tuples(st.just("HX" + "1" * 32), st.dictionaries(TEXT, TEXT, max_size=3)),
       callback=st.none() | st.sampled_from(["https://surveys.example.com/twilio/status?a=1&b=2"]))
def test_the_create_message_form_is_what_urlencode_makes_of_it(channel, origin, body, template, callback):
    """The sender encodes the form itself (its repeated fields once): byte for byte what
    urlencode makes of the same fields in the same order."""
    form = {"To": ("whatsapp:" if channel == "whatsapp" else "") + "+15551230000"}
    if origin.messaging_service_sid:
        form["MessagingServiceSid"] = origin.messaging_service_sid
    if origin.from_:
        form["From"] = origin.from_
    if template:
        form["ContentSid"] = template[0]
        if template[1]:
            form["ContentVariables"] = json.dumps(template[1])
    else:
        form["Body"] = body
    if callback:
        form["StatusCallback"] = callback
    encoded = message_form(channel, "+15551230000", origin, body, *(template or (None, None)), callback)
    assert encoded == urlencode(form).encode()
