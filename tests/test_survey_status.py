"""A survey's lifecycle: active, paused or closed, set through the admin API and the CLI, kept
in Redis for every worker and across restarts, and refused everywhere it would take new
respondents (starts, access codes, distributions, links) or, when closed, answers."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, admin_headers
from fake_twilio import Phone
from test_distribution_sending import distribute, recipients, work
from test_distributions import import_list
from test_web_survey import Form, answer, link_path, page, post

from engine import conversation as conv
from engine import policy
from engine.flow import compile_flow
from engine.tools import cli
from server import ARCHIVER, SERVICE

WEB_FLOW = Path(__file__).parent / "flows" / "web" / "webtest.yaml"
SPANISH = """\
survey: encuesta
title: Encuesta web
languages: [es, en]
access_code: {es: "@OPINA", en: "@OPINION"}
flow:
  - ask: motivo
    type: text
    prompt: {es: "¿Por qué?", en: "Why?"}
    max_length: 20
  - ask: visita
    type: choice
    prompt: {es: "¿Qué compró?", en: "What did you buy?"}
    choices:
      - {es: "Comida", en: "Food"}
      - {es: "Ropa", en: "Clothes"}
"""


@pytest.fixture
async def app(make_client, settings, flows_dir):
    shutil.copy(WEB_FLOW, flows_dir / WEB_FLOW.name)
    (flows_dir / "encuesta.yaml").write_text(SPANISH, encoding="utf-8")
    client = await make_client(settings)
    client.records_url = settings.database_url
    return client


async def set_status(client, survey: str, status, token: str = ADMIN_TOKEN):
    return await client.put(f"/admin/surveys/{survey}/status", data=json.dumps({"status": status}),
                            headers={**admin_headers(token), "Content-Type": "application/json"})


async def status_of(client, survey: str) -> str:
    answer = await client.get(f"/admin/surveys/{survey}/status", headers=admin_headers())
    assert answer.status == 200
    return (await answer.json())["status"]


async def start(client, survey: str = "feedback", to: str = "+12015550101"):
    return await client.post(f"/admin/surveys/{survey}/start", json={"to": to}, headers=admin_headers())


# ---------------------------------------------------------------- the core's rules


def test_the_rules_of_each_status():
    assert [policy.opens_sessions(s) for s in policy.SURVEY_STATUSES] == [True, False, False]
    assert [policy.takes_answers(s, "sms") for s in policy.SURVEY_STATUSES] == [True, True, False]
    assert [policy.takes_answers(s, "web") for s in policy.SURVEY_STATUSES] == [True, False, False]


def test_the_core_refuses_a_start_and_an_access_code_while_not_active():
    from dsl.load import parse_source
    flow = compile_flow(parse_source(SPANISH, "x.yaml"), SPANISH, "yaml")
    flows = conv.FlowSet([flow])
    flows.statuses["encuesta"] = policy.PAUSED
    with pytest.raises(conv.NotStartable) as refused:
        conv.start(flow, conv.Respondent("sms", "+12015550101"), {}, 0.0, flows=flows)
    assert refused.value.reason == "survey_paused"
    outcome = conv.receive(flows, conv.Respondent("sms", "+12015550101"), "@OPINION", 0.0)
    assert outcome.replies == ["This survey is paused. Please try again later."]
    assert outcome.respondent.session is None
    flows.statuses["encuesta"] = policy.CLOSED
    outcome = conv.receive(flows, conv.Respondent("sms", "+12015550101"), "@opina", 0.0)
    assert outcome.replies == ["Esta encuesta está cerrada y ya no acepta respuestas."]  # the code's language


# ---------------------------------------------------------------- the admin API and the CLI


async def test_the_status_is_active_until_set_and_outlives_a_restart(app, make_client, settings):
    assert await status_of(app, "feedback") == "active"
    answer = await set_status(app, "feedback", "paused")
    assert answer.status == 200 and await answer.json() == {"survey": "feedback", "status": "paused"}
    assert await status_of(app, "feedback") == "paused"
    again = await make_client(settings)  # another worker, or the server restarted: Redis holds it
    assert await status_of(again, "feedback") == "paused"
    assert (await set_status(again, "feedback", "active")).status == 200
    assert await status_of(app, "feedback") == "active"


async def test_a_status_set_on_one_worker_holds_on_another_within_a_second(app, make_client, settings,
                                                                            monkeypatch):
    from engine.runtime import service as service_module

    monkeypatch.setattr(service_module, "STATUSES_FRESH", 0.3)
    other = await make_client(settings)  # a second worker on the same Redis
    assert (await start(other, to="+12015550181")).status == 201  # it has read the statuses: active
    assert (await set_status(app, "feedback", "paused")).status == 200
    assert (await start(app, to="+12015550182")).status == 409  # the worker that set it: at once
    await asyncio.sleep(0.35)
    refused = await start(other, to="+12015550183")
    assert refused.status == 409 and (await refused.json())["error"] == "survey_paused"


@pytest.mark.parametrize("survey, body, status, error", [
    ("feedback", {"status": "open"}, 400, "bad_status"),
    ("feedback", {"status": None}, 400, "bad_status"),
    ("feedback", {}, 400, "bad_status"),
    ("feedback", {"status": "paused", "why": "x"}, 400, "bad_status"),
    ("feedback", ["paused"], 400, "bad_json"),
    ("nope", {"status": "paused"}, 404, "unknown_survey"),
])
async def test_a_bad_status_request_is_refused_clearly(app, survey, body, status, error):
    answer = await app.put(f"/admin/surveys/{survey}/status", data=json.dumps(body),
                           headers={**admin_headers(), "Content-Type": "application/json"})
    assert answer.status == status and (await answer.json())["error"] == error


async def test_the_status_needs_the_admin_token(app):
    assert (await set_status(app, "feedback", "closed", token="wrong")).status == 401
    assert (await app.get("/admin/surveys/feedback/status")).status == 401
    assert (await app.get("/admin/surveys/nope/status", headers=admin_headers())).status == 404


def run_cli(monkeypatch, capsys, argv: list[str]) -> tuple[int, str, str]:
    monkeypatch.setenv("CANVASS_ADMIN_TOKEN", ADMIN_TOKEN)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_cli_shows_and_sets_the_status(app, monkeypatch, capsys):
    server = ["--server", str(app.make_url("")).rstrip("/")]

    async def canvass(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run_cli, monkeypatch, capsys, [*argv])

    code, out, _ = await canvass("survey", "status", "feedback", *server)
    assert code == 0 and json.loads(out) == {"survey": "feedback", "status": "active"}
    code, out, _ = await canvass("survey", "status", "feedback", "closed", *server)
    assert code == 0 and json.loads(out)["status"] == "closed"
    assert await status_of(app, "feedback") == "closed"
    code, _, err = await canvass("survey", "status", "nope", "paused", *server)
    assert code == 2 and "there is no survey 'nope'" in err and "Traceback" not in err


# ---------------------------------------------------------------- starts and SMS


@pytest.mark.parametrize("status", ["paused", "closed"])
async def test_an_admin_start_is_refused_while_not_active(app, fake_twilio, status):
    await set_status(app, "feedback", status)
    answer = await start(app)
    body = await answer.json()
    assert answer.status == 409 and body["error"] == f"survey_{status}"
    assert f"the survey is {status}" in body["message"]
    assert fake_twilio.messages == []
    await set_status(app, "feedback", "active")
    assert (await start(app)).status == 201


async def test_an_access_code_of_a_survey_not_active_is_answered_in_its_language(app):
    phone = Phone(app, "+12015550111")
    await set_status(app, "feedback", "paused")
    assert await phone.send("@FEED") == ["This survey is paused. Please try again later."]
    await set_status(app, "encuesta", "closed")
    assert await phone.send("@OPINA") == ["Esta encuesta está cerrada y ya no acepta respuestas."]
    await set_status(app, "feedback", "active")
    assert "How likely" in (await phone.send("@FEED"))[0]


async def test_a_text_conversation_goes_on_while_paused_and_stops_when_closed(app):
    phone = Phone(app, "+12015550112")
    await phone.send("@FEED")
    await set_status(app, "feedback", "paused")
    assert await phone.send("9") == ["What is the main reason for your score?"]  # under way: goes on
    await set_status(app, "feedback", "closed")
    assert await phone.send("Fast") == ["This survey is closed and no longer accepts answers."]
    assert await phone.send("1") == ["You are not currently taking a survey."]
    await app.app[ARCHIVER].archive_once()
    response = await app.get("/admin/responses/feedback?format=jsonl", headers=admin_headers())
    [record] = [json.loads(line) for line in (await response.text()).splitlines()]
    assert record["status"] == "expired" and record["answers"]["score"]["score"] == 9
    assert "reason" not in record["answers"] or record["answers"]["reason"] in (None, "")


async def test_a_closed_surveys_session_gets_no_reminder(app, fake_twilio, clock):
    assert (await start(app)).status == 201
    await set_status(app, "feedback", "closed")
    clock.advance(11 * 60)  # the reminder is due
    await app.app[SERVICE].sweep()
    assert len(fake_twilio.messages) == 1  # the invitation, no reminder
    await app.app[ARCHIVER].archive_once()
    response = await app.get("/admin/responses/feedback?format=jsonl", headers=admin_headers())
    [record] = [json.loads(line) for line in (await response.text()).splitlines()]
    assert record["status"] == "expired"


# ---------------------------------------------------------------- distributions


async def test_a_distribution_is_not_created_for_a_survey_not_active(app):
    await import_list(app)
    await set_status(app, "feedback", "paused")
    answer = await app.post("/admin/distributions", headers=admin_headers(),
                            json={"survey": "feedback", "list": "people"})
    assert answer.status == 409 and (await answer.json())["error"] == "survey_paused"
    estimate = await app.post("/admin/distributions", params={"dry_run": "true"}, headers=admin_headers(),
                              json={"survey": "feedback", "list": "people"})
    assert estimate.status == 200  # an estimate is still shown


async def test_invitations_wait_while_paused_and_are_skipped_when_closed(app, fake_twilio):
    await import_list(app)
    first = await distribute(app)
    await set_status(app, "feedback", "paused")
    await work(app, rounds=2)
    assert fake_twilio.messages == []
    assert {state[0] for state in (await recipients(app, first)).values()} == {"pending"}
    await set_status(app, "feedback", "active")
    second = await distribute(app, name="second")
    await set_status(app, "feedback", "closed")
    await work(app)
    assert fake_twilio.messages == []
    for distribution in (first, second):
        states = await recipients(app, distribution)
        assert {state[:2] for state in states.values()} == {("skipped", "survey_closed")}


# ---------------------------------------------------------------- the web pages


@pytest.mark.parametrize("status, code, heading, text", [
    ("paused", 503, "Survey paused", "This survey is paused. Please try again later."),
    ("closed", 410, "Survey closed", "This survey is closed and no longer accepts answers."),
])
async def test_a_link_of_a_survey_not_active_shows_a_clear_page(app, status, code, heading, text):
    fresh, under_way = await link_path(app), await link_path(app)
    await answer(app, under_way, "9")
    form = await page(app, under_way)
    await set_status(app, "webtest", status)
    for path in (fresh, under_way, "/s/webtest"):
        shown = await page(app, path, status=code)
        assert heading in shown.text and text in shown.text and shown.html_lang == "en"
        assert shown.buttons == [] and shown.hidden == {}
    assert (await post(app, under_way, form, "ok")).status == 303  # not applied meanwhile
    start = await app.post("/s/webtest", data={"start": "1", "csrf": "x"}, allow_redirects=False)
    assert start.status == 403
    made = await app.post("/admin/surveys/webtest/links", json={}, headers=admin_headers())
    assert made.status == 409 and (await made.json())["error"] == f"survey_{status}"
    await set_status(app, "webtest", "active")
    again = await page(app, under_way)
    if status == "paused":  # the link takes the respondent back to where they left
        assert "What is the main reason" in again.text and again.textarea is not None
    else:  # closing closed its session: what it answered is kept as a partial response
        assert "You have already answered this survey." in again.text
        await app.app[ARCHIVER].archive_once()
        response = await app.get("/admin/responses/webtest?format=jsonl", headers=admin_headers())
        [record] = [json.loads(line) for line in (await response.text()).splitlines()]
        assert record["status"] == "expired" and record["answers"]["score"]["score"] == 9
    assert "How likely" in (await page(app, fresh)).text


async def test_an_anonymous_start_while_paused_opens_nothing(app):
    start = await page(app, "/s/webtest")
    await set_status(app, "webtest", "paused")
    answer = await app.post("/s/webtest", data={**start.hidden, "start": "1"}, allow_redirects=False)
    assert answer.status == 303 and "canvass_visitor" not in answer.cookies
    assert "Survey paused" in (await page(app, "/s/webtest", status=503)).text


async def test_every_label_of_the_pages_is_in_the_respondents_language(app):
    made = await app.post("/admin/surveys/encuesta/links", json={}, headers=admin_headers())
    path = "/l/" + (await made.json())["token"]
    html = await (await app.get(path)).text()
    first = Form(html)
    assert first.html_lang == "es" and "¿Por qué?" in first.text
    assert "Hasta 20 caracteres." in first.text and ">Aceptar</button>" in html
    assert "OK" not in first.text
    choice = await answer(app, path, "Precio")
    assert choice.radios == ["1", "2"] and "Comida" in choice.text
    assert "Responda la pregunta antes de continuar." in (await answer(app, path, "")).text
    assert "Responda con una de estas opciones: 1, 2." in (await answer(app, path, "9")).text
    made = await app.post("/admin/surveys/encuesta/links", json={"fields": {"Language": "en"}}, headers=admin_headers())
    english = "/l/" + (await made.json())["token"]
    assert (await page(app, english)).html_lang == "en"
    start = await page(app, "/s/encuesta")
    assert start.html_lang == "es" and "Comenzar" in start.text
    await set_status(app, "encuesta", "paused")
    paused = await page(app, path, status=503)
    assert paused.html_lang == "es" and "Encuesta en pausa" in paused.text
    assert "Esta encuesta está en pausa." in paused.text
    assert (await page(app, english, status=503)).html_lang == "en"


async def test_an_unknown_link_speaks_the_browsers_language(app):
    response = await app.get("/l/AAAAAAAAAAAAAAAAAAAAAA", headers={"Accept-Language": "it, fr-CA;q=0.8, en;q=0.5"})
    assert response.status == 404
    missing = Form(await response.text())
    assert missing.html_lang == "fr" and "Enquête introuvable" in missing.text
    assert (await page(app, "/s/nope", status=404)).html_lang == "en"
