"""The survey's web pages: `GET|POST /l/{token}` (an individual link) and `GET|POST /s/{survey}`
(the survey's anonymous link). One question per page, server-rendered, no JavaScript.

A page is the respondent's state as engine.pages describes it. A posted answer goes through
Service.web_step, the read-step-commit loop of a text message, as engine.conversation.answer:

- exactly once: each rendered question page carries a one-time page id, the step's MessageSid,
  so a double tap or a resubmit after the back button finds it committed and changes nothing;
  the page also names its question, and an answer to a question the session has left is
  ignored. A POST answers 303 to the link, whose GET shows the state as it is now; after the
  step that closed the session, with ?p=<its page id>, whose dedupe record holds what the end
  said (a day long; later the survey's end message shows).
- CSRF: every form carries HMAC-SHA256(cv:web:secret, the link) and a POST without it is
  refused (403); the anonymous visitor's cookie is SameSite=Lax and HttpOnly.
- the anonymous link opens no session until its Start button is pressed (a link preview or
  a crawler opens none); the visitor's id then sits in a cookie, so a reload resumes.
- a survey that is not active (engine.policy) shows its status page at every link: paused
  answers 503 (for a while: the link keeps the respondent's place and takes them back to it
  when the survey is active again), closed 410 (gone for good); an unknown link is a 404. A
  posted answer is not applied meanwhile (engine.conversation.answer).
- every label is in the respondent's language (their session's, else the one their link's
  fields name, else the survey's default), from the survey's texts (engine.texts: built in
  for every shipped language, and the survey's own `texts:`); a page with no survey behind it
  speaks the first shipped language the browser asks for (Accept-Language).

`GET|POST /o/{token}` is a link invitation's opt-out URL: the GET asks to confirm (a link
preview or a crawler opts nobody out), the POST opts the number out as STOP does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy.exc import SQLAlchemyError

from dsl.vocabulary import DEFAULT_LANGUAGE
from engine import conversation, pages, policy
from engine import texts as builtin_texts
from engine.conversation import NotStartable, Outcome, Respondent, WithStatuses
from engine.flow import Flow
from engine.records import links
from engine.runtime.appkeys import REGISTRY, RESPONSES, SERVICE, SETTINGS, STORE
from engine.runtime.web.preview_image import png as preview_png

log = logging.getLogger("canvass.web")

TEMPLATES = Path(__file__).with_name("templates")
PAGE_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")  # secrets.token_urlsafe(12)
MAX_FORM = 64 * 1024  # bytes of a posted page: a text answer's limit is far below
VISITOR_COOKIE = "canvass_visitor"
OPT_OUT_CHANNEL = "sms"  # link invitations go by SMS: that channel's opt-out is the one recorded
COOKIE_AGE = 365 * 86400


class _Secret:
    """The CSRF key, read from Redis by the first request that needs it."""

    value: bytes | None = None


SECRET = web.AppKey("web_secret", _Secret)


class FoundLinks:
    """Links already read from the records database, by token. A link never changes once made,
    so a respondent's later pages (two requests per answer) ask the database nothing: its query
    was most of a page post's cost (bench/web.py). Bounded in number, and each is read again
    after KEEP_SECONDS, so a link removed from the database stops working in every worker."""

    SIZE = 10_000
    KEEP_SECONDS = 300.0

    def __init__(self) -> None:
        self._found: OrderedDict[str, tuple[links.Link, float]] = OrderedDict()

    def get(self, token: str) -> links.Link | None:
        held = self._found.get(token)
        if held is None or held[1] < time.monotonic():
            return None
        self._found.move_to_end(token)
        return held[0]

    def put(self, link: links.Link) -> None:
        self._found[link.token] = (link, time.monotonic() + self.KEEP_SECONDS)
        self._found.move_to_end(link.token)
        while len(self._found) > self.SIZE:
            self._found.popitem(last=False)


FOUND_LINKS = web.AppKey("web_found_links", FoundLinks)


def setup(app: web.Application) -> None:
    # auto_reload off: the templates ship with the package, and checking each one's file
    # for changes on every page is a stat call per template per request
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    app[SECRET] = _Secret()
    app[FOUND_LINKS] = FoundLinks()
    app.router.add_get("/l/{token}", link_page)
    app.router.add_post("/l/{token}", link_post)
    app.router.add_get("/s/{survey}", anonymous_page)
    app.router.add_post("/s/{survey}", anonymous_post)
    app.router.add_get("/o/{token}", opt_out_page)
    app.router.add_post("/o/{token}", opt_out_post)
    app.router.add_get(PREVIEW_IMAGE, preview_image)


# ---------------------------------------------------------------- CSRF


async def _secret(app: web.Application) -> bytes:
    held = app[SECRET]
    if held.value is None:
        held.value = await app[STORE].web_secret()  # the same in every worker: Redis holds it
    return held.value


async def csrf_token(request: web.Request, what: str) -> str:
    return hmac.new(await _secret(request.app), what.encode(), hashlib.sha256).hexdigest()


async def _check_csrf(request: web.Request, form, what: str) -> None:
    given = form.get("csrf", "")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), (await csrf_token(request, what)).encode()):
        raise web.HTTPForbidden(text="This form has expired or did not come from this survey. "
                                     "Go back to the link and try again.\n")


async def _form(request: web.Request):
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise web.HTTPUnsupportedMediaType(text="Post the survey's form.\n")
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(MAX_FORM, request.content_length)
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError, LookupError, HttpProcessingError):  # the last: broken multipart
        raise web.HTTPBadRequest(text="The body is not a readable form.\n") from None
    if any(not isinstance(value, str) for value in form.values()):
        raise web.HTTPBadRequest(text="The survey's form carries text only.\n")
    return form


# ---------------------------------------------------------------- rendering


PREVIEW_IMAGE = "/og.png"  # the link preview's image (engine.runtime.web.preview_image)


async def preview_image(request: web.Request) -> web.Response:
    return web.Response(body=preview_png(), content_type="image/png",
                        headers={"Cache-Control": "public, max-age=86400"})


def _page(template: str, request: web.Request, context: dict, status: int = 200) -> web.Response:
    """A rendered page, never stored by a browser or a proxy: a question page holds the
    respondent's piped fields and answers, and a shared phone's back button or history must
    not show them to the next person (nor a proxy hand one respondent's page to another).
    Its preview image is named by an absolute URL, as Open Graph wants: PUBLIC_BASE_URL's
    when set (the address the link was sent with), else the one the request came to."""
    base = request.app[SETTINGS].public_base_url
    origin = base.rstrip("/") if base else f"{request.scheme}://{request.host}"
    context = {**context, "preview_image": origin + PREVIEW_IMAGE}
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _message(request: web.Request, status: int, heading: str, text: str, language: str) -> web.Response:
    return _page("message.html", request, {
        "language": language, "title": heading, "heading": heading, "text": text}, status=status)


def browser_language(request: web.Request) -> str:
    """The first shipped language the browser's Accept-Language names, else the default."""
    for part in request.headers.get("Accept-Language", "").split(","):
        language = builtin_texts.primary(part.split(";")[0].strip().lower())
        if language in builtin_texts.BUILTIN:
            return language
    return builtin_texts.primary(DEFAULT_LANGUAGE)


def _not_found(request: web.Request) -> web.Response:
    language = browser_language(request)
    said = builtin_texts.builtin(language)
    return _message(request, 404, said["web_not_found_title"], said["web_not_found"], language)


STATUS_PAGES = {policy.PAUSED: (503, "web_paused_title"), policy.CLOSED: (410, "web_closed_title")}


def _not_active(request: web.Request, flow: Flow, status: str, language: str | None) -> web.Response:
    """The page of a survey that is paused (503: for a while) or closed (410: for good)."""
    language = language or flow.default_language
    said = flow.language(language).texts
    code, heading = STATUS_PAGES[status]
    return _message(request, code, said[heading], said[policy.not_active_text(status)], language)


def _language_of(flow: Flow, respondent: Respondent | None, fields: dict) -> str:
    """The respondent's language: their open session's, else their last one's, else the one
    their link's fields name (else the survey's default)."""
    if respondent is not None:
        session = respondent.session
        if session is not None and session.language:
            return session.language
        if respondent.language:
            return respondent.language
    return flow.language_of(fields)


async def _render(request: web.Request, flow: Flow, respondent: Respondent | None,
                  seen: list[str] | None, what: str) -> web.Response:
    """The page of the respondent's state: its open session's question, or its end."""
    session = respondent.session if respondent is not None else None
    # the flow version the session is on, rebuilt from Redis when this worker never ran it (the
    # live flow may not have its question any more); a version lost for good ends the session
    # (its next post closes it, engine.conversation), so its page is the end
    shown_flow = await request.app[REGISTRY].pin(session.survey, session.version) if session is not None else None
    if shown_flow is None:
        language = respondent.language if respondent is not None else None
        ended = pages.ended(flow, language, seen)
        return _page("end.html", request, {
            "page": ended, "language": ended.language, "title": ended.title,
            "texts": flow.language(ended.language).texts, "again": seen is None})
    page = pages.page(shown_flow, session)
    if request.query.get("blank") == "1" and page.invalid is None:
        page = dataclasses.replace(page, invalid=shown_flow.language(page.language).texts["web_blank"])
    return _page("question.html", request, {
        "page": page, "language": page.language, "title": page.title, "page_id": secrets.token_urlsafe(12),
        "csrf": await csrf_token(request, what), "nps": range(11), "texts": shown_flow.language(page.language).texts})


BLANK = ""  # what _answer says of a form sent without an answer


def _after_post(link: str, closing: str | None) -> str:
    """Where a post redirects: the link, with the page id whose step closed the session (?p=),
    or saying that no answer was given (?blank=1)."""
    if closing == BLANK:
        return link + "?blank=1"
    return link + (f"?p={closing}" if closing else "")


async def _answer(request: web.Request, flows: WithStatuses, respondent_id: str, form) -> str | None:
    """Apply the posted answer once. The page id when its step closed the session: its dedupe
    record holds what the end said, for the page after the redirect to show. BLANK when the form
    came without an answer (a button pressed before choosing: the forms are `novalidate`, so
    the page can say so in its language): nothing is applied and no attempt is counted, as
    no text message is ever empty."""
    page_id, question, text = form.get("page", ""), form.get("question", ""), form.get("answer", "")
    if not PAGE_ID.match(page_id) or not question:
        raise web.HTTPBadRequest(text="The form is missing its page; go back to the link.\n")
    if not text.strip():
        return BLANK

    def step(respondent: Respondent, now: float) -> Outcome | None:
        session = respondent.session
        if session is None or session.state != question:
            return None  # the session moved on (another tab, or an old page): nothing to answer
        return conversation.answer(flows, respondent, text, now)

    applied = await request.app[SERVICE].web_step(respondent_id, step, page_id)
    closed = applied.outcome is not None and applied.outcome.respondent.session is None
    return page_id if closed else None


async def _start(request: web.Request, flows: WithStatuses, flow: Flow, respondent_id: str, fields: dict) -> None:
    """Open the respondent's session, unless it has one or had one (a link is answered once)."""

    def step(respondent: Respondent, now: float) -> Outcome | None:
        if respondent.session is not None or respondent.last_survey is not None:
            return None
        return conversation.start(flow, respondent, fields, now, flows=flows)

    # a web respondent never opts out; an open session is kept; a survey paused meanwhile waits
    with contextlib.suppress(NotStartable):
        await request.app[SERVICE].web_step(respondent_id, step)


async def _answered_before(request: web.Request, survey: str, respondent_id: str) -> bool:
    """Whether the records database holds a response of this web respondent (its Redis record
    is kept only so long after its session closed)."""
    try:
        return await links.answered(request.app[RESPONSES].engine, survey, respondent_id)
    except SQLAlchemyError as err:
        log.warning("web: the records database is unreachable: %s", type(err).__name__)
        raise web.HTTPServiceUnavailable(text="Try again in a moment.\n", headers={"Retry-After": "1"}) from None


def _shown_page(request: web.Request) -> str | None:
    page_id = request.query.get("p", "")
    return page_id if PAGE_ID.match(page_id) else None


# ---------------------------------------------------------------- an individual link


async def _link(request: web.Request) -> tuple[links.Link, Flow] | None:
    token, found = request.match_info["token"], request.app[FOUND_LINKS]
    link = found.get(token)
    if link is None:
        try:
            link = await links.find(request.app[RESPONSES].engine, token)
        except SQLAlchemyError as err:
            log.warning("web: the records database is unreachable: %s", type(err).__name__)
            raise web.HTTPServiceUnavailable(text="Try again in a moment.\n", headers={"Retry-After": "1"}) from None
        if link is not None:
            found.put(link)
    flow = request.app[REGISTRY].get(link.survey) if link is not None else None
    return None if flow is None else (link, flow)


async def link_page(request: web.Request) -> web.Response:
    found = await _link(request)
    if found is None:
        return _not_found(request)
    link, flow = found
    service = request.app[SERVICE]
    flows = await service.flows()
    respondent, seen = await service.web_read(link.respondent, _shown_page(request))
    status = flows.status(link.survey)
    if not policy.opens_sessions(status):
        return _not_active(request, flow, status, _language_of(flow, respondent, link.fields))
    if respondent is None and not await _answered_before(request, link.survey, link.respondent):
        await _start(request, flows, flow, link.respondent, link.fields)
        respondent, seen = await service.web_read(link.respondent)
    return await _render(request, flow, respondent, seen, "l/" + link.token)


async def link_post(request: web.Request) -> web.Response:
    found = await _link(request)
    if found is None:
        return _not_found(request)
    link, _ = found
    form = await _form(request)
    await _check_csrf(request, form, "l/" + link.token)
    closing = await _answer(request, await request.app[SERVICE].flows(), link.respondent, form)
    raise web.HTTPSeeOther(_after_post(f"/l/{link.token}", closing))


# ---------------------------------------------------------------- the anonymous link


async def _visitor_cookie(request: web.Request, visitor: str) -> str:
    """The cookie naming an anonymous visitor: its respondent id, signed. The id alone is no
    secret (an export shows it in place of a phone number), so it must not open the session."""
    signature = hmac.new(await _secret(request.app), f"visitor/{visitor}".encode(), hashlib.sha256)
    return f"{visitor}.{signature.hexdigest()[:32]}"


async def _visitor(request: web.Request) -> str | None:
    """The visitor the request's cookie names, when its signature holds; else None."""
    visitor, _, _ = request.cookies.get(VISITOR_COOKIE, "").partition(".")
    if not links.is_respondent_id(visitor):
        return None
    expected = await _visitor_cookie(request, visitor)
    given = request.cookies.get(VISITOR_COOKIE, "")
    return visitor if hmac.compare_digest(given.encode(), expected.encode()) else None


async def anonymous_page(request: web.Request) -> web.Response:
    survey = request.match_info["survey"]
    flow = request.app[REGISTRY].get(survey)
    if flow is None:
        return _not_found(request)
    visitor = await _visitor(request)
    respondent, seen = (None, None)
    if visitor is not None:
        respondent, seen = await request.app[SERVICE].web_read(visitor, _shown_page(request))
    if respondent is not None and respondent.session is not None and respondent.session.survey != survey:
        respondent = None  # a cookie of another survey's visitor: this survey starts afresh
    status = (await request.app[SERVICE].flows()).status(survey)
    if not policy.opens_sessions(status):
        return _not_active(request, flow, status, _language_of(flow, respondent, {}))
    if respondent is None or (respondent.session is None and respondent.last_survey != survey):
        language = flow.default_language
        return _page("start.html", request, {
            "survey": survey, "language": language, "title": pages.title(flow, language),
            "csrf": await csrf_token(request, "s/" + survey), "texts": flow.language(language).texts})
    return await _render(request, flow, respondent, seen, f"s/{survey}/{visitor}")


async def anonymous_post(request: web.Request) -> web.Response:
    survey = request.match_info["survey"]
    flow = request.app[REGISTRY].get(survey)
    if flow is None:
        return _not_found(request)
    form = await _form(request)
    visitor = await _visitor(request)
    here = web.HTTPSeeOther(f"/s/{survey}")
    flows = await request.app[SERVICE].flows()
    if form.get("start") is not None:
        await _check_csrf(request, form, "s/" + survey)
        if not policy.opens_sessions(flows.status(survey)):
            raise here  # its page says why
        respondent = (await request.app[SERVICE].web_read(visitor))[0] if visitor is not None else None
        if respondent is None or respondent.session is None or respondent.session.survey != survey:
            visitor = links.respondent_id()  # a new respondent for each start without one open
            await _start(request, flows, flow, visitor, {})
            here.set_cookie(VISITOR_COOKIE, await _visitor_cookie(request, visitor), max_age=COOKIE_AGE,
                            path=f"/s/{survey}", httponly=True, samesite="Lax",
                            secure=_served_over_https(request) or None)
        raise here
    if visitor is None:
        raise here  # no visitor (cookies refused or gone): the start page again
    await _check_csrf(request, form, f"s/{survey}/{visitor}")
    closing = await _answer(request, flows, visitor, form)
    raise web.HTTPSeeOther(_after_post(f"/s/{survey}", closing))


# ---------------------------------------------------------------- a link invitation's opt-out URL


async def _opt_out_link(request: web.Request) -> links.Link | None:
    try:
        link = await links.find_opt_out(request.app[RESPONSES].engine, request.match_info["token"])
    except SQLAlchemyError as err:
        log.warning("web: the records database is unreachable: %s", type(err).__name__)
        raise web.HTTPServiceUnavailable(text="Try again in a moment.\n", headers={"Retry-After": "1"}) from None
    return link if link is not None and link.phone else None


def _served_over_https(request: web.Request) -> bool:
    """Whether the respondent reached the page over HTTPS: directly, or through a TLS proxy in
    front of the server, which says so in X-Forwarded-Proto (a client that claims it falsely
    only makes its own cookie stricter)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _masked(phone: str) -> str:
    """The number as the page shows it: enough to recognise, not to read off a shared screen."""
    return "\u2022" * 4 + phone[-4:]


def _opt_out_texts(request: web.Request, link: links.Link | None) -> tuple[str, dict]:
    """The opt-out page's language and texts: its survey's, in the language the link's fields
    name (else the survey's default); for a link not known, the browser's."""
    flow = request.app[REGISTRY].get(link.survey) if link is not None else None
    if flow is None:
        language = browser_language(request)
        return language, builtin_texts.builtin(language)
    language = _language_of(flow, None, link.fields)
    return language, flow.language(language).texts


async def opt_out_page(request: web.Request) -> web.Response:
    link = await _opt_out_link(request)
    language, said = _opt_out_texts(request, link)
    if link is None:
        return _message(request, 404, said["web_optout_unknown_title"], said["web_optout_unknown"], language)
    return _page("optout.html", request, {
        "language": language, "title": said["web_optout_title"],
        "question": said["web_optout_question"].replace("{number}", _masked(link.phone)),
        "confirm": said["web_optout_confirm"], "csrf": await csrf_token(request, "o/" + link.opt_out)})


async def opt_out_post(request: web.Request) -> web.Response:
    link = await _opt_out_link(request)
    language, said = _opt_out_texts(request, link)
    if link is None:
        return _message(request, 404, said["web_optout_unknown_title"], said["web_optout_unknown"], language)
    form = await _form(request)
    await _check_csrf(request, form, "o/" + link.opt_out)
    await request.app[SERVICE].opt_out(OPT_OUT_CHANNEL, link.phone)  # a second time changes nothing
    return _message(request, 200, said["web_optout_done_title"], said["web_optout_done"], language)
