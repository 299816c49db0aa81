"""Link distributions: each recipient's invitation carries its own link to the web survey, sent
through the outbox like a 2-way invitation; the survey answered over the pages leaves a response
with the distribution, channel web and the contact's fields; duplicates within a day are skipped;
alphanumeric senders are for link distributions only; the opt-out URL opts the number out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import admin_headers
from fake_twilio import PUBLIC_BASE_URL, UNSUBSCRIBED, Phone
from sqlalchemy import select
from test_distribution_sending import recipients, status_of, work
from test_distributions import import_list
from test_sandbox import local, sandbox
from test_web_survey import WEB_FLOW, Form, answer, page

from engine import invitations
from engine.records.database import connect
from engine.records.distributions import DUPLICATE_WINDOW, FrequencyRule
from engine.records.links import TOKEN_BYTES, is_respondent_id, new_token
from engine.records.schema import credit_usage, opt_outs, responses, web_links
from server import ARCHIVER, DISTRIBUTOR, SERVICE

CONTACTS = ("Phone,FirstName\n"
            "+12015550101,Al\n"
            "+12015550102,Bo\n")
MESSAGE = "Hi ${e://Field/FirstName}, how did we do? ${l://SurveyLink} Opt out: ${l://OptOutURL}"
LINK = re.compile(re.escape(PUBLIC_BASE_URL) + r"(/l/[A-Za-z0-9_-]+)")
SURVEYS = Path(__file__).resolve().parent.parent / "surveys"
OPT_OUT = re.compile(re.escape(PUBLIC_BASE_URL) + r"(/o/[A-Za-z0-9_-]+)")


@pytest.fixture
async def links_api(make_client, settings, flows_dir, records_url):
    """A server with the web survey's flow, on SQLite then PostgreSQL."""
    shutil.copy(WEB_FLOW, flows_dir / WEB_FLOW.name)
    client = await make_client(dataclasses.replace(settings, database_url=records_url))
    client.records_url = records_url
    return client


@pytest.fixture
async def lite(make_client, settings, flows_dir):
    """The same on SQLite only, for what does not depend on the database."""
    shutil.copy(WEB_FLOW, flows_dir / WEB_FLOW.name)
    client = await make_client(settings)
    client.records_url = settings.database_url
    return client


async def send_links(client, **extra) -> tuple[int, dict]:
    body = {"survey": "webtest", "list": "people", "mode": "link", "message": MESSAGE, **extra}
    answer = await client.post("/admin/distributions", headers=admin_headers(), json=body)
    return answer.status, await answer.json()


async def link_distribution(client, **extra) -> str:
    status, body = await send_links(client, **extra)
    assert status == 201, body
    return body["id"]


async def rows(client, table, *where) -> list:
    engine = connect(client.records_url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(select(table).where(*where))).all()
    finally:
        await engine.dispose()


async def test_a_link_distribution_is_answered_on_the_web_with_the_contact_and_the_distribution(
        links_api, fake_twilio, clock):
    await import_list(links_api, body=CONTACTS)
    distribution = await link_distribution(links_api, sender="Canvass")
    await work(links_api, rounds=2)
    sent = {message.to: message for message in fake_twilio.messages}
    assert sorted(sent) == ["+12015550101", "+12015550102"] and len(fake_twilio.messages) == 2
    assert {message.form.get("From") for message in sent.values()} == {"Canvass"}  # one-way: alphanumeric
    body = sent["+12015550101"].body
    path = LINK.search(body).group(1)
    assert body == (f"Hi Al, how did we do? {PUBLIC_BASE_URL}{path} Opt out: "
                    f"{PUBLIC_BASE_URL}{OPT_OUT.search(body).group(1)}")
    token = path[3:]
    assert len(token) >= TOKEN_BYTES * 4 // 3  # 128 bits of randomness, URL-safe Base64
    # nothing of the contact in the link (a name as short as "Al" can occur in random text by chance)
    assert "2015550101" not in body.replace(token, "") and "2015550101" not in token
    assert LINK.search(sent["+12015550102"].body).group(1) != path
    states = await recipients(links_api, distribution)
    assert {phone: state[0] for phone, state in states.items()} == dict.fromkeys(states, "sent")
    assert (await status_of(links_api, distribution))["mode"] == "link"
    # no conversation opened over SMS: the survey is answered at the link, and two days later
    # (past a 2-way invitation's expiry) the link still opens it
    sessions = await links_api.get("/admin/sessions/+12015550101", headers=admin_headers())
    assert (await sessions.json())["channels"]["sms"]["respondent"]["session"] is None
    clock.advance(72 * 3600)
    await links_api.app[SERVICE].sweep()
    first = await page(links_api, path)
    assert "Hi Al! How likely are you to recommend us?" in first.text
    await answer(links_api, path, "9")
    await answer(links_api, path, "Fast")
    end = await answer(links_api, path, "1")
    assert 'Thanks Al, you said "Fast".' in end.text
    await links_api.app[ARCHIVER].archive_once()
    [row] = await rows(links_api, responses, responses.c.survey == "webtest")
    assert row.channel == "web" and is_respondent_id(row.phone) and row.status == "complete"
    assert row.distribution == distribution and row.fields["FirstName"] == "Al"


async def test_the_estimate_counts_each_invitation_with_its_links(lite):
    await import_list(lite, body="Phone,FirstName\n+12015550101,Al\n")
    padded = "x" * 100 + " ${l://SurveyLink}"  # 100 + 1 + a link of 52 characters: 153, one segment
    status, body = await send_links(lite, message=padded)
    assert status == 201 and body["estimate"]["segments"] == 1
    answer = await lite.post("/admin/distributions?dry_run=true", headers=admin_headers(), json={
        "survey": "webtest", "list": "people", "mode": "link", "message": "x" * 110 + " ${l://SurveyLink}"})
    assert (await answer.json())["estimate"]["segments"] == 2  # 163 characters once the link is in
    assert len(f"{PUBLIC_BASE_URL}/l/") + invitations.TOKEN_LENGTH == 52
    assert len(new_token()) == invitations.TOKEN_LENGTH


async def test_a_retried_send_makes_no_second_link_and_no_second_message(lite, fake_twilio):
    from engine.records import distributions as records

    await import_list(lite, body="Phone,FirstName\n+12015550101,Al\n")
    distribution_id = await link_distribution(lite)
    app = lite.app
    engine = app[SERVICE].records.engine
    [distribution] = await records.due_distributions(engine, datetime.fromtimestamp(app[SERVICE].now(), UTC))
    [recipient] = await records.pending_recipients(engine, distribution_id, 10)
    distributor = app[DISTRIBUTOR]
    # a worker invites the recipient and dies before the records say queued; the next one tries again
    assert await distributor._invite(distribution, None, recipient, False) == ("queued", None)
    assert await distributor._invite(distribution, None, recipient, False) == ("queued", None)
    await work(lite, rounds=2)
    assert len(fake_twilio.messages) == 1
    assert len(await rows(lite, web_links, web_links.c.distribution == distribution_id)) == 1
    assert (await recipients(lite, distribution_id))["+12015550101"][0] == "sent"


async def test_the_same_invitation_to_a_number_within_a_day_is_skipped_as_a_duplicate(lite, fake_twilio, clock):
    await import_list(lite, body=CONTACTS)
    first, second = await link_distribution(lite), await link_distribution(lite)  # both before either sends
    await work(lite, rounds=2)
    assert len(fake_twilio.messages) == 2  # one per number, from whichever went first
    states = {**{(first, p): s for p, s in (await recipients(lite, first)).items()},
              **{(second, p): s for p, s in (await recipients(lite, second)).items()}}
    for phone in ("+12015550101", "+12015550102"):
        outcomes = sorted(states[(d, phone)][:2] for d in (first, second))
        assert outcomes == [("sent", None), ("skipped", "duplicate")]
    # created after the first went: skipped at once, and the estimate says so
    status, body = await send_links(lite)
    assert status == 201 and body["estimate"]["skipped"] == {"duplicate": 2}
    shown = await lite.get(f"/admin/distributions/{body['id']}/recipients", headers=admin_headers())
    assert '"reason": "duplicate"' in (await shown.text()).replace('":"', '": "')
    # another text goes; the same text goes again a day later
    await link_distribution(lite, message="Hello ${e://Field/FirstName}: ${l://SurveyLink}")
    await work(lite)
    assert len(fake_twilio.messages) == 4
    clock.advance(DUPLICATE_WINDOW.total_seconds() + 60)
    later = await link_distribution(lite)
    await work(lite)
    assert {state[0] for state in (await recipients(lite, later)).values()} == {"sent"}
    assert len(fake_twilio.messages) == 6


async def test_the_contact_frequency_holds_across_distributions_sent_by_two_workers_at_once(
        make_client, settings, flows_dir, fake_twilio):
    """Two link distributions of different texts (no duplicate suppression) to one list, each
    sent by its own worker in the same moment, under a rule of one invitation a week: each
    number gets one invitation, the other distribution skips it for the rule."""
    from engine.runtime.distributor import Distributor

    shutil.copy(WEB_FLOW, flows_dir / WEB_FLOW.name)
    rule = FrequencyRule.parse("1/7d")
    client = await make_client(dataclasses.replace(settings, contact_frequency=rule))
    client.records_url = settings.database_url
    numbers = [f"+1201555{n:04d}" for n in range(101, 113)]
    await import_list(client, body="Phone,FirstName\n" + "".join(f"{number},N\n" for number in numbers))
    first = await link_distribution(client, message="First ${l://SurveyLink}")
    second = await link_distribution(client, message="Second ${l://SurveyLink}")
    app = client.server.app
    mine = app[DISTRIBUTOR]
    other = Distributor(mine.engine, app[SERVICE], app[SERVICE].clock, rule)  # another worker's
    for _ in range(3):  # (each worker keeps the distribution it leased)
        await asyncio.gather(mine.round(), other.round())
        await work(client)
    sent_to = [message.to for message in fake_twilio.messages]
    assert sorted(sent_to) == sorted(numbers)  # each number once
    firsts, seconds = await recipients(client, first), await recipients(client, second)
    for number in numbers:
        outcomes = sorted([firsts[number][:2], seconds[number][:2]])
        assert outcomes == [("sent", None), ("skipped", "frequency")], (number, outcomes)


async def test_two_way_distributions_are_not_suppressed_as_duplicates(lite, fake_twilio):
    await import_list(lite, body="Phone,FirstName\n+12015550101,Al\n")
    phone = Phone(lite, "+12015550101")
    for _ in range(2):
        answer = await lite.post("/admin/distributions", headers=admin_headers(),
                                 json={"survey": "webtest", "list": "people"})
        distribution = (await answer.json())["id"]
        await work(lite)
        assert (await recipients(lite, distribution))["+12015550101"][:2] == ("sent", None)
        for text in ("9", "Fast", "1"):  # the conversation ends: the number may be invited again
            await phone.send(text)
    bodies = fake_twilio.bodies("+12015550101")
    assert bodies[0] == bodies[1] and bodies[0].startswith("Hi Al!")


@pytest.mark.parametrize("extra, error, says", [
    ({"mode": "web"}, "bad_mode", "'mode' must be 2way"),
    ({"message": None}, "bad_message", "${l://SurveyLink}"),
    ({"message": "Tell us how we did!"}, "bad_message", "must carry ${l://SurveyLink}"),
    ({"message": "You said ${q://score/ChoiceGroup/SelectedChoices}: ${l://SurveyLink}"}, "bad_message",
     "an invitation goes before any answer"),
    ({"message": "Hi ${e://FirstName} ${l://SurveyLink}"}, "bad_message", "is not piped text"),
    ({"message": "Hi ${e://Field/FirstName ${l://SurveyLink}"}, "bad_message", "unterminated ${"),
    ({"message": "x" * 1601 + "${l://SurveyLink}"}, "bad_message", "at most 1600"),
    ({"channel": "whatsapp"}, "bad_channel", "go by SMS"),
    ({"sender": "Much Too Long"}, "bad_sender", "at most 11 characters"),
    ({"sender": 12}, "bad_sender", "'sender' must be"),
    ({"sender": "+1 555"}, "bad_sender", "not an SMS sender"),
    ({"mode": "2way", "message": MESSAGE}, "bad_message", "a 2-way distribution sends the survey's first question"),
    ({"mode": "2way", "message": None, "sender": "Canvass"}, "one_way_sender", "can only send one-way"),
    ({"mode": "2way", "message": None, "sender": "+12015550199"}, "bad_sender", "the survey's own sender"),
])
async def test_bad_link_distributions_are_refused_clearly(lite, extra, error, says):
    await import_list(lite, body=CONTACTS)
    body = {"survey": "webtest", "list": "people", "mode": "link", "message": MESSAGE, **extra}
    body = {name: value for name, value in body.items() if value is not None}
    answer = await lite.post("/admin/distributions", headers=admin_headers(), json=body)
    assert answer.status == 400
    refused = await answer.json()
    assert refused["error"] == error and says in refused["message"], refused


async def test_a_link_distribution_needs_a_public_address(make_client, settings, flows_dir):
    client = await make_client(dataclasses.replace(settings, public_base_url=None))
    await import_list(client, body=CONTACTS)
    status, body = await send_links(client, survey="feedback")
    assert status == 409 and body["error"] == "no_public_url"


async def test_the_opt_out_url_asks_then_opts_the_number_out_as_stop_does(lite, fake_twilio):
    await import_list(lite, body=CONTACTS)
    await link_distribution(lite)
    await work(lite)
    path = OPT_OUT.search(fake_twilio.bodies("+12015550101")[0]).group(1)
    assert OPT_OUT.search(fake_twilio.bodies("+12015550102")[0]).group(1) != path
    shown = await lite.get(path)
    assert shown.status == 200
    form = Form(await shown.text())
    assert set(form.hidden) == {"csrf"} and "stop receiving surveys by text message" in form.text
    assert "2015550101" not in form.text  # only its last digits
    assert (await lite.post(path, data={"confirm": "1"})).status == 403  # no CSRF token
    assert (await lite.post(path[:-2] + "zz", data={"confirm": "1"})).status == 404
    for _ in range(2):  # a second confirmation changes nothing
        done = await lite.post(path, data={**form.hidden, "confirm": "1"})
        assert done.status == 200 and "no more surveys" in Form(await done.text()).text
    await lite.app[ARCHIVER].archive_once()
    [row] = await rows(lite, opt_outs)
    assert (row.channel, row.phone, row.opted_out, row.how) == ("sms", "+12015550101", True, "web_page")
    # a later distribution skips the number
    answer = await lite.post("/admin/distributions", headers=admin_headers(),
                             json={"survey": "webtest", "list": "people"})
    assert (await answer.json())["estimate"]["skipped"] == {"opted_out": 1}


async def test_over_two_way_sms_the_opt_out_pipe_still_says_reply_stop():
    from dsl.load import parse_source
    from engine.flow import compile_flow
    from engine.render import OPT_OUT_TEXT

    source = "survey: s\nflow:\n  - ask: q\n    type: text\n    prompt: Hi. ${l://OptOutURL}\n"
    flow = compile_flow(parse_source(source, "s.yaml"), source, "yaml")
    assert OPT_OUT_TEXT == "Reply STOP to opt out."
    from engine import conversation
    from engine.conversation import Respondent

    outcome = conversation.start(flow, Respondent("sms", "+12015550101"), {}, 1_700_000_000.0)
    assert outcome.replies == ["Hi. Reply STOP to opt out."]


async def test_the_sandbox_shows_link_invitations_whose_links_open(make_client, settings, flows_dir):
    shutil.copy(WEB_FLOW, flows_dir / WEB_FLOW.name)
    client = await make_client(local(settings))
    client.records_url = settings.database_url
    answer = await client.post("/admin/lists/people/import", data=CONTACTS.encode(),
                               headers={"Content-Type": "text/csv"})
    assert answer.status == 200
    answer = await client.post("/admin/distributions", json={
        "survey": "webtest", "list": "people", "mode": "link", "message": MESSAGE})
    assert answer.status == 201, await answer.text()
    await work(client)
    [message] = await sandbox(client, "?to=%2B12015550102")
    found = re.search(r"http://127\.0\.0\.1:8080(/l/[A-Za-z0-9_-]+)", message["body"])
    assert found and message["body"].startswith("Hi Bo, how did we do?")
    assert "Hi Bo! How likely" in (await page(client, found.group(1))).text


async def test_link_invitations_keep_quiet_hours_and_are_counted_for_their_distribution(lite, fake_twilio, clock):
    await import_list(lite, body="Phone,FirstName\n+12015550101,Al\n")
    # START_TIME is 17:13 in New York (the number's zone): outside 09:00-17:00
    distribution = await link_distribution(lite, quiet_hours={"from": "09:00", "to": "17:00"})
    await work(lite)
    assert fake_twilio.messages == [] and (await recipients(lite, distribution))["+12015550101"][0] == "pending"
    clock.advance(datetime(2023, 11, 15, 14, 0, tzinfo=UTC).timestamp() - clock.now)  # 09:00 there
    await work(lite)
    assert len(fake_twilio.messages) == 1
    assert (await recipients(lite, distribution))["+12015550101"][0] == "sent"
    await lite.app[SERVICE].usage.flush()
    [used] = await rows(lite, credit_usage, credit_usage.c.distribution == distribution)
    assert (used.survey, used.direction, used.messages, used.segments) == ("webtest", "out", 1, 1)


async def test_a_number_twilio_reports_unsubscribed_is_opted_out(lite, fake_twilio):
    await import_list(lite, body="Phone,FirstName\n+12015550101,Al\n")
    fake_twilio.refuse["+12015550101"] = UNSUBSCRIBED
    distribution = await link_distribution(lite)
    await work(lite, rounds=2)
    assert (await recipients(lite, distribution))["+12015550101"][:4:3] == ("failed", 21610)
    sessions = await lite.get("/admin/sessions/+12015550101", headers=admin_headers())
    assert (await sessions.json())["channels"]["sms"]["respondent"]["opted_out"] is True


async def test_the_cli_sends_a_link_distribution(lite, monkeypatch, capsys):
    from test_distributions import run_cli

    await import_list(lite, body=CONTACTS)
    server = ["--server", str(lite.make_url("")).rstrip("/")]

    async def canvass(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run_cli, monkeypatch, capsys, [*argv, *server])

    code, out, err = await canvass("distribute", "--survey", "webtest", "--list", "people", "--mode", "link",
                                   "--message", MESSAGE, "--sender", "Canvass")
    assert code == 0, err
    shown = json.loads((await canvass("distributions", "show", json.loads(out)["id"]))[1])
    assert (shown["mode"], shown["message"], shown["sender"]) == ("link", MESSAGE, "Canvass")
    code, _, err = await canvass("distribute", "--survey", "webtest", "--list", "people", "--mode", "link",
                                 "--message", "no link here")
    assert code == 2 and "${l://SurveyLink}" in err and "Traceback" not in err
    code, _, err = await canvass("distribute", "--survey", "webtest", "--list", "people", "--sender", "Canvass")
    assert code == 2 and "one-way" in err


async def test_the_opt_out_page_speaks_the_language_of_the_link_or_of_the_browser(make_client, settings,
                                                                                   flows_dir, fake_twilio):
    shutil.copy(SURVEYS / "appointment-confirm.yaml", flows_dir / "appointment-confirm.yaml")
    client = await make_client(settings)
    await import_list(client, body="Phone,FirstName,Language\n+12015550111,Ana,es\n+12015550112,Al,en\n")
    answer = await client.post("/admin/distributions", headers=admin_headers(), json={
        "survey": "appointment-confirm", "list": "people", "mode": "link", "message": MESSAGE})
    assert answer.status == 201, await answer.text()
    await work(client)
    for phone, language, title in (("+12015550111", "es", "Dejar de recibir mensajes"),
                                   ("+12015550112", "en", "Stop messages")):
        path = OPT_OUT.search(fake_twilio.bodies(phone)[0]).group(1)
        shown = await client.get(path)
        text = await shown.text()
        assert shown.status == 200 and f'lang="{language}"' in text and title in text
        form = Form(text)
        done = await client.post(path, data={**form.hidden, "confirm": "1"})
        assert done.status == 200 and f'lang="{language}"' in await done.text()
    unknown = await client.get("/o/" + new_token(), headers={"Accept-Language": "fr-CA,fr;q=0.9"})
    assert unknown.status == 404 and "Lien introuvable" in await unknown.text()


async def test_on_a_web_page_the_opt_out_pipe_shows_nothing():
    from dsl.load import parse_source
    from engine import conversation
    from engine.conversation import Respondent
    from engine.flow import compile_flow

    source = "survey: s\nflow:\n  - ask: q\n    type: text\n    prompt: Hi. ${l://OptOutURL}\n"
    flow = compile_flow(parse_source(source, "s.yaml"), source, "yaml")
    outcome = conversation.start(flow, Respondent("web", "web-" + "a" * 28), {}, 1_700_000_000.0)
    assert outcome.replies == ["Hi. "]  # a page takes no keywords: no "Reply STOP" on it
