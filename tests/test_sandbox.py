"""The local sandbox: without Twilio credentials, in insecure local mode, what the server
sends on its own (starts, reminders) is recorded in Redis, marked delivered, listed by
GET /admin/sandbox/messages and shown by `canvass phone`; never beside real credentials."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import threading
from types import SimpleNamespace

from conftest import START_TIME, admin_headers
from fake_twilio import Phone
from redis_proxy import DelayingProxy

from engine.redis import store as store_module
from engine.runtime import settling
from engine.runtime.settings import Settings
from engine.runtime.twilio import SANDBOX_NUMBER
from engine.tools.phone import SandboxWatch, run_phone
from server import SERVICE, STORE

QUESTION = "Hi Ana, did your delivery arrive? Text STOP to opt out.\n1. Yes\n2. No"
REMINDER = "Still there? Reply 1 for yes or 2 for no."
SANDBOX_SID = re.compile(r"SB[0-9a-f]{32}")


def local(settings: Settings) -> Settings:
    """`./dev serve`: insecure, on 127.0.0.1, no Twilio credentials, no admin token."""
    return dataclasses.replace(settings, insecure=True, account_sid=None, auth_token=None,
                               admin_token=None, public_base_url=None, messaging_service_sid=None)


async def start(client, to: str, **fields):
    return await client.post("/admin/surveys/invite/start", json={"to": to, "fields": fields})


async def sandbox(client, query: str = "") -> list[dict]:
    response = await client.get("/admin/sandbox/messages" + query)
    assert response.status == 200, await response.text()
    return (await response.json())["messages"]


async def test_an_admin_start_goes_to_the_sandbox_and_is_listed(make_client, settings, fake_twilio):
    client = await make_client(local(settings))
    response = await start(client, "+15551230501", FirstName="Ana")
    assert response.status == 201, await response.text()
    [sid] = (await response.json())["messages"]
    assert SANDBOX_SID.fullmatch(sid)
    assert await sandbox(client) == [{"sid": sid, "channel": "sms", "to": "+15551230501",
                                      "from": SANDBOX_NUMBER, "body": QUESTION,
                                      "at": "2023-11-14T22:13:20Z"}]
    assert START_TIME == 1_700_000_000.0  # the "at" above
    deliveries = await client.app[STORE].deliveries("sms", "+15551230501")
    assert deliveries[sid]["status"] == "delivered"
    assert fake_twilio.messages == []  # nothing went to Twilio


async def test_the_sandbox_lists_one_number_newest_last(make_client, settings):
    client = await make_client(local(settings))
    for number in ("+15551230511", "+15551230512"):
        assert (await start(client, number, FirstName="Ana")).status == 201
    assert [m["to"] for m in await sandbox(client)] == ["+15551230511", "+15551230512"]
    assert [m["to"] for m in await sandbox(client, "?to=%2B15551230512")] == ["+15551230512"]
    assert [m["to"] for m in await sandbox(client, "?to=+15551230511")] == ["+15551230511"]  # '+' as a space
    assert await sandbox(client, "?to=%2B15551230599") == []
    response = await client.get("/admin/sandbox/messages?to=nonsense")
    assert response.status == 400 and (await response.json())["error"] == "bad_number"


async def test_a_reminder_goes_to_the_sandbox(make_client, settings, clock):
    client = await make_client(local(settings), timer_interval=0.02)
    assert (await start(client, "+15551230521", FirstName="Ana")).status == 201
    clock.advance(31 * 60)
    for _ in range(300):
        bodies = [m["body"] for m in await sandbox(client, "?to=%2B15551230521")]
        if len(bodies) == 2:
            break
        await asyncio.sleep(0.01)
    assert bodies == [QUESTION, REMINDER]


async def test_the_sandbox_is_not_chosen_beside_twilio_credentials(make_client, settings, fake_twilio):
    insecure = dataclasses.replace(settings, insecure=True, admin_token=None)
    assert not insecure.sandbox and not settings.sandbox
    assert not dataclasses.replace(local(settings), account_sid="AC" + "1" * 32).sandbox
    assert not dataclasses.replace(local(settings), host="0.0.0.0").sandbox
    assert local(settings).sandbox
    client = await make_client(settings)
    response = await client.post("/admin/surveys/invite/start", headers=admin_headers(),
                                 json={"to": "+15551230531", "fields": {"FirstName": "Ana"}})
    assert response.status == 201
    [sid] = (await response.json())["messages"]
    assert sid.startswith("SM") and [m.to for m in fake_twilio.messages] == ["+15551230531"]
    response = await client.get("/admin/sandbox/messages", headers=admin_headers())
    assert response.status == 404 and (await response.json())["error"] == "no_sandbox"


async def test_canvass_phone_shows_a_sandbox_message_for_its_number(make_client, settings):
    client = await make_client(local(settings))
    assert (await start(client, "+15551230541", FirstName="Ana")).status == 201  # before the phone
    server = str(client.make_url("")).rstrip("/")
    watch = SandboxWatch(server, "sms", "+15551230542")
    await asyncio.to_thread(watch.skip_sent)  # what was sent before the phone picked up
    assert await asyncio.to_thread(watch.new_messages) == []
    assert (await start(client, "+15551230542", FirstName="Ana")).status == 201
    assert (await start(client, "+15551230543", FirstName="Ana")).status == 201  # another phone's
    assert await asyncio.to_thread(watch.new_messages) == [QUESTION]
    assert await asyncio.to_thread(watch.new_messages) == []  # each shown once
    assert await Phone(client, "+15551230542", auth_token="").send("1") == ["Thank you!"]


class Typist:
    """A respondent at `canvass phone` who types each line only when told to."""

    def __init__(self, *lines: str):
        self.lines, self.asked, self.go = list(lines), threading.Event(), threading.Event()

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        self.asked.set()  # the phone is up and waiting for a line
        self.go.wait(10)
        return self.lines.pop(0) if self.lines else ""


async def test_canvass_phone_prints_a_start_from_the_admin_api_as_it_arrives(make_client, settings):
    client = await make_client(local(settings))
    typist, out = Typist("1\n"), io.StringIO()
    args = SimpleNamespace(server=str(client.make_url("")), from_="+15551230551", to=SANDBOX_NUMBER)
    phoned = asyncio.create_task(asyncio.to_thread(run_phone, args, typist, out))
    await asyncio.to_thread(typist.asked.wait, 10)
    assert (await start(client, "+15551230551", FirstName="Ana")).status == 201
    for _ in range(300):
        if "Yes" in out.getvalue():
            break
        await asyncio.sleep(0.01)
    typist.go.set()
    assert await phoned == 0
    assert out.getvalue().splitlines() == ["< Hi Ana, did your delivery arrive? Text STOP to opt out.",
                                           "1. Yes", "2. No", "> 1", "< Thank you!"]


async def test_a_reply_the_rest_api_sends_after_a_503_goes_to_the_sandbox(make_client, settings, redis_server,
                                                                         one_redis_url, monkeypatch):
    # on one Redis also when the other tests run on a Cluster: the proxy stands in front of one node
    monkeypatch.setattr(store_module, "PATIENT_TIMEOUT", 2.0)  # give up within the test's seconds
    monkeypatch.setattr(settling, "SETTLE_PAUSE", 0.1)
    proxy = await DelayingProxy(redis_server.port).start()
    try:
        client = await make_client(dataclasses.replace(local(settings), redis_url=proxy.url))
        proxy.delay = 30.0  # the commit's answer is not coming within the webhook
        phone = Phone(client, "+15551230561", auth_token="")
        assert (await phone.post(phone.form("@feed", "SM" + "6" * 32))).status == 503
        proxy.delay = 0
        for _ in range(1000):
            if not client.app[SERVICE].settling.pending:
                break
            await asyncio.sleep(0.01)
        senders = client.app[SERVICE].senders
        for _ in range(1000):  # the settled commit queued its reply; the outbox sends it
            if await senders.idle():
                break
            await asyncio.sleep(0.01)
        messages = await sandbox(client, "?to=%2B15551230561")
    finally:
        await proxy.close()
    assert [(m["body"], m["from"]) for m in messages] == [
        ("Hi ! How likely are you to recommend us? Reply 0-10. Text STOP to opt out.", "+15550000000")]
