"""Live reload, pinned flow versions, restarts (of Canvass and of Redis) and startup checks."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal

import pytest
from conftest import RedisServer, admin_headers
from fake_twilio import Phone

from dsl.errors import Diagnostic, FlowError
from engine.runtime.registry import ReloadFailed
from server import create_app

OLD_REASON = "What is the main reason for your score?"
NEW_REASON = "Why that score?"
SCORE_PROMPT = "Hi ! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."


def edit_reason(flows_dir) -> None:
    path = flows_dir / "feedback.yaml"
    path.write_text(path.read_text().replace(OLD_REASON, NEW_REASON))


async def live_version(client, survey: str = "feedback") -> str:
    body = await (await client.get("/admin/flows", headers=admin_headers())).json()
    return next(f["version"] for f in body["flows"] if f["id"] == survey)


async def test_a_reload_leaves_open_conversations_on_their_version(client, flows_dir):
    old, new = Phone(client, "+15551230101"), Phone(client, "+15551230102")
    await old.send("@feed")
    before = await live_version(client)
    edit_reason(flows_dir)
    response = await client.post("/admin/reload", headers=admin_headers())
    assert response.status == 200
    assert await live_version(client) != before
    assert await old.send("9") == [OLD_REASON]
    await new.send("@feed")
    assert await new.send("9") == [NEW_REASON]


BROKEN = [
    pytest.param("feedback.yaml", "  - ask: score\n", "  - ask: score\n    colour: blue\n", 12, "E003", id="unknown-key"),
    pytest.param("feedback.yaml", "type: nps", "type: nps\n   bad: [", 13, None, id="bad-yaml"),
    pytest.param("invite.yaml", "survey: invite", "survey: feedback", 2, "E801", id="duplicate-survey"),
    pytest.param("invite.yaml", "title:", 'access_code: "@feed"\ntitle:', 3, "E802", id="duplicate-access-code"),
]


@pytest.mark.parametrize("name, old, new, line, code", BROKEN)
async def test_a_broken_flow_changes_nothing_and_reports_where(client, flows_dir, name, old, new, line, code):
    phone = Phone(client, "+15551230103")
    await phone.send("@feed")
    before = await live_version(client)
    path = flows_dir / name
    path.write_text(path.read_text().replace(old, new, 1))
    response = await client.post("/admin/reload", headers=admin_headers())
    assert response.status == 422
    body = await response.json()
    assert body["error"] == "flow_errors"
    assert f"{path}:{line}:" in body["report"]
    [diagnostic] = [d for d in body["diagnostics"] if d["path"] == str(path)]
    assert diagnostic["line"] == line and diagnostic["col"] >= 1
    if code:
        assert diagnostic["code"] == code
    assert await live_version(client) == before
    assert await phone.send("9") == [OLD_REASON]
    metrics = await (await client.get("/metrics")).text()
    assert 'canvass_reloads_total{result="error"} 1' in metrics


async def test_a_restarted_server_continues_conversations_on_their_pinned_version(make_client, settings, flows_dir):
    first = await make_client(settings)
    await Phone(first, "+15551230104").send("@feed")
    await first.close()
    edit_reason(flows_dir)  # the new process never sees the version the session started on
    second = await make_client(settings)
    assert await Phone(second, "+15551230104").send("9") == [OLD_REASON]
    await Phone(second, "+15551230105").send("@feed")
    assert await Phone(second, "+15551230105").send("9") == [NEW_REASON]
    body = await (await second.get("/admin/flows", headers=admin_headers())).json()
    assert [p["id"] for p in body["pinned"]] == ["feedback"]


async def test_a_worker_runs_a_version_only_another_worker_has_loaded(make_client, settings, flows_dir):
    worker_a, worker_b = await make_client(settings), await make_client(settings)
    edit_reason(flows_dir)
    assert (await worker_a.post("/admin/reload", headers=admin_headers())).status == 200
    await Phone(worker_a, "+15551230106").send("@feed")
    assert await Phone(worker_b, "+15551230106").send("9") == [NEW_REASON]


async def test_conversations_survive_a_redis_crash_with_the_shipped_config(make_client, settings, tmp_path):
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    try:
        client = await make_client(dataclasses.replace(settings, redis_url=redis_server.url))
        phone = Phone(client, "+15551230107")
        await phone.send("@feed")
        redis_server.process.kill()  # SIGKILL: no shutdown save, only what the AOF holds
        redis_server.process.wait()
        assert (await phone.post(phone.form("9"))).status == 503
        redis_server.start()
        assert await phone.send("9") == [OLD_REASON]
    finally:
        redis_server.stop()


async def test_watch_reloads_when_a_flow_file_changes(make_client, settings, flows_dir):
    client = await make_client(dataclasses.replace(settings, watch=True))
    before = await live_version(client)
    for _ in range(40):
        await asyncio.sleep(0.25)
        if (flows_dir / "feedback.yaml").read_text().count(NEW_REASON) == 0:
            edit_reason(flows_dir)
        if await live_version(client) != before:
            break
    assert await live_version(client) != before


async def test_sighup_reloads(aiohttp_client, settings, flows_dir, clock):
    client = await aiohttp_client(create_app(settings, clock=clock, timer_interval=3600, handle_sighup=True))
    before = await live_version(client)
    edit_reason(flows_dir)
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if await live_version(client) != before:
            break
    assert await live_version(client) != before


async def test_the_server_does_not_start_with_broken_flows(make_client, settings, flows_dir):
    (flows_dir / "broken.yaml").write_text("survey: broken\nflow: 3\n")
    with pytest.raises(ReloadFailed) as failed:
        await make_client(settings)
    assert f"{flows_dir / 'broken.yaml'}:2:" in failed.value.report


async def test_a_worker_that_cannot_build_a_reload_is_named_in_a_503_and_keeps_its_flows(
        make_client, settings, flows_dir, monkeypatch):
    worker_a, worker_b = await make_client(settings), await make_client(settings)
    before = await live_version(worker_b)

    def another_release(source, form, path="<stored>"):  # as a worker running another Canvass would
        raise FlowError([Diagnostic(path, 3, 5, "E003", "unknown key 'colour'")])

    monkeypatch.setattr("engine.runtime.registry.flow_from_source", another_release)
    edit_reason(flows_dir)
    response = await worker_a.post("/admin/reload", headers=admin_headers())
    assert response.status == 503
    body = await response.json()
    assert body["error"] == "reload_incomplete" and body["workers"]["unconfirmed"] == []
    [refused] = body["workers"]["refused"]
    assert "unknown key 'colour'" in refused["error"] and refused["worker"] in body["message"]
    assert await live_version(worker_a) != before
    assert await live_version(worker_b) == before  # a version it cannot build never replaces a good one
    described = await (await worker_b.get("/admin/flows", headers=admin_headers())).json()
    assert [w["refused"] for w in described["workers"] if w["worker"] == refused["worker"]] == [body["generation"]]
