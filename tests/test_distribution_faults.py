"""A distribution sent by two servers at once while one is killed (kill -9) and Redis crashes
and restarts: no recipient is invited twice, none is lost (each ends sent, delivered, failed,
skipped or unknown, with its reason), no second holds more messages than the sender's pace,
and the counts add up."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
import phonenumbers
import pytest
from conftest import RedisServer, admin_headers, free_port
from fake_twilio import ACCOUNT_SID, FakeTwilio
from faults_helpers import ADMIN_TOKEN, CanvassProcess, write_flows

pytestmark = pytest.mark.slow

RECIPIENTS = 90
RATE = 15  # messages per second from the one sender
FINAL = {"sent", "delivered", "failed", "skipped", "unknown"}


def valid_numbers(count: int) -> list[str]:
    found = []
    for n in range(10_000):
        number = f"+1201555{n:04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            found.append(number)
            if len(found) == count:
                return found
    raise AssertionError("not enough valid numbers")


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


async def test_two_servers_a_kill_and_a_redis_crash_invite_each_recipient_at_most_once(
        aiohttp_server, own_redis, database_url, tmp_path):
    fake = FakeTwilio(ACCOUNT_SID, "test-auth-token")
    fake.base_url = str((await aiohttp_server(fake.app())).make_url("")).rstrip("/")
    flows = write_flows(tmp_path / "flows")
    environment = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_BASE_URL": fake.base_url,
                   "TWILIO_FROM_NUMBER": "+15550000001", "CANVASS_PACING": f"phone={RATE}"}
    servers = [CanvassProcess(flows, own_redis.url, tmp_path / f"canvass{n}.log", free_port(), database_url,
                              environment) for n in range(2)]
    for server in servers:
        await asyncio.to_thread(server.start)
    numbers = valid_numbers(RECIPIENTS)
    contacts = "Phone,FirstName\n" + "".join(f"{number},N{n}\n" for n, number in enumerate(numbers))
    first, second = servers
    async with aiohttp.ClientSession(headers=admin_headers(ADMIN_TOKEN)) as http:
        async with http.post(f"{first.url}/admin/lists/people/import", data=contacts.encode(),
                             headers={"Content-Type": "text/csv"}) as answer:
            assert answer.status == 200, await answer.text()
        async with http.post(f"{first.url}/admin/distributions",
                             json={"survey": "short", "list": "people"}) as answer:
            assert answer.status == 201, await answer.text()
            distribution = (await answer.json())["id"]

        async def faults() -> None:
            await until(lambda: len(fake.created()) >= RECIPIENTS // 4)
            first.kill()  # kill -9, mid-distribution (it may hold claims and a lease)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(first.start)
            await until(lambda: len(fake.created()) >= RECIPIENTS // 2)
            own_redis.process.kill()  # SIGKILL: what the AOF holds survives
            own_redis.process.wait()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(own_redis.start)

        async def done() -> dict:
            deadline = time.monotonic() + 120
            while True:
                try:
                    async with http.get(f"{second.url}/admin/distributions/{distribution}") as answer:
                        if answer.status == 200:
                            described = await answer.json()
                            if described["status"] == "done":
                                return described
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the distribution never finished"
                await asyncio.sleep(0.5)

        await faults()
        described = await done()
        await asyncio.sleep(2.0)  # a message sent twice would arrive by now
        async with http.get(f"{second.url}/admin/distributions/{distribution}/recipients",
                            params={"format": "jsonl"}) as answer:
            recipients = [json.loads(line) for line in (await answer.text()).splitlines() if line]
    for server in servers:
        await asyncio.to_thread(server.stop)

    created = fake.created()
    invited = [arrival.to for arrival in created]
    assert len(invited) == len(set(invited)), "a recipient was invited twice"
    assert {r["phone"] for r in recipients} == set(numbers)
    states = {r["phone"]: r for r in recipients}
    assert all(r["state"] in FINAL for r in recipients), [r for r in recipients if r["state"] not in FINAL]
    assert sum(described["counts"].values()) == RECIPIENTS
    sids = {arrival.to: arrival.sid for arrival in created}
    for phone, recipient in states.items():
        if recipient["state"] in ("sent", "delivered"):
            assert sids.get(phone) == recipient["sid"], (phone, recipient)
        elif phone in sids:  # Twilio took it but the server could not hear so: unknown, said
            assert recipient["state"] == "unknown" and recipient["reason"], (phone, recipient)
        else:
            assert recipient["state"] in ("failed", "skipped", "unknown") and recipient["reason"], recipient
    assert fake.max_in_window(1.0) <= RATE


async def until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)
