"""The survey's web pages: individual and anonymous links, one question per page, every answer
applied once through the same engine step as a text message, CSRF, and the response archived
and exported with channel web."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, LAYOUT, admin_headers
from sqlalchemy.exc import OperationalError

from engine.records import links
from engine.records.links import TOKEN_BYTES, is_respondent_id
from engine.runtime.appkeys import ARCHIVER, SERVICE
from engine.runtime.web.handlers import FoundLinks

WEB_FLOW = Path(__file__).parent / "flows" / "web" / "webtest.yaml"


class Form(HTMLParser):
    """A page's form as a browser sees it: hidden fields, answer controls, the texts shown."""

    def __init__(self, html: str):
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.buttons: list[str] = []  # values of the submit buttons named answer
        self.radios: list[str] = []
        self.textarea: dict[str, str] | None = None
        self.number: dict[str, str] | None = None
        self.html_lang = None
        self.og: dict[str, str] = {}
        self.feed(html)
        shown = re.sub(r"<style>.*?</style>|<[^>]+>", " ", html, flags=re.S)
        self.text = re.sub(r"\s+", " ", unescape(shown)).strip()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.html_lang = a.get("lang")
        elif tag == "meta" and a.get("property", "").startswith("og:"):
            self.og[a["property"]] = a["content"]
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a["value"]
        elif tag == "input" and a.get("type") == "radio":
            self.radios.append(a["value"])
        elif tag == "input" and a.get("type") == "text":
            self.number = a
        elif tag == "textarea":
            self.textarea = a
        elif tag == "button" and a.get("name") == "answer":
            self.buttons.append(a["value"])


@pytest.fixture
async def web(make_client, settings, web_flows):
    return await make_client(settings)


async def make_link(client, survey="webtest", body=None, token=ADMIN_TOKEN):
    return await client.post(f"/admin/surveys/{survey}/links", data=json.dumps(body or {}),
                             headers={**admin_headers(token), "Content-Type": "application/json"})


async def link_path(client, fields=None, to=None) -> str:
    body = {"fields": fields or {}} | ({"to": to} if to else {})
    response = await make_link(client, body=body)
    assert response.status == 201, await response.text()
    return "/l/" + (await response.json())["token"]


async def page(client, path: str, status: int = 200) -> Form:
    response = await client.get(path)
    assert response.status == status, await response.text()
    assert response.content_type == "text/html"
    return Form(await response.text())


async def post(client, path: str, form: Form, answer: str | None, **extra):
    data = dict(form.hidden) | ({"answer": answer} if answer is not None else {}) | extra
    return await client.post(path, data=data, allow_redirects=False)


async def answer(client, path: str, text: str) -> Form:
    """Answer the question shown at `path` as a respondent would, following the redirect."""
    form = await page(client, path)
    response = await post(client, path, form, text)
    assert response.status == 303, await response.text()
    return await page(client, response.headers["Location"])


async def exported(client, survey: str = "webtest") -> list[dict]:
    await client.app[ARCHIVER].archive_once()
    response = await client.get(f"/admin/responses/{survey}?format=jsonl", headers=admin_headers())
    assert response.status == 200, await response.text()
    return [json.loads(line) for line in (await response.text()).splitlines()]


# ---------------------------------------------------------------- links


async def test_a_link_is_an_unguessable_token_with_no_personal_data(web):
    response = await make_link(web, body={"to": "+1 (555) 123-0101", "fields": {"FirstName": "Ana"}})
    assert response.status == 201
    made = await response.json()
    assert made["url"] == f"https://canvass.example.com/l/{made['token']}"
    assert len(made["token"]) >= TOKEN_BYTES * 4 // 3  # 128 bits, base64
    assert "Ana" not in made["url"] and "555" not in made["url"]
    other = await (await make_link(web, body={"to": "+15551230101"})).json()
    assert other["token"] != made["token"]


@pytest.mark.parametrize("survey, body, status, error", [
    ("nope", {}, 404, "unknown_survey"),
    ("webtest", {"to": "12"}, 400, "bad_number"),
    ("webtest", {"to": 15551230101}, 400, "bad_number"),
    ("webtest", {"fields": ["Ana"]}, 400, "bad_fields"),
    ("webtest", {"fields": {"Q_RecipientPhoneNumber": "x"}}, 400, "bad_fields"),
])
async def test_bad_link_requests_are_refused_clearly(web, survey, body, status, error):
    response = await make_link(web, survey, body)
    assert response.status == status and (await response.json())["error"] == error


async def test_making_a_link_needs_the_admin_token(web):
    assert (await make_link(web, token="wrong")).status == 401


# ---------------------------------------------------------------- the pages


async def test_a_link_takes_every_question_type_through_the_branch_with_piped_fields(web):
    path = await link_path(web, {"FirstName": "Ana"}, to="+15551230102")
    first = await page(web, path)
    assert first.html_lang == "en"
    assert {k: v for k, v in first.og.items() if not k.startswith("og:image")} == {
        "og:type": "website", "og:title": "Web test survey",
        "og:description": "Web test survey: a short survey, one question at a time."}
    assert "Hi Ana! How likely are you to recommend us?" in first.text
    assert first.buttons == [str(n) for n in range(11)]
    assert set(first.hidden) == {"csrf", "page", "question"} and first.hidden["question"] == "score"
    choice = await answer(web, path, "3")
    assert "Sorry about the 3. What went wrong?" in choice.text  # piped answer, shown by display logic
    assert choice.radios == ["1", "2"] and "Too slow" in choice.text and "1. Too slow" not in choice.text
    text = await answer(web, path, "2")
    assert text.textarea["maxlength"] == "20" and "What is the main reason" in text.text
    number = await answer(web, path, "STOP the noise")  # STOP is an answer here, not an opt-out
    assert number.number["inputmode"] == "numeric" and "How many times" in number.text
    end = await answer(web, path, "4")
    assert "We will turn it down." in end.text  # the branch's custom end
    again = await page(web, path)
    assert "Thanks for your answers!" in again.text and again.buttons == [] and again.hidden == {}
    [record] = await exported(web)
    assert record["channel"] == "web" and is_respondent_id(record["phone"])
    assert record["status"] == "complete" and record["fields"]["FirstName"] == "Ana"
    assert record["answers"]["reason"] == "STOP the noise" and record["answers"]["problem"]["code"] == "2"
    assert "+15551230102" not in json.dumps(record) and path[3:] not in json.dumps(record)


async def test_the_end_shows_its_piped_message_after_the_last_answer(web):
    path = await link_path(web, {"FirstName": "Bo"})
    await answer(web, path, "9")  # a promoter: no problem question
    await answer(web, path, "Quick")
    end = await answer(web, path, "2")
    assert 'Thanks Bo, you said "Quick".' in end.text


async def test_an_answered_link_stays_answered_when_redis_no_longer_holds_its_respondent(web, redis_sync):
    path = await link_path(web)
    for text in ("9", "ok", "1"):
        await answer(web, path, text)
    [record] = await exported(web)
    assert redis_sync.delete(LAYOUT.respondent("web", record["phone"])) == 1  # its TTL ran out
    again = await page(web, path)
    assert "Thanks for your answers!" in again.text and again.buttons == []
    assert len(await exported(web)) == 1


async def test_an_invalid_answer_shows_the_explanation_and_asks_again(web):
    path = await link_path(web)
    await answer(web, path, "9")
    await answer(web, path, "fine")
    again = await answer(web, path, "12")
    assert "Please reply with a number from 0 to 9." in again.text and "How many times" in again.text
    assert 'role="alert"' in await (await web.get(path)).text()
    end = await answer(web, path, "1")
    assert "you said" in end.text


async def test_a_choice_not_offered_is_an_invalid_answer(web):
    path = await link_path(web)
    await answer(web, path, "0")
    form = await page(web, path)
    response = await post(web, path, form, "7")  # no such radio: only a forged form sends it
    assert response.status == 303
    assert "Please reply with one of: 1, 2." in (await page(web, path)).text


async def test_a_double_submit_and_a_back_button_resubmit_are_applied_once(web):
    path = await link_path(web)
    first = await page(web, path)
    assert (await post(web, path, first, "8")).status == 303
    assert (await post(web, path, first, "8")).status == 303  # the double tap
    reason = await page(web, path)
    assert "What is the main reason" in reason.text
    assert (await post(web, path, first, "2")).status == 303  # back to the first page, another score
    assert (await post(web, path, reason, "Nice")).status == 303
    assert (await post(web, path, reason, "Nicer")).status == 303
    number = await page(web, path)
    assert "How many times" in number.text
    assert (await post(web, path, number, "99")).status == 303  # invalid, tapped twice: the
    assert (await post(web, path, number, "99")).status == 303  # same question, one page id
    await answer(web, path, "1")
    [record] = await exported(web)
    assert record["answers"]["score"]["score"] == 8 and record["answers"]["reason"] == "Nice"
    assert record["messages_in"] == 4


async def test_a_page_of_a_question_already_left_changes_nothing(web):
    path = await link_path(web)
    old = await page(web, path)
    fresh = await page(web, path)  # another tab of the same link
    await post(web, path, fresh, "9")
    await post(web, path, old, "1")  # its own page id, but the session left `score`
    assert "What is the main reason" in (await page(web, path)).text


@pytest.mark.parametrize("tamper", ["missing", "wrong", "another link's"])
async def test_a_post_without_the_forms_csrf_token_is_refused(web, tamper):
    path = await link_path(web)
    form = await page(web, path)
    other = await page(web, await link_path(web))
    csrf = {"missing": None, "wrong": "0" * 64, "another link's": other.hidden["csrf"]}[tamper]
    data = {k: v for k, v in form.hidden.items() if k != "csrf"} | {"answer": "7"}
    if csrf is not None:
        data["csrf"] = csrf
    response = await web.post(path, data=data, allow_redirects=False)
    assert response.status == 403
    assert "Hi" in (await page(web, path)).text  # still the first question


@pytest.mark.parametrize("body, status", [
    ({"answer": "7"}, 400),  # no page id
    ({"answer": "7", "page": "x"}, 400),
])
async def test_a_post_without_its_page_is_a_clear_400(web, body, status):
    path = await link_path(web)
    form = await page(web, path)
    response = await web.post(path, data={"csrf": form.hidden["csrf"], **body}, allow_redirects=False)
    assert response.status == status


async def test_an_unknown_link_is_a_404_page(web):
    for path in ("/l/AAAAAAAAAAAAAAAAAAAAAA", "/l/" + "x" * 200, "/s/nope"):
        missing = await page(web, path, status=404)
        assert "Survey not found" in missing.text
    response = await web.post("/l/AAAAAAAAAAAAAAAAAAAAAA", data={"answer": "1"})
    assert response.status == 404


async def test_the_first_page_is_small(web):
    response = await web.get(await link_path(web))
    body = await response.read()
    assert len(body) < 30 * 1024 and b"<script" not in body


async def test_web_sessions_wait_for_the_respondent_beyond_the_surveys_expiry(web, clock):
    path = await link_path(web)
    await page(web, path)
    clock.advance(2 * 3600)  # the survey's expires_after is 1h, its remind_after 10m
    await web.app[SERVICE].sweep()  # the timers that are due: none for a web session
    assert "What is the main reason" in (await answer(web, path, "9")).text


# ---------------------------------------------------------------- the anonymous link


async def test_the_anonymous_link_starts_a_respondent_per_visitor_and_a_cookie_resumes(web, make_client,
                                                                                     settings):
    start = await page(web, "/s/webtest")
    assert start.og["og:title"] == "Web test survey" and "Start" in start.text
    response = await web.post("/s/webtest", data={**start.hidden, "start": "1"}, allow_redirects=False)
    assert response.status == 303
    cookie = response.cookies["canvass_visitor"]
    assert cookie["samesite"] == "Lax" and cookie["httponly"] and cookie["path"] == "/s/webtest"
    assert not cookie["secure"]  # plain HTTP, no proxy: it would never come back
    first = await page(web, "/s/webtest")
    assert "How likely are you" in first.text and "Hi !" in first.text  # no contact fields
    assert (await post(web, "/s/webtest", first, "10")).status == 303
    assert "What is the main reason" in (await page(web, "/s/webtest")).text  # a reload resumes
    other = await make_client(settings)  # another visitor: no cookie
    assert "Start" in (await page(other, "/s/webtest")).text
    assert (await web.post("/s/webtest", data={**first.hidden, "answer": "2", "csrf": "0" * 64})).status == 403
    await answer(web, "/s/webtest", "ok")
    end = await answer(web, "/s/webtest", "3")
    assert "you said" in end.text
    [record] = await exported(web)
    assert record["channel"] == "web" and is_respondent_id(record["phone"])
    assert record["fields"] == {"Q_RecipientPhoneNumber": record["phone"]}


async def test_a_start_without_its_csrf_token_is_refused(web):
    response = await web.post("/s/webtest", data={"start": "1"}, allow_redirects=False)
    assert response.status == 403


async def test_a_links_later_pages_ask_the_records_database_nothing(web, monkeypatch):
    path = await link_path(web, {"FirstName": "Di"})
    await page(web, path)
    other = await link_path(web)

    async def unreachable(*args):
        raise OperationalError("SELECT", {}, Exception("the database is down"))

    monkeypatch.setattr(links, "find", unreachable)
    assert "What went wrong?" in (await answer(web, path, "3")).text  # the link was found once
    response = await web.get(other)  # a link not opened before still needs the database
    assert response.status == 503 and response.headers["Retry-After"] == "1"


def test_found_links_are_bounded_and_read_again_after_a_while(monkeypatch):
    found = FoundLinks()
    monkeypatch.setattr(FoundLinks, "SIZE", 2)
    made = [links.Link(f"t{n}", "webtest", None, {}, links.respondent_id()) for n in range(3)]
    for link in made:
        found.put(link)
    assert found.get("t0") is None and found.get("t2") == made[2]
    monkeypatch.setattr(FoundLinks, "KEEP_SECONDS", -1.0)
    found.put(made[0])
    assert found.get("t0") is None


async def test_behind_a_tls_proxy_the_visitor_cookie_is_secure(web):
    start = await page(web, "/s/webtest")
    response = await web.post("/s/webtest", data={**start.hidden, "start": "1"}, allow_redirects=False,
                              headers={"X-Forwarded-Proto": "https"})
    assert response.status == 303 and response.cookies["canvass_visitor"]["secure"]


async def test_a_form_sent_without_an_answer_is_asked_again_in_its_language_and_costs_no_attempt(web):
    path = await link_path(web, {"FirstName": "Al"})
    await answer(web, path, "3")
    choice = await page(web, path)
    assert "What went wrong?" in choice.text
    for _ in range(3):  # more than its attempts: none is counted
        response = await post(web, path, choice, None)
        assert response.status == 303 and response.headers["Location"] == path + "?blank=1"
        again = await page(web, response.headers["Location"])
        assert "What went wrong?" in again.text and "Please answer the question before going on." in again.text
        blank = await post(web, path, again, "   ")
        assert blank.headers["Location"] == path + "?blank=1"
    assert "What is the main reason" in (await answer(web, path, "1")).text


async def test_the_visitor_cookie_is_signed_so_an_exported_respondent_id_opens_nothing(web, make_client, settings):
    start = await page(web, "/s/webtest")
    response = await web.post("/s/webtest", data={**start.hidden, "start": "1"}, allow_redirects=False)
    signed = response.cookies["canvass_visitor"].value
    visitor, _, signature = signed.partition(".")
    assert is_respondent_id(visitor) and len(signature) == 32
    assert "How likely are you" in (await page(web, "/s/webtest")).text
    stranger = await make_client(settings)
    for forged in (visitor, f"{visitor}.{'0' * 32}", f"{visitor}.{signature[:-1]}x", signed + "x"):
        stranger.session.cookie_jar.clear()
        stranger.session.cookie_jar.update_cookies({"canvass_visitor": forged})
        shown = await page(stranger, "/s/webtest")
        assert "Start" in shown.text and "How likely are you" not in shown.text, forged
    stranger.session.cookie_jar.clear()
    stranger.session.cookie_jar.update_cookies({"canvass_visitor": signed})
    assert "How likely are you" in (await page(stranger, "/s/webtest")).text  # the real cookie resumes


async def test_the_link_preview_has_an_image_of_the_size_messaging_apps_show(web):
    import struct
    import zlib

    from fake_twilio import PUBLIC_BASE_URL

    shown = await page(web, await link_path(web))
    assert shown.og["og:image"] == PUBLIC_BASE_URL + "/og.png"  # absolute, as Open Graph wants
    assert (shown.og["og:image:width"], shown.og["og:image:height"]) == ("1200", "630")
    response = await web.get("/og.png")
    body = await response.read()
    assert response.status == 200 and response.content_type == "image/png" and len(body) < 20_000
    assert "max-age" in response.headers["Cache-Control"]
    assert body.startswith(b"\x89PNG\r\n\x1a\n") and body[12:16] == b"IHDR"
    width, height = struct.unpack(">II", body[16:24])
    assert (width, height) == (1200, 630)
    idat = body.index(b"IDAT")
    (length,) = struct.unpack(">I", body[idat - 4:idat])
    assert len(zlib.decompress(body[idat + 4:idat + 4 + length])) == height * (1 + 3 * width)
