"""The web survey, link distributions, the opt-out URL and a survey's status, attacked: what a
careless browser, a hostile page or two tabs at once can do to them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import pytest
from conftest import admin_headers
from test_distribution_sending import recipients, work
from test_distributions import import_list
from test_link_distributions import CONTACTS, LINK, OPT_OUT, link_distribution, rows
from test_survey_status import SPANISH
from test_web_survey import WEB_FLOW, Form, answer, exported, link_path, page, post

from engine.records.schema import opt_outs
from engine.runtime.appkeys import ARCHIVER, SERVICE


@pytest.fixture
async def web(make_client, settings, web_flows):
    client = await make_client(settings)
    client.records_url = settings.database_url
    return client


@pytest.fixture
def lite(web):
    return web


# ---------------------------------------------------------------- personal pages


async def test_a_respondents_pages_are_never_cached(web):
    """A shared phone's back button, or a proxy, must not show one respondent's page to another."""
    path = await link_path(web, fields={"FirstName": "Ana"})
    response = await web.get(path)
    assert "no-store" in response.headers.get("Cache-Control", "")
    form = Form(await response.text())
    ended = await post(web, path, form, "9")
    for text in ("Fast", "1"):
        await answer(web, path, text)
    response = await web.get(path)  # the end page
    assert response.status == 200 and "no-store" in response.headers.get("Cache-Control", "")
    start = await web.get("/s/webtest")
    assert "no-store" in start.headers.get("Cache-Control", "")
    assert ended.status == 303


async def test_two_tabs_posting_different_answers_at_once_apply_exactly_one(web):
    path = await link_path(web)
    tabs = [await page(web, path) for _ in range(6)]
    answers = [str(n) for n in range(6)]
    posted = await asyncio.gather(*(post(web, path, tab, text) for tab, text in zip(tabs, answers, strict=True)))
    assert {response.status for response in posted} == {303}
    # whichever won, the session moved on once: the next question, then one answer recorded
    shown = await page(web, path)
    assert "What went wrong?" in shown.text  # every score was <= 6
    await answer(web, path, "1")
    await answer(web, path, "Slow")
    await answer(web, path, "1")
    [record] = await exported(web)
    assert record["messages_in"] == 4 and str(record["answers"]["score"]["score"]) in answers


async def test_a_page_of_a_session_on_a_flow_version_since_replaced_shows_its_own_question(
        web, web_flows, make_client, settings):
    """The flow is redeployed without the question a web respondent waits on: their page is
    still their version's question (as their next answer is applied on it), not a 500."""
    path = await link_path(web)
    await answer(web, path, "9")  # on `reason` now
    source = (web_flows / WEB_FLOW.name).read_text()
    (web_flows / WEB_FLOW.name).write_text(source.replace("ask: reason", "ask: why").replace(
        "q://reason/", "q://why/"))
    reloaded = await web.post("/admin/reload", headers=admin_headers())
    assert reloaded.status == 200, await reloaded.text()
    other = await make_client(settings)  # a worker started since: only the new version is live in it
    for worker in (other, web):
        shown = await worker.get(path)
        assert shown.status == 200, await shown.text()
        assert "What is the main reason" in Form(await shown.text()).text
    assert "How many times" in (await answer(other, path, "Fast")).text


# ---------------------------------------------------------------- hostile input

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def assert_escaped(html: str) -> None:
    assert "<script>alert" not in html and "<img src=x" not in html, html


async def test_piped_fields_and_answers_are_escaped_on_every_page(web):
    path = await link_path(web, fields={"FirstName": HOSTILE})
    first = await web.get(path)
    assert_escaped(await first.text())
    assert HOSTILE in Form(await first.text()).text  # shown as text, as typed
    await answer(web, path, "9")
    await answer(web, path, HOSTILE[:20])  # the reason's limit
    end = await web.get((await post(web, path, await page(web, path), "1")).headers["Location"])
    assert_escaped(await end.text())
    assert HOSTILE in Form(await end.text()).text


async def test_a_survey_title_with_quotes_stays_inside_its_open_graph_tags(make_client, settings, flows_dir):
    """Markup in a title is refused by the check (SMS shows plain text); quotes and ampersands are
    not, and must not end the tag's attribute."""
    title = """Tom's "best" survey & co onerror=alert(1) x="""
    source = WEB_FLOW.read_text().replace("title: Web test survey", "title: '" + title.replace("'", "''") + "'")
    (flows_dir / WEB_FLOW.name).write_text(source)
    client = await make_client(settings)
    start = await client.get("/s/webtest")
    html = await start.text()
    assert start.status == 200 and start.headers.get("Cache-Control") == "no-store"
    assert '"best"' not in html and "& co" not in html
    form = Form(html)
    assert form.og["og:title"] == title and form.og["og:description"].startswith(title)


@pytest.mark.parametrize("given", ["11", "-1", "10.5", "1e1", "", " ", "99999999999999999999999", "\ufffd"])
async def test_an_nps_answer_off_its_scale_asks_again(web, given):
    path = await link_path(web)
    shown = await answer(web, path, given)
    assert "How likely are you" in shown.text and shown.buttons == [str(n) for n in range(11)]


@pytest.mark.parametrize("given", ["3", "0", "Too fast", "1 2", "\x00"])
async def test_a_choice_not_offered_asks_again(web, given):
    path = await link_path(web)
    await answer(web, path, "2")
    shown = await answer(web, path, given)
    assert "What went wrong?" in shown.text, shown.text


async def test_a_text_answer_over_its_limit_asks_again_and_records_nothing_of_it(web):
    path = await link_path(web)
    await answer(web, path, "9")
    shown = await answer(web, path, "x" * 21)
    assert "What is the main reason" in shown.text and shown.textarea["maxlength"] == "20"
    shown = await answer(web, path, "y" * 40_000)  # under the form's limit, far over the question's
    assert "What is the main reason" in shown.text
    await answer(web, path, "Fast")
    await answer(web, path, "1")
    [record] = await exported(web)
    assert record["answers"]["reason"] == "Fast"


@pytest.mark.parametrize("body, content_type, status", [
    (b"answer=\xff\xfe&", "application/x-www-form-urlencoded", 400),
    (b"answer=1&", "application/x-www-form-urlencoded; charset=no-such-charset", 415),
    (b"answer=1", "application/json", 415),
    (b"answer=1", "text/plain", 415),
    (b"--x\r\nContent-Disposition: form-data; name=\"answer\"; filename=\"a.txt\"\r\n\r\nhi\r\n--x--\r\n",
     "multipart/form-data; boundary=x", 400),
    (b"--x\r\nbroken", "multipart/form-data; boundary=x", 400),
    (b"answer=" + b"x" * (70 * 1024), "application/x-www-form-urlencoded", 413),
])
async def test_a_body_that_is_not_the_form_is_a_clear_4xx(web, body, content_type, status):
    path = await link_path(web)
    form = await page(web, path)
    if body.endswith(b"&"):  # with the form's own fields: only the body's defect refuses it
        body += "&".join(f"{name}={value}" for name, value in form.hidden.items()).encode()
    response = await web.post(path, data=body, headers={"Content-Type": content_type}, allow_redirects=False)
    assert response.status == status, await response.text()
    assert "Traceback" not in await response.text()
    assert "How likely are you" in (await page(web, path)).text


async def test_an_oversized_body_without_a_length_is_refused(web):
    path = await link_path(web)

    async def chunks():
        for _ in range(40):
            yield b"x" * (64 * 1024)

    response = await web.post(path, data=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"},
                              allow_redirects=False)
    assert response.status == 413


async def test_an_answer_of_bytes_that_are_not_utf8_is_no_answer(web):
    path = await link_path(web)
    form = await page(web, path)
    body = "&".join(f"{name}={value}" for name, value in form.hidden.items()) + "&answer=%FF%FE"
    response = await web.post(path, data=body.encode(), allow_redirects=False,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 303
    assert "How likely are you" in (await page(web, path)).text


# ---------------------------------------------------------------- links and opt-out URLs


async def test_an_opt_out_token_is_no_survey_link_and_a_survey_link_no_opt_out_url(lite, fake_twilio):
    await import_list(lite, body="Phone,FirstName\n+12015550101,Al\n")
    await link_distribution(lite)
    await work(lite)
    [body] = fake_twilio.bodies("+12015550101")
    survey_token, opt_out_token = LINK.search(body).group(1)[3:], OPT_OUT.search(body).group(1)[3:]
    assert (await lite.get(f"/l/{opt_out_token}")).status == 404
    assert (await lite.get(f"/o/{survey_token}")).status == 404
    survey = Form(await (await lite.get(f"/l/{survey_token}")).text())
    # the survey page's CSRF token does not confirm the opt-out (nor the other way round)
    refused = await lite.post(f"/o/{opt_out_token}", data={"csrf": survey.hidden["csrf"], "confirm": "1"})
    assert refused.status == 403
    opt_out = Form(await (await lite.get(f"/o/{opt_out_token}")).text())
    refused = await lite.post(f"/l/{survey_token}", data={**survey.hidden, "csrf": opt_out.hidden["csrf"],
                                                          "answer": "9"}, allow_redirects=False)
    assert refused.status == 403
    assert not await rows(lite, opt_outs)


async def test_previewing_the_opt_out_url_in_any_way_opts_nobody_out(lite, fake_twilio):
    """Link previewers and mail scanners GET, HEAD and follow query strings: only the form's POST counts."""
    await import_list(lite, body="Phone,FirstName\n+12015550101,Al\n")
    await link_distribution(lite)
    await work(lite)
    path = OPT_OUT.search(fake_twilio.bodies("+12015550101")[0]).group(1)
    for _ in range(3):
        assert (await lite.get(path + "?confirm=1")).status == 200
        assert (await lite.head(path)).status == 200
    await lite.app[ARCHIVER].archive_once()
    assert not await rows(lite, opt_outs)
    form = Form(await (await lite.get(path)).text())
    assert (await lite.post(path, data={**form.hidden, "confirm": "1"})).status == 200
    # opted out at the page: the next link distribution passes the number by
    later = await link_distribution(lite, message="Another: ${l://SurveyLink}")
    await work(lite)
    assert (await recipients(lite, later))["+12015550101"][:2] == ("skipped", "opted_out")
    assert len(fake_twilio.messages) == 1


# ---------------------------------------------------------------- a survey's status meanwhile


@pytest.mark.parametrize("status, then", [("paused", ("sent", None)), ("closed", ("skipped", "survey_closed"))])
async def test_a_link_round_under_way_sends_nothing_once_its_survey_is_paused_or_closed(lite, fake_twilio,
                                                                                         status, then):
    """The round read the survey as active; it is paused (or closed) while its invitations go."""
    await import_list(lite, body=CONTACTS)
    distribution = await link_distribution(lite)
    service = lite.app[SERVICE]
    invite_link = service.invite_link

    async def paused_meanwhile(*args, **kwargs):
        await service.store.set_survey_status("webtest", status)
        service.statuses_changed()  # as set through this worker (another sees it within a second)
        return await invite_link(*args, **kwargs)

    service.invite_link = paused_meanwhile
    await work(lite)
    service.invite_link = invite_link
    assert fake_twilio.messages == []
    states = await recipients(lite, distribution)
    if status == "paused":  # they wait, pending, and go once it is active again
        assert {state[0] for state in states.values()} == {"pending"}
        await service.store.set_survey_status("webtest", "active")
        service.statuses_changed()
        await work(lite, rounds=2)
        assert len(fake_twilio.messages) == 2
    states = await recipients(lite, distribution)
    assert {state[:2] for state in states.values()} == {then}


async def test_two_workers_sending_the_same_invitation_at_once_send_it_once(lite, make_client, settings,
                                                                              fake_twilio):
    await import_list(lite, body=CONTACTS)
    other = await make_client(settings)  # started before the distributions: its first round finds none
    other.records_url = settings.database_url
    # each worker's invitation waits (a while) for the other's to the same number: both have
    # checked the records database for a duplicate by then, and neither has written its state
    arrived: dict[str, asyncio.Event] = {}

    def meeting(service):
        invite_link = service.invite_link

        async def met(survey, phone, *args, **kwargs):
            if phone in arrived:
                arrived[phone].set()
            else:
                arrived[phone] = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived[phone].wait(), 0.5)
            return await invite_link(survey, phone, *args, **kwargs)

        service.invite_link = met

    for client in (lite, other):
        meeting(client.app[SERVICE])
    first, second = await link_distribution(lite), await link_distribution(lite)
    await asyncio.gather(work(lite), work(other))
    for _ in range(2):  # what waited for the other's claim goes (or is skipped) next round
        await work(lite)
        await work(other)
    assert sorted(message.to for message in fake_twilio.messages) == ["+12015550101", "+12015550102"]
    assert set(arrived) == {"+12015550101", "+12015550102"}
    for phone in ("+12015550101", "+12015550102"):
        outcomes = sorted([(await recipients(lite, d))[phone][:2] for d in (first, second)])
        assert outcomes == [("sent", None), ("skipped", "duplicate")]


@pytest.mark.parametrize("path", ["/l/%00", "/o/%00", "/l/a%00b", "/o/%E2%80%AE", "/l/%F0%9F%98%80" * 3, "/s/%00",
                                  "/l/" + "A" * 5000])
async def test_a_token_of_any_shape_is_a_404_on_every_database(make_client, settings, web_flows, records_url, path):
    client = await make_client(dataclasses.replace(settings, database_url=records_url))
    for method in ("GET", "POST"):
        response = await client.request(method, path, data={"csrf": "x"})
        assert response.status == 404, (method, await response.text())


async def test_admin_link_and_distribution_requests_with_a_nul_are_clear_on_every_database(
        make_client, settings, web_flows, records_url):
    client = await make_client(dataclasses.replace(settings, database_url=records_url))
    for path in ("/admin/distributions/%00", "/admin/distributions/%00/recipients"):
        response = await client.get(path, headers=admin_headers())
        assert response.status == 404, (path, await response.text())
    cancel = await client.post("/admin/distributions/%00/cancel", headers=admin_headers())
    assert cancel.status == 404 and (await cancel.json())["error"] == "unknown_distribution"
    made = await client.post("/admin/surveys/webtest/links", headers=admin_headers(),
                             json={"fields": {"FirstName": "A\u0000l"}})
    assert made.status in (201, 400), await made.text()
    if made.status == 201:
        assert (await client.get("/l/" + (await made.json())["token"])).status == 200


@pytest.mark.parametrize("given", ["9" * 400, "9" * 400 + ".5", "-" + "9" * 400])
async def test_a_number_too_large_for_a_float_is_an_invalid_answer(web, given):
    path = await link_path(web)
    await answer(web, path, "9")
    await answer(web, path, "Fast")
    shown = await page(web, path)
    response = await post(web, path, shown, given)
    assert response.status == 303, await response.text()
    assert "How many times" in (await page(web, path)).text


async def test_a_page_posted_many_times_at_once_through_two_workers_counts_once(web, make_client, settings):
    other = await make_client(settings)
    path = await link_path(web)
    await answer(web, path, "9")
    await answer(web, path, "Fast")
    shown = await page(web, path)
    posted = await asyncio.gather(*(post(client, path, shown, "99") for client in (web, other) * 4))
    assert {response.status for response in posted} == {303}
    again = await page(other, path)
    assert "How many times" in again.text
    posted = await asyncio.gather(*(post(client, path, again, "3") for client in (web, other) * 4))
    assert {response.status for response in posted} == {303}
    [record] = await exported(web)
    assert record["answers"]["visits"] == 3 and record["messages_in"] == 4  # 9, Fast, 99, 3


async def test_the_link_preview_is_in_the_surveys_language(make_client, settings, web_flows):
    (web_flows / "encuesta.yaml").write_text(SPANISH, encoding="utf-8")
    client = await make_client(settings)
    made = await client.post("/admin/surveys/encuesta/links", headers=admin_headers(), json={})
    for path in ("/s/encuesta", "/l/" + (await made.json())["token"]):
        shown = await page(client, path)
        assert shown.og["og:description"] == "Encuesta web: una encuesta breve, una pregunta a la vez.", path


async def test_every_redirect_stays_on_the_survey_whatever_the_request_says(web):
    """No open redirect: a POST answers 303 to its own link's path, never to a host or a
    path the request names (Host, Referer, a `next` field)."""
    hostile = {"Host": "evil.example", "Referer": "https://evil.example/", "X-Forwarded-Host": "evil.example"}
    path = await link_path(web)
    form = await page(web, path)
    answered = await web.post(path, data={**form.hidden, "answer": "9", "next": "//evil.example/"},
                              headers=hostile, allow_redirects=False)
    assert answered.status == 303 and answered.headers["Location"] == path
    start = await page(web, "/s/webtest")
    started = await web.post("/s/webtest", data={**start.hidden, "start": "1", "next": "https://evil.example/"},
                             headers=hostile, allow_redirects=False)
    assert started.status == 303 and started.headers["Location"] == "/s/webtest"
