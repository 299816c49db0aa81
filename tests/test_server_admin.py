"""The admin API (auth, starting surveys through Twilio, exports, sessions), status callbacks, health."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest
from conftest import ADMIN_TOKEN, SERVICE_SID, admin_headers
from fake_twilio import ACCOUNT_SID, UNSUBSCRIBED, Phone

ADMIN_GETS = ["/admin/flows", "/admin/responses/feedback", "/admin/sessions/+15551230001"]


async def start(client, survey: str, body, token: str = ADMIN_TOKEN):
    data = body if isinstance(body, str) else json.dumps(body)
    return await client.post(f"/admin/surveys/{survey}/start", data=data,
                             headers={**admin_headers(token), "Content-Type": "application/json"})


async def session_of(client, number: str, channel: str = "sms") -> dict:
    response = await client.get(f"/admin/sessions/{number}", headers=admin_headers())
    assert response.status == 200
    return (await response.json())["channels"][channel]


@pytest.mark.parametrize("path", ADMIN_GETS)
@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-token"),
    pytest.param(admin_headers("wrong"), id="wrong-token"),
    pytest.param({"Authorization": f"Basic {ADMIN_TOKEN}"}, id="not-bearer"),
])
async def test_the_admin_api_needs_the_bearer_token(client, path, headers):
    response = await client.get(path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_without_an_admin_token_the_admin_api_is_closed_unless_insecure(make_client, settings):
    closed = await make_client(dataclasses.replace(settings, admin_token=None))
    assert (await closed.get("/admin/flows", headers=admin_headers("anything"))).status == 401
    assert (await closed.post("/admin/reload")).status == 401
    open_ = await make_client(dataclasses.replace(settings, admin_token=None, insecure=True, auth_token=None,
                                                  account_sid=None))
    assert (await open_.get("/admin/flows")).status == 200


async def test_start_sends_the_first_question_through_twilio(client, fake_twilio):
    response = await start(client, "feedback", {"to": "+1 (555) 123-0010", "channel": "sms",
                                                "fields": {"FirstName": "Ana"}})
    assert response.status == 201, await response.text()
    started = await response.json()
    [sent] = fake_twilio.messages
    assert sent.account_sid == ACCOUNT_SID and sent.username == ACCOUNT_SID
    assert sent.form["To"] == "+15551230010"
    assert sent.form["MessagingServiceSid"] == SERVICE_SID and "From" not in sent.form
    assert sent.form["Body"] == "Hi Ana! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."
    assert sent.form["StatusCallback"] == "https://canvass.example.com/twilio/status"
    assert started["messages"] and started["messages"][0].startswith("SM")
    conversation = await session_of(client, "+15551230010")
    assert conversation["respondent"]["session"]["fields"]["FirstName"] == "Ana"
    assert conversation["deliveries"][started["messages"][0]]["status"] == "queued"
    assert await Phone(client, "+15551230010").send("10") == ["What is the main reason for your score?"]


async def test_start_uses_the_surveys_own_sender_or_the_from_number(make_client, settings, fake_twilio):
    client = await make_client(dataclasses.replace(settings, messaging_service_sid=None,
                                                   from_number="+15550009999"))
    assert (await start(client, "templated", {"to": "+15551230011"})).status == 201
    assert (await start(client, "invite", {"to": "+15551230012"})).status == 201
    templated, invite = fake_twilio.messages
    assert templated.form["MessagingServiceSid"] == "MG00000000000000000000000000000001"
    assert invite.form["From"] == "+15550009999" and "MessagingServiceSid" not in invite.form


async def test_start_refuses_an_open_session_and_an_opt_out_with_409(client, fake_twilio):
    assert (await start(client, "feedback", {"to": "+15551230013"})).status == 201
    again = await start(client, "invite", {"to": "+15551230013"})
    assert again.status == 409 and (await again.json())["error"] == "open_session"
    await Phone(client, "+15551230014").send("STOP")
    opted_out = await start(client, "feedback", {"to": "+15551230014"})
    assert opted_out.status == 409 and (await opted_out.json())["error"] == "opted_out"
    assert len(fake_twilio.messages) == 1


@pytest.mark.parametrize("survey, body, status, error", [
    ("nope", {"to": "+15551230015"}, 404, "unknown_survey"),
    ("feedback", "{not json", 400, "bad_json"),
    ("feedback", "[1, 2]", 400, "bad_json"),
    ("feedback", {"to": "12345"}, 400, "bad_number"),
    ("feedback", {"to": "+1555"}, 400, "bad_number"),
    ("feedback", {}, 400, "bad_number"),
    ("feedback", {"to": "+15551230015", "channel": "fax"}, 400, "bad_channel"),
    ("feedback", {"to": "+15551230015", "fields": ["Ana"]}, 400, "bad_fields"),
    ("feedback", {"to": "+15551230015", "fields": {"FirstName": {"nested": 1}}}, 400, "bad_fields"),
])
async def test_start_rejects_bad_requests(client, fake_twilio, redis_sync, survey, body, status, error):
    response = await start(client, survey, body)
    assert response.status == status
    assert (await response.json())["error"] == error
    assert fake_twilio.messages == [] and redis_sync.keys("cv:{*") == []


async def test_a_start_twilio_refuses_with_21610_opts_the_number_out(client, fake_twilio):
    fake_twilio.refuse["+15551230016"] = UNSUBSCRIBED
    response = await start(client, "feedback", {"to": "+15551230016"})
    assert response.status == 409 and (await response.json())["error"] == "opted_out"
    respondent = (await session_of(client, "+15551230016"))["respondent"]
    assert respondent["opted_out"] is True and respondent["session"] is None


@pytest.mark.parametrize("fraction", [0.0, 0.6332953])  # stored times keep whole seconds
async def test_a_start_twilio_refuses_otherwise_is_a_502_and_leaves_no_session(client, fake_twilio, clock,
                                                                               fraction):
    clock.advance(fraction)
    fake_twilio.refuse["+15551230017"] = (21211, "Invalid 'To' Phone Number")
    response = await start(client, "feedback", {"to": "+15551230017"})
    assert response.status == 502 and "21211" in (await response.json())["message"]
    respondent = (await session_of(client, "+15551230017"))["respondent"]
    assert respondent["session"] is None and respondent["opted_out"] is False
    assert (await start(client, "feedback", {"to": "+15551230017"})).status == 502  # not 409


def status_form(sid: str, to: str, status: str, error_code: str | None = None) -> dict[str, str]:
    form = {"MessageSid": sid, "MessageStatus": status, "To": to, "From": "+15550000000",
            "AccountSid": ACCOUNT_SID}
    if error_code:
        form["ErrorCode"] = error_code
    return form


async def test_status_callbacks_record_delivery_and_21610_opts_out(client):
    phone = Phone(client, "+15551230018")
    await phone.send("@feed")
    delivered = await phone.post(status_form("SM" + "d" * 32, phone.number, "delivered"), path="/twilio/status")
    assert delivered.status == 204
    failed = await phone.post(status_form("SM" + "e" * 32, phone.number, "failed", "21610"), path="/twilio/status")
    assert failed.status == 204
    conversation = await session_of(client, phone.number)
    assert conversation["deliveries"]["SM" + "d" * 32]["status"] == "delivered"
    assert conversation["deliveries"]["SM" + "e" * 32] == {**conversation["deliveries"]["SM" + "e" * 32],
                                                          "status": "failed", "error_code": 21610}
    assert conversation["respondent"]["opted_out"] is True
    assert conversation["respondent"]["session"] is None
    assert await phone.send("5") == []


async def test_a_forged_status_callback_is_refused(client, redis_sync):
    phone = Phone(client, "+15551230019")
    response = await phone.post(status_form("SM1", phone.number, "failed", "21610"), path="/twilio/status",
                                signature="forged")
    assert response.status == 403
    assert redis_sync.keys("cv:{*") == []


async def test_responses_export_as_jsonl_and_as_csv_with_a_column_per_answer(client):
    phone = Phone(client, "+15551230020")
    for text in ("@feed", "3", "=HYPERLINK(\"x\")", "1"):
        await phone.send(text)
    await Phone(client, "+15551230021").send("@feed")
    await Phone(client, "+15551230021").send("STOP")
    jsonl = await client.get("/admin/responses/feedback", headers=admin_headers())
    assert jsonl.status == 200 and jsonl.content_type == "application/x-ndjson"
    records = [json.loads(line) for line in (await jsonl.text()).splitlines()]
    assert [r["status"] for r in records] == ["complete", "opted_out"]
    response = await client.get("/admin/responses/feedback?format=csv", headers=admin_headers())
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [row["phone"] for row in rows] == ["+15551230020", "+15551230021"]
    assert rows[0]["score"] == "3" and rows[0]["score_group"] == "detractor"
    assert rows[0]["visit"] == "1" and rows[0]["visit_label"] == "Groceries"
    assert rows[0]["reason"] == "'=HYPERLINK(\"x\")"  # a spreadsheet must not run it
    assert rows[0]["field:Q_RecipientPhoneNumber"] == "+15551230020"
    assert rows[1]["score"] == "" and rows[1]["status"] == "opted_out"


@pytest.mark.parametrize("path, status", [
    ("/admin/responses/feedback?format=xml", 400),
    ("/admin/responses/nope", 404),
    ("/admin/sessions/not-a-number", 400),
])
async def test_admin_reads_reject_bad_requests(client, path, status):
    assert (await client.get(path, headers=admin_headers())).status == status


async def test_sessions_shows_both_channels_of_a_number(client):
    await Phone(client, "+15551230022", channel="whatsapp").send("@feed")
    response = await client.get("/admin/sessions/+15551230022", headers=admin_headers())
    body = await response.json()
    assert body["phone"] == "+15551230022"
    assert body["channels"]["sms"] == {"respondent": None, "deliveries": {}}
    assert body["channels"]["whatsapp"]["respondent"]["session"]["survey"] == "feedback"


async def test_flows_lists_ids_versions_and_load_time(client):
    body = await (await client.get("/admin/flows", headers=admin_headers())).json()
    assert [f["id"] for f in body["flows"]] == ["feedback", "invite", "templated"]
    assert all(len(f["version"]) == 12 for f in body["flows"])
    assert body["loaded_at"] == "2023-11-14T22:13:20Z"  # the injected clock


async def test_health_readiness_and_metrics(client):
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["flows"] == 3
    await Phone(client, "+15551230023").send("@feed")
    await Phone(client, "+15551230024", channel="whatsapp").send("@feed")
    metrics = await (await client.get("/metrics")).text()
    for line in ('canvass_messages_in_total{channel="sms"} 1',
                 'canvass_messages_in_total{channel="whatsapp"} 1',
                 'canvass_messages_out_total{channel="whatsapp"} 1',
                 "canvass_sms_segments_out_total 1",
                 'canvass_sessions_opened_total{survey="feedback"} 2',
                 "canvass_step_seconds_count 2",
                 'canvass_step_seconds_bucket{le="+Inf"} 2'):
        assert line in metrics.splitlines(), line
