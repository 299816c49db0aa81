"""Distributions: creating one through the admin API (its estimate, its skip reasons, every
refusal), reading, exporting and cancelling it, the calls the sender makes (on SQLite and
PostgreSQL), responses carrying their distribution, and previews kept out of exports."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import ADMIN_TOKEN, SERVER_FLOWS, START_TIME, admin_headers
from fake_twilio import Phone

from engine.estimates import Estimate, invitation_segments
from engine.flow import load_flow
from engine.records import distributions as dist
from engine.records.database import connect
from engine.records.distributions import FrequencyRule
from engine.records.schema import distribution_recipients, opt_outs, responses
from engine.records.writes import insert_responses
from engine.tools import cli
from engine.tools.distributions import progress_line, watch
from server import ARCHIVER

NOW = datetime.fromtimestamp(START_TIME, UTC)
CONTACTS = ("Phone,Email,FirstName\n"
            "+12015550101,a@example.com,Al\n"
            "+447400123456,,Bartholomew-Maximilian-Alexander-Fitzgerald-Montgomery-Wellington-Huntington-the-Third-of-Kensington\n"
            "+12015550103,,Cy\n")


@pytest.fixture
async def sqlite_api(make_client, settings):
    return await make_client(settings)


async def import_list(client, name: str = "people", body: str = CONTACTS) -> None:
    answer = await client.post(f"/admin/lists/{name}/import", data=body.encode(),
                               headers={**admin_headers(), "Content-Type": "text/csv"})
    assert answer.status == 200, await answer.text()


async def create(client, body: dict, **query) -> tuple[int, dict]:
    answer = await client.post("/admin/distributions", json=body, params=query, headers=admin_headers())
    return answer.status, await answer.json()


async def get(client, path: str, **query):
    return await client.get(path, params=query, headers=admin_headers())


async def opt_out(url: str, phone: str, channel: str = "sms") -> None:
    engine = connect(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(opt_outs.insert().values(
                channel=channel, phone=phone, opted_out=True, how="keyword", at=NOW, event_id=phone))
    finally:
        await engine.dispose()


async def recipient_rows(url: str) -> dict[str, tuple]:
    engine = connect(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(distribution_recipients.select())).all()
    finally:
        await engine.dispose()
    return {row.phone: (row.state, row.reason) for row in rows}


# ---------------------------------------------------------------- creating


async def test_a_distribution_is_created_with_its_estimate_and_a_row_per_contact(api):
    await import_list(api)
    await opt_out(api.records_url, "+12015550103")
    await opt_out(api.records_url, "+12015550101", channel="whatsapp")  # another channel: no matter
    status, answer = await create(api, {"name": "Spring", "survey": "feedback", "list": "people"})
    assert status == 201, answer
    assert answer["id"].startswith("DS") and len(answer["id"]) == 18 and answer["status"] == "scheduled"
    estimate = answer["estimate"]
    assert estimate["recipients"] == 2 and estimate["skipped"] == {"opted_out": 1}
    assert set(estimate["countries"]) == {"US", "GB"}
    assert estimate["credits"] is None and estimate["countries"]["US"]["credits"] is None
    assert await recipient_rows(api.records_url) == {
        "+12015550101": ("pending", None), "+447400123456": ("pending", None),
        "+12015550103": ("skipped", "opted_out")}
    described = await (await get(api, f"/admin/distributions/{answer['id']}")).json()
    assert described["counts"] == {"pending": 2, "queued": 0, "sent": 0, "delivered": 0,
                                   "undelivered": 0, "failed": 0, "skipped": 1, "unknown": 0,
                                   "cancelled": 0}
    assert (described["name"], described["survey"], described["list"], described["channel"]) == (
        "Spring", "feedback", "people", "sms")
    assert described["send_at"] == "2023-11-14T22:13:20Z" and described["quiet_hours"] is None
    assert described["estimate"] == estimate and described["fields"] == ["FirstName"]
    listed = await (await get(api, "/admin/distributions")).json()
    assert [d["id"] for d in listed["distributions"]] == [answer["id"]]


async def test_a_dry_run_gives_the_estimate_and_writes_nothing(sqlite_api, settings):
    await import_list(sqlite_api)
    status, answer = await create(sqlite_api, {"survey": "feedback", "list": "people"}, dry_run="true")
    assert status == 200 and set(answer) == {"estimate"} and answer["estimate"]["recipients"] == 3
    assert await recipient_rows(settings.database_url) == {}
    assert (await (await get(sqlite_api, "/admin/distributions")).json()) == {"distributions": []}


async def test_the_estimate_counts_segments_with_the_contacts_fields_piped_in(sqlite_api):
    await import_list(sqlite_api)
    _, answer = await create(sqlite_api, {"survey": "feedback", "list": "people"}, dry_run="1")
    countries = answer["estimate"]["countries"]
    # the same prompt, a long first name piped into it: two segments, not one
    assert countries["US"] == {"recipients": 2, "segments": 2, "credits": None}
    assert countries["GB"] == {"recipients": 1, "segments": 2, "credits": None}
    assert answer["estimate"]["segments"] == 4


async def test_a_whatsapp_distribution_sends_its_template_so_no_segments(sqlite_api):
    await import_list(sqlite_api)
    _, answer = await create(sqlite_api, {"survey": "templated", "list": "people", "channel": "whatsapp"},
                             dry_run="true")
    assert answer["estimate"]["segments"] == 0 and answer["estimate"]["recipients"] == 3
    status, answer = await create(sqlite_api, {"survey": "invite", "list": "people", "channel": "whatsapp"})
    assert (status, answer["error"]) == (409, "no_whatsapp_template")


def test_credits_are_shown_when_a_price_is_given():
    flow = load_flow(SERVER_FLOWS / "feedback.yaml")
    rates = {"US": 0.5, "GB": 1.25}
    estimate = Estimate(price=lambda region, segments: rates[region] * segments if region in rates else None)
    for phone, name in (("+12015550101", "Al"), ("+12015550103", "Cy"), ("+447400123456", "Bo")):
        estimate.add(phone, invitation_segments(flow, "sms", phone, {"FirstName": name}, START_TIME))
    figures = estimate.to_json()
    assert figures["countries"]["US"]["credits"] == 1 and figures["countries"]["GB"]["credits"] == 1.25
    assert figures["credits"] == 2.25
    estimate.add("+33612345678", 1)  # no price for France: its credits and the total are unknown
    figures = estimate.to_json()
    assert figures["countries"]["FR"]["credits"] is None and figures["credits"] is None


@pytest.mark.parametrize(("body", "status", "reason"), [
    ([], 400, "bad_json"),
    ({"survey": "feedback"}, 400, "bad_list"),
    ({"list": "people"}, 400, "bad_survey"),
    ({"survey": "feedback", "list": "people", "colour": "red"}, 400, "unknown_field"),
    ({"survey": "feedback", "list": "a/b"}, 400, "bad_list"),
    ({"survey": "feedback", "list": "people", "name": ""}, 400, "bad_name"),
    ({"survey": "feedback", "list": "people", "name": "x\ny"}, 400, "bad_name"),
    ({"survey": "feedback", "list": "people", "name": "x" * 201}, 400, "bad_name"),
    ({"survey": "feedback", "list": "people", "channel": "fax"}, 400, "bad_channel"),
    ({"survey": "feedback", "list": "people", "send_at": "tomorrow"}, 400, "bad_send_at"),
    ({"survey": "feedback", "list": "people", "send_at": 17}, 400, "bad_send_at"),
    ({"survey": "feedback", "list": "people", "send_at": "2030-01-01T09:00:00"}, 400, "bad_send_at"),
    ({"survey": "feedback", "list": "people", "send_at": "2023-11-14T22:00:00Z"}, 400, "send_at_past"),
    ({"survey": "feedback", "list": "people", "quiet_hours": "9-20"}, 400, "bad_quiet_hours"),
    ({"survey": "feedback", "list": "people", "quiet_hours": {"from": "09:00"}}, 400, "bad_quiet_hours"),
    ({"survey": "feedback", "list": "people", "quiet_hours": {"from": "9:00", "to": "20:00"}}, 400,
     "bad_quiet_hours"),
    ({"survey": "feedback", "list": "people", "quiet_hours": {"from": "09:00", "to": "24:00"}}, 400,
     "bad_quiet_hours"),
    ({"survey": "feedback", "list": "people", "quiet_hours": {"from": "09:00", "to": "09:00"}}, 400,
     "bad_quiet_hours"),
    ({"survey": "nope", "list": "people"}, 404, "unknown_survey"),
    ({"survey": "feedback", "list": "nobody"}, 404, "unknown_list"),
])
async def test_every_wrong_request_is_refused_clearly(sqlite_api, body, status, reason):
    await import_list(sqlite_api)
    got, answer = await create(sqlite_api, body)
    assert (got, answer["error"]) == (status, reason), answer
    assert answer["message"]


async def test_a_wrong_dry_run_flag_and_a_body_that_is_not_json_are_refused(sqlite_api):
    got, answer = await create(sqlite_api, {"survey": "feedback", "list": "people"}, dry_run="maybe")
    assert (got, answer["error"]) == (400, "bad_dry_run")
    answer = await sqlite_api.post("/admin/distributions", data=b"{", headers=admin_headers())
    assert answer.status == 400 and (await answer.json())["error"] == "bad_json"


async def test_send_at_takes_an_offset_and_quiet_hours_may_cross_midnight(sqlite_api):
    await import_list(sqlite_api)
    status, answer = await create(sqlite_api, {
        "survey": "feedback", "list": "people", "send_at": "2023-11-15T09:30:00+01:00",
        "quiet_hours": {"from": "21:00", "to": "08:00"}})
    assert status == 201, answer
    described = await (await get(sqlite_api, f"/admin/distributions/{answer['id']}")).json()
    assert described["send_at"] == "2023-11-15T08:30:00Z"
    assert described["quiet_hours"] == {"from": "21:00", "to": "08:00"}
    # just past (under a minute) means now
    status, answer = await create(sqlite_api, {"survey": "feedback", "list": "people",
                                               "send_at": "2023-11-14T22:12:50Z"})
    assert status == 201
    described = await (await get(sqlite_api, f"/admin/distributions/{answer['id']}")).json()
    assert described["send_at"] == "2023-11-14T22:13:20Z"


async def test_an_invalid_number_on_a_list_is_skipped(sqlite_api, settings):
    await import_list(sqlite_api)
    engine = connect(settings.database_url)
    try:  # a number the list holds that phonenumbers no longer takes
        from engine.records.schema import contacts
        async with engine.begin() as connection:
            await connection.execute(contacts.update().where(contacts.c.phone == "+12015550103")
                                     .values(phone="+1555"))
    finally:
        await engine.dispose()
    _, answer = await create(sqlite_api, {"survey": "feedback", "list": "people"})
    assert answer["estimate"]["skipped"] == {"invalid_number": 1}
    assert (await recipient_rows(settings.database_url))["+1555"] == ("skipped", "invalid_number")


async def test_the_contact_frequency_rule_skips_numbers_invited_too_often(make_client, settings):
    client = await make_client(dataclasses.replace(settings, contact_frequency=FrequencyRule.parse("1/7d")))
    await import_list(client)
    _, first = await create(client, {"survey": "feedback", "list": "people"})
    engine = connect(settings.database_url)
    try:
        assert await dist.set_recipient(engine, first["id"], "+12015550101", "sent", sid="SM1", now=NOW)
    finally:
        await engine.dispose()
    _, second = await create(client, {"survey": "feedback", "list": "people"})
    assert second["estimate"]["skipped"] == {"frequency": 1} and second["estimate"]["recipients"] == 2


def test_a_contact_frequency_is_read_as_n_per_period():
    assert FrequencyRule.parse("1/7d") == FrequencyRule(1, 7 * 86400)
    assert str(FrequencyRule.parse(" 3/12h ")) == "3/12h"
    for wrong in ("", "1", "0/7d", "x/7d", "1/7", "1/7y", "-1/7d"):
        with pytest.raises(ValueError, match="N/PERIOD"):
            FrequencyRule.parse(wrong)


def test_serve_refuses_a_wrong_contact_frequency(monkeypatch, capsys, flows_dir):
    from engine.tools.cli import main

    monkeypatch.setenv("CANVASS_CONTACT_FREQUENCY", "often")
    assert main(["serve", "--flows", str(flows_dir), "--insecure", "--port", "0"]) == 2
    assert "CANVASS_CONTACT_FREQUENCY: 'often' is not a contact frequency" in capsys.readouterr().err


# ---------------------------------------------------------------- reading, exporting, cancelling


async def test_recipients_export_as_csv_and_json_lines(api):
    await import_list(api)
    await opt_out(api.records_url, "+12015550103")
    _, answer = await create(api, {"survey": "feedback", "list": "people"})
    path = f"/admin/distributions/{answer['id']}/recipients"
    response = await get(api, path, format="csv")
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["phone", "email", "state", "reason", "sid", "error_code", "updated_at", "not_before",
                       "FirstName"]
    assert rows[1] == ["+12015550101", "a@example.com", "pending", "", "", "", "2023-11-14T22:13:20Z", "", "Al"]
    assert rows[2][:4] == ["+12015550103", "", "skipped", "opted_out"]
    lines = [json.loads(line) for line in (await (await get(api, path)).text()).splitlines()]
    assert [line["phone"] for line in lines] == ["+12015550101", "+12015550103", "+447400123456"]
    assert lines[0]["fields"] == {"FirstName": "Al"} and lines[0]["sid"] is None
    assert (await get(api, path, format="xml")).status == 400
    assert (await get(api, "/admin/distributions/DS00/recipients")).status == 404


async def test_cancelling_stops_pending_recipients_and_only_once(sqlite_api, settings):
    await import_list(sqlite_api)
    _, answer = await create(sqlite_api, {"survey": "feedback", "list": "people"})
    engine = connect(settings.database_url)
    try:
        await dist.set_recipient(engine, answer["id"], "+12015550101", "sent", now=NOW)
    finally:
        await engine.dispose()
    cancel = f"/admin/distributions/{answer['id']}/cancel"
    response = await sqlite_api.post(cancel, headers=admin_headers())
    assert response.status == 200
    assert await response.json() == {"id": answer["id"], "status": "cancelled", "cancelled": 2}
    described = await (await get(sqlite_api, f"/admin/distributions/{answer['id']}")).json()
    assert described["status"] == "cancelled" and described["counts"]["cancelled"] == 2
    assert described["counts"]["sent"] == 1 and described["finished_at"] is not None
    again = await sqlite_api.post(cancel, headers=admin_headers())
    assert again.status == 409 and (await again.json())["error"] == "not_cancellable"
    missing = await sqlite_api.post("/admin/distributions/DSnope/cancel", headers=admin_headers())
    assert missing.status == 404 and (await missing.json())["error"] == "unknown_distribution"
    assert (await get(sqlite_api, "/admin/distributions/DSnope")).status == 404


async def test_a_done_distribution_cannot_be_cancelled(sqlite_api, settings):
    await import_list(sqlite_api, body="Phone\n+12015550101\n")
    _, answer = await create(sqlite_api, {"survey": "feedback", "list": "people"})
    engine = connect(settings.database_url)
    try:
        assert await dist.mark_sending(engine, answer["id"], NOW)
        await dist.set_recipient(engine, answer["id"], "+12015550101", "delivered", now=NOW)
        assert await dist.finish_if_done(engine, answer["id"], NOW)
    finally:
        await engine.dispose()
    response = await sqlite_api.post(f"/admin/distributions/{answer['id']}/cancel", headers=admin_headers())
    assert response.status == 409 and (await response.json())["distribution_status"] == "done"


async def test_the_list_may_be_deleted_and_the_distribution_keeps_its_name(sqlite_api, settings):
    await import_list(sqlite_api)
    _, answer = await create(sqlite_api, {"survey": "feedback", "list": "people"})
    engine = connect(settings.database_url)
    try:
        from engine.records.schema import contact_lists
        async with engine.begin() as connection:
            await connection.execute(contact_lists.delete())
    finally:
        await engine.dispose()
    described = await (await get(sqlite_api, f"/admin/distributions/{answer['id']}")).json()
    assert described["list"] == "people" and described["counts"]["pending"] == 3


# ---------------------------------------------------------------- what the sender calls


async def test_the_sender_calls_on_both_databases(api):
    await import_list(api)
    _, later = await create(api, {"survey": "feedback", "list": "people", "send_at": "2023-11-15T00:00:00Z"})
    _, now = await create(api, {"survey": "feedback", "list": "people"})
    engine = connect(api.records_url)
    try:
        assert [d.id for d in await dist.due_distributions(engine, NOW)] == [now["id"]]
        due = (await dist.due_distributions(engine, NOW + timedelta(hours=3)))
        assert [d.id for d in due] == [now["id"], later["id"]]
        assert due[0].survey == "feedback" and due[0].channel == "sms" and due[0].send_at == NOW
        assert await dist.mark_sending(engine, now["id"], NOW)
        assert not await dist.mark_sending(engine, now["id"], NOW)  # once
        assert [d.status for d in await dist.due_distributions(engine, NOW)] == ["sending"]
        pending = await dist.pending_recipients(engine, now["id"], 2)
        assert [r.phone for r in pending] == ["+12015550101", "+12015550103"]
        assert pending[0].email == "a@example.com" and pending[0].fields == {"FirstName": "Al"}
        for recipient in await dist.pending_recipients(engine, now["id"], 10):
            assert await dist.set_recipient(engine, now["id"], recipient.phone, "queued", now=NOW)
        assert not await dist.finish_if_done(engine, now["id"], NOW)  # queued ones wait
        assert await dist.set_recipient(engine, now["id"], "+12015550101", "sent", sid="SM1", now=NOW)
        assert await dist.set_recipient(engine, now["id"], "+12015550103", "failed", reason="invalid",
                                        error_code=21211, now=NOW)
        assert await dist.set_recipient(engine, now["id"], "+447400123456", "unknown", now=NOW)
        assert await dist.finish_if_done(engine, now["id"], NOW)
        described = await dist.describe(engine, now["id"])
        assert described["status"] == "done" and described["finished_at"] == "2023-11-14T22:13:20Z"
        assert [d.id for d in await dist.due_distributions(engine, NOW)] == []
        async with engine.connect() as connection:
            # three invitations went out; the later distribution's rows are pending, not counted
            assert not await dist.frequency_allows(connection, "+12015550101", NOW, FrequencyRule(1, 86400))
            assert await dist.frequency_allows(connection, "+12015550101", NOW, FrequencyRule(2, 86400))
            assert await dist.frequency_allows(connection, "+12015550101", NOW + timedelta(days=2),
                                               FrequencyRule(1, 86400))
            assert await dist.frequency_allows(connection, "+12015550101", NOW, None)
    finally:
        await engine.dispose()


async def test_a_recipient_never_moves_backwards(api):
    await import_list(api, body="Phone\n+12015550101\n")
    _, answer = await create(api, {"survey": "feedback", "list": "people"})
    engine = connect(api.records_url)
    id_, phone = answer["id"], "+12015550101"

    async def state() -> tuple:
        return (await recipient_rows(api.records_url))[phone]

    try:
        assert await dist.set_recipient(engine, id_, phone, "sent", sid="SM1", now=NOW)
        assert not await dist.set_recipient(engine, id_, phone, "queued", now=NOW)
        assert await state() == ("sent", None)
        assert await dist.set_recipient(engine, id_, phone, "unknown", now=NOW) is False
        assert await dist.set_recipient(engine, id_, phone, "delivered", now=NOW)
        for later in ("queued", "sent", "undelivered", "failed", "skipped", "cancelled", "unknown"):
            assert not await dist.set_recipient(engine, id_, phone, later, now=NOW), later
        assert await state() == ("delivered", None)
        assert not await dist.set_recipient(engine, id_, "+19999999999", "sent", now=NOW)
        with pytest.raises(ValueError, match="pending"):
            await dist.set_recipient(engine, id_, phone, "pending", now=NOW)
    finally:
        await engine.dispose()


async def test_an_unknown_send_may_still_be_settled_by_its_delivery_report(sqlite_api, settings):
    await import_list(sqlite_api, body="Phone\n+12015550101\n+12015550103\n")
    _, answer = await create(sqlite_api, {"survey": "feedback", "list": "people"})
    engine = connect(settings.database_url)
    try:
        for phone in ("+12015550101", "+12015550103"):
            assert await dist.set_recipient(engine, answer["id"], phone, "unknown", now=NOW)
        assert await dist.set_recipient(engine, answer["id"], "+12015550101", "delivered", sid="SM9", now=NOW)
        assert await dist.set_recipient(engine, answer["id"], "+12015550103", "undelivered",
                                        error_code=30003, now=NOW)
        assert not await dist.set_recipient(engine, answer["id"], "+12015550103", "sent", now=NOW)
    finally:
        await engine.dispose()
    assert await recipient_rows(settings.database_url) == {
        "+12015550101": ("delivered", None), "+12015550103": ("undelivered", None)}


# ---------------------------------------------------------------- responses


def response(response_id: str, fields: dict) -> dict:
    return {"response_id": response_id, "survey": "feedback", "version": "v1", "channel": "sms",
            "phone": "+12015550101", "status": "complete", "started_at": "2024-01-01T09:00:00Z",
            "ended_at": "2024-01-01T09:05:00Z", "fields": fields, "answers": {}}


async def test_archived_responses_carry_their_distribution_and_preview_mark(records_url):
    engine = connect(records_url)
    try:
        async with engine.begin() as connection:
            await insert_responses(connection, [
                response("r1", {"distribution_id": "DS0123456789abcdef", "FirstName": "Al"}),
                response("r2", {"preview": "1"}),
                response("r3", {})])
        async with engine.connect() as connection:
            rows = {row.response_id: (row.distribution, row.preview) for row in
                    (await connection.execute(responses.select())).all()}
    finally:
        await engine.dispose()
    assert rows == {"r1": ("DS0123456789abcdef", False), "r2": (None, True), "r3": (None, False)}


# ---------------------------------------------------------------- previews


async def answer_feedback(client, number: str, first_text: str | None = None) -> None:
    phone = Phone(client, number)
    if first_text is not None:
        await phone.send(first_text)
    await phone.send("9")
    await phone.send("Friendly staff")
    assert await phone.send("1") == ["Thanks for your feedback!"]


async def exported_phones(client, **query) -> list[str]:
    response = await get(client, "/admin/responses/feedback", **query)
    assert response.status == 200
    return sorted(json.loads(line)["phone"] for line in (await response.text()).splitlines() if line)


async def test_a_preview_is_left_out_of_exports_and_summaries_unless_asked_for(api, fake_twilio):
    preview = await api.post("/admin/surveys/feedback/preview", json={"to": "+12015550101"},
                             headers=admin_headers())
    assert preview.status == 201, await preview.text()
    assert fake_twilio.messages[-1].to == "+12015550101"
    await answer_feedback(api, "+12015550101")
    await answer_feedback(api, "+12015550103", "@FEED")
    for archived in (False, True):  # still only in Redis, then in the database
        if archived:
            await api.app[ARCHIVER].archive_once()
        assert await exported_phones(api) == ["+12015550103"]
        assert await exported_phones(api, preview="true") == ["+12015550101", "+12015550103"]
        summary = await (await get(api, "/admin/surveys/feedback/summary")).json()
        assert summary["by_status"] == {"complete": 1}
        summary = await (await get(api, "/admin/surveys/feedback/summary", preview="1")).json()
        assert summary["by_status"] == {"complete": 2}
    engine = connect(api.records_url)
    try:
        async with engine.connect() as connection:
            marks = {row.phone: row.preview for row in (await connection.execute(responses.select())).all()}
    finally:
        await engine.dispose()
    assert marks == {"+12015550101": True, "+12015550103": False}
    assert (await get(api, "/admin/surveys/feedback/summary", preview="maybe")).status == 400
    assert (await get(api, "/admin/responses/feedback", preview="maybe")).status == 400


async def test_a_preview_is_refused_as_a_start_is(sqlite_api):
    answer = await sqlite_api.post("/admin/surveys/nope/preview", json={"to": "+12015550101"},
                                   headers=admin_headers())
    assert answer.status == 404
    answer = await sqlite_api.post("/admin/surveys/feedback/preview", json={"to": "x"}, headers=admin_headers())
    assert (answer.status, (await answer.json())["error"]) == (400, "bad_number")


# ---------------------------------------------------------------- the CLI


def run_cli(monkeypatch, capsys, argv: list[str]) -> tuple[int, str, str]:
    monkeypatch.setenv("CANVASS_ADMIN_TOKEN", ADMIN_TOKEN)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_cli_distributes_shows_watches_exports_and_cancels(sqlite_api, monkeypatch, capsys):
    await import_list(sqlite_api)
    server = ["--server", str(sqlite_api.make_url("")).rstrip("/")]

    async def canvass(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run_cli, monkeypatch, capsys, [*argv])

    code, out, err = await canvass("distribute", "--survey", "feedback", "--list", "people", "--dry-run", *server)
    assert code == 0 and json.loads(out)["estimate"]["recipients"] == 3 and "estimate only" in err
    code, out, err = await canvass("distribute", "--survey", "feedback", "--list", "people",
                                   "--quiet-hours", "09:00-20:00", "--at", "2030-01-01T09:00:00Z", *server)
    assert code == 0, err
    distribution_id = json.loads(out)["id"]
    assert f"{distribution_id} scheduled: 3 recipient(s)" in err
    code, out, _ = await canvass("distributions", "list", *server)
    assert [d["id"] for d in json.loads(out)] == [distribution_id]
    code, out, _ = await canvass("distributions", "show", distribution_id, *server)
    assert json.loads(out)["quiet_hours"] == {"from": "09:00", "to": "20:00"}
    code, out, _ = await canvass("distributions", "recipients", distribution_id, *server)
    assert out.splitlines()[0] == "phone,email,state,reason,sid,error_code,updated_at,not_before,FirstName"
    code, out, _ = await canvass("distributions", "cancel", distribution_id, *server)
    assert code == 0 and json.loads(out)["cancelled"] == 3
    code, out, _ = await canvass("distributions", "show", distribution_id, "--watch", *server)
    assert code == 0 and out == "[##############################] 100% 3/3 cancelled 3 · cancelled\n"
    code, _, err = await canvass("distributions", "cancel", distribution_id, *server)
    assert code == 2 and "409" in err and "Traceback" not in err
    code, _, err = await canvass("distribute", "--survey", "feedback", "--list", "nobody", *server)
    assert code == 2 and "there is no contact list 'nobody'" in err
    code, _, err = await canvass("distribute", "--survey", "feedback", "--list", "people",
                                 "--quiet-hours", "nine", *server)
    assert code == 2 and "FROM-TO" in err
    code, _, err = await canvass("distributions", "list", "--server", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach" in err


def test_the_progress_bar_counts_what_no_longer_waits():
    counts = dict.fromkeys(dist.STATES, 0) | {"pending": 5, "queued": 1, "sent": 2, "delivered": 1, "skipped": 1}
    line = progress_line({"counts": counts, "status": "sending"})
    assert line == "[############..................]  40% 4/10 sent 2 delivered 1 skipped 1 · sending"


def test_watching_redraws_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter([{"status": "sending", "counts": dict.fromkeys(dist.STATES, 0) | {"pending": 1}},
                    {"status": "done", "counts": dict.fromkeys(dist.STATES, 0) | {"sent": 1}}])

    class Server:
        def call(self, method, path):
            return next(answers)

    out = Terminal()
    assert watch(Server(), "DS1", out, sleep=lambda _: None)["status"] == "done"
    assert out.getvalue().count("\r\x1b[2K") == 2 and out.getvalue().endswith("· done\n")
