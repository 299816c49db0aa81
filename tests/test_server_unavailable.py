"""Redis unreachable: every request that needs it is a 503 within 2 seconds, and nothing else breaks."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from conftest import admin_headers, free_port
from fake_twilio import Phone


@pytest.fixture
async def blackhole():
    """A TCP port that accepts connections and never answers (a hung Redis)."""
    held = []

    async def swallow(reader, writer):
        held.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    for writer in held:
        writer.close()
    server.close()


@pytest.fixture(params=["closed-port", "hung"])
async def unreachable(request, blackhole):
    return f"redis://127.0.0.1:{free_port()}/0" if request.param == "closed-port" else blackhole


async def timed(request):
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_requests_needing_redis_are_503_within_two_seconds(make_client, settings, unreachable):
    client = await make_client(dataclasses.replace(settings, redis_url=unreachable))
    phone = Phone(client, "+15551230301")
    for request in (
        phone.post(phone.form("@feed")),
        client.post("/admin/surveys/feedback/start", json={"to": "+15551230301"}, headers=admin_headers()),
        client.get("/admin/sessions/+15551230301", headers=admin_headers()),
        client.get("/admin/responses/feedback", headers=admin_headers()),
        client.get("/admin/responses/feedback?format=csv", headers=admin_headers()),
        client.get("/readyz"),
    ):
        response, seconds = await timed(request)
        assert response.status == 503, await response.text()
        assert seconds < 2.0
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/admin/flows", headers=admin_headers())).status == 200


async def test_a_forged_webhook_is_refused_before_redis_is_touched(make_client, settings):
    client = await make_client(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    phone = Phone(client, "+15551230302")
    assert (await phone.post(phone.form("@feed"), signature="forged")).status == 403
