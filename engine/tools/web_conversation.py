"""`canvass test --channel web`: a conversation test file played through the survey's web pages.

The server's app (the one `canvass serve` runs, its clock the test's) is served on 127.0.0.1
over a private redis-server and a temporary records database. The file's contact gets an
individual link (POST /admin/surveys/{id}/links); the player reads each page as a browser
would (the question's label, its controls, the hidden CSRF token and page id) and posts the
form, following the redirect. So a broken template fails the test, not only a broken engine.

The same expectations, mapped to the web:
- an expected message is what the page says, in the form the text message has: a question's
  prompt with its choices listed as over SMS (the page's own choices, checked against the
  flow's), the explanation on the same page after an invalid answer, the end page's message;
- `send` posts its text as the page's answer (what a choice's radio or an NPS button posts is
  the code or the number; any other text is what a form post could carry, and shows the
  page's validation message);
- `wait` moves the app's clock, then opens the link again: it must resume at the question left;
- ${l://OptOutURL} shows nothing on a page (a page takes no keywords): an expected message's
  opt-out text ("Reply STOP to opt out." in its language) is not looked for there.

The file is also played over its own channel alongside (engine.tools.player), which says what
each step is there. A step that has no web counterpart is skipped with the reason, with the
messages it expects, never passed in silence: a keyword (STOP, HELP, START: the web has none),
a text sent with no survey open (an end page takes no answer), the access code texted again,
a reminder or an expiry in a wait (a web session gets no reminders and lasts as long as its
link, engine.policy). When such a step leaves the text conversation elsewhere than the web's
(STOP closed it, it expired), the rest of the file and its result are skipped with the reason.
A whole file is not applicable when it starts with an inbound text, expects the invitation
refused, or expects a WhatsApp template. A result's Q_RecipientPhoneNumber is not checked: a
link keeps its number out of the response.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import redis
from aiohttp import web

from engine.conversation import NotStartable
from engine.events import Help, NotInSurvey, OptedIn, OptedOut, QuestionRepeated
from engine.flow import Flow
from engine.questions.text import max_length
from engine.records import links
from engine.records.commands import upgrade as upgrade_records
from engine.responses import typed_answers
from engine.runtime.appkeys import RESPONSES, SERVICE
from engine.runtime.settings import Settings
from engine.session import PHONE_FIELD
from engine.tools.conversation_test import (
    START_TIME,
    Action,
    Played,
    Script,
    _show,
    check_result,
    load,
)
from engine.tools.local_redis import PrivateRedis
from engine.tools.player import Player

ADMIN_TOKEN = "canvass-test-web"  # the private app's: nothing else reaches it
NPS_VALUES = [str(n) for n in range(11)]


# ---------------------------------------------------------------- what a page shows


class Page(HTMLParser):
    """A rendered page as a browser and a screen reader take it: the form's hidden fields, the
    answer's controls, the question's label (legend, or the label of the answer field), the
    alert (an invalid answer's explanation) and the status (an end's message)."""

    def __init__(self, url: str, status: int, html: str):
        super().__init__(convert_charrefs=True)
        self.url, self.status = url, status
        self.language = ""
        self.has_form = False
        self.hidden: dict[str, str] = {}
        self.buttons: list[str] = []  # the values of the submit buttons named answer
        self.options: list[tuple[str, str]] = []  # a choice's radios: (value, label)
        self.control: str | None = None  # nps | choice | text | number
        self.max_length: str | None = None
        self.prompt: str | None = None
        self.alert: str | None = None
        self.end: str | None = None
        self._open: list[list] = []  # [tag, what, text pieces] being read
        self._radio: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {name: value or "" for name, value in attrs}
        if tag == "html":
            self.language = a.get("lang", "")
        elif tag == "form":
            self.has_form = True
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a.get("name", "")] = a.get("value", "")
        elif tag == "input" and a.get("type") == "radio" and a.get("name") == "answer":
            self.control, self._radio = "choice", a.get("value", "")
        elif tag == "input" and a.get("type") == "text" and a.get("name") == "answer":
            self.control = "number"
        elif tag == "textarea" and a.get("name") == "answer":
            self.control, self.max_length = "text", a.get("maxlength")
        elif tag == "button" and a.get("name") == "answer":
            self.control = "nps"
            self.buttons.append(a.get("value", ""))
        what = ("prompt" if tag == "legend" or (tag == "label" and a.get("for") == "answer")
                else "option" if tag == "label" else "alert" if a.get("role") == "alert"
                else "end" if a.get("role") == "status" else None)
        if what is not None:
            self._open.append([tag, what, []])

    def handle_data(self, data):
        for reading in self._open:
            reading[2].append(data)

    def handle_endtag(self, tag):
        if not self._open or self._open[-1][0] != tag:
            return
        _, what, pieces = self._open.pop()
        text = "".join(pieces)
        if what == "option":
            if self._radio is not None:
                self.options.append((self._radio, text.strip()))
            self._radio = None
        else:
            setattr(self, what, text)

    @property
    def question(self) -> str | None:
        return self.hidden.get("question")


# ---------------------------------------------------------------- the server for a run


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    app: web.Application
    runner: web.AppRunner
    base: str
    clock: Clock


class WebPlayer:
    """Plays test files through the web pages: one redis-server and one records database for
    the run, one app per file serving that file's flow alone. `create_app` is server.create_app."""

    def __init__(self, create_app: Callable[..., web.Application]):
        self.create_app = create_app
        self.redis: PrivateRedis | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.directory: Path | None = None
        self.files = 0

    def __enter__(self) -> WebPlayer:
        self.directory = Path(tempfile.mkdtemp(prefix="canvass-web-test-"))
        self.redis = PrivateRedis()
        self.redis.start()
        upgrade_records(self.database_url)
        self.loop = asyncio.new_event_loop()
        return self

    def __exit__(self, *exc) -> None:
        if self.loop is not None:
            self.loop.close()
        if self.redis is not None:
            self.redis.stop()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.directory / 'records.db'}"

    def run(self, path: Path, verbose: bool = False, out=print) -> Played:
        """What playing one file through the web pages found; ScriptError when it is malformed."""
        script, flow = load(path)
        reason = not_for_the_web(script, flow)
        if reason is not None:
            return Played([], not_applicable=reason)
        return self.loop.run_until_complete(self._play(script, flow, out if verbose else lambda line: None))

    async def _serve(self, script: Script) -> Served:
        self.files += 1
        flows = self.directory / f"flows-{self.files}"
        flows.mkdir()
        shutil.copy(script.flow, flows / script.flow.name)
        settings = Settings(flows_dir=flows, redis_url=self.redis.url, database_url=self.database_url,
                            admin_token=ADMIN_TOKEN, insecure=True, port=0)
        clock = Clock(START_TIME)
        app = self.create_app(settings, clock=clock, timer_interval=3600.0)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return Served(app, runner, f"http://{host}:{port}", clock)

    async def _play(self, script: Script, flow: Flow, out) -> Played:
        served = await self._serve(script)
        try:
            async with aiohttp.ClientSession(served.base) as client:
                run = WebRun(script, flow, served, client, out)
                await run.play()
                return run.played
        finally:
            await served.runner.cleanup()
            with redis.Redis.from_url(self.redis.url) as connection:
                connection.flushall()  # the next file's app starts on an empty Redis


def not_for_the_web(script: Script, flow: Flow) -> str | None:
    """Why a whole file does not apply to the web, or None."""
    if script.start == "inbound":
        return "the respondent texts first (start: inbound); on the web a link opens the survey"
    if script.start_refused is not None:
        return f"the invitation is refused (start_refused: {script.start_refused[0]}), a rule of text messages"
    if any(action.kind == "expect_template" for action in script.steps):
        return "it expects a WhatsApp template, which only WhatsApp sends"
    if script.language is not None and not flow.survey.language_field:
        return "'language' sets the texted respondent's language; a link takes it from a contact field, " \
               "and the survey names none"
    return None


# ---------------------------------------------------------------- one file over the web


@dataclass
class WebRun:
    script: Script
    flow: Flow
    served: Served
    client: aiohttp.ClientSession
    out: Callable[[str], None]
    played: Played = field(default_factory=lambda: Played([]))
    outbox: deque = field(default_factory=deque)
    page: Page | None = None
    respondent: str = ""
    twin: Player | None = None

    def fail(self, where: str, expected: str, actual: str) -> None:
        self.played.failures.append(f"  {where}:\n    expected: {expected}\n    actual:   {actual}")

    def skip(self, where: str, reason: str) -> None:
        self.played.skipped.append(f"{where}: {reason}")

    async def play(self) -> None:
        script = self.script
        last = None if script.last_message is None else START_TIME - script.last_message
        language = script.language[0] if script.language else None
        self.twin = Player(self.flow, script.channel, script.phone, START_TIME, last_inbound_at=last,
                           language=language)
        with_twin = True
        try:
            self.twin.invite(script.contact_fields)
        except NotStartable:
            with_twin = False  # the file's own run reports that; the web has no such rule
        await self.open_link("the invitation")
        steps = script.steps
        index = 0
        while index < len(steps):
            action = steps[index]
            where = f"step {action.number} ({action.kind}, line {action.line})"
            index += 1
            if action.kind not in ("send", "wait"):
                self.expect(where, action)
                continue
            self.untaken(where)
            expects = 0
            while index + expects < len(steps) and steps[index + expects].kind not in ("send", "wait"):
                expects += 1
            before = _state(self.twin) if with_twin else None
            events = self.twin_step(action) if with_twin else []
            after = _state(self.twin) if with_twin else None
            if action.kind == "wait":
                await self.wait(where, action)
                if not expects and before == after:
                    continue
                reason = ("a reminder or an expiry message: a web session gets no reminders and lasts "
                          "as long as its link") if expects else "the text conversation expired in this wait"
            else:
                reason = _texts_only(action, events)
                if reason is None:
                    await self.post(where, action)
                    continue
            self.skip(where, reason + (f" (and the {expects} message(s) expected after it)" if expects else ""))
            index += expects
            if before != after:
                self.skip("the rest of the file and its result",
                          f"after step {action.number} the text conversation is {after[0]}, "
                          "where the web's does not follow")
                return
        self.untaken("after the last step")
        await self.check_result()

    def twin_step(self, action: Action) -> list:
        if action.kind == "send":
            self.twin.send(action.text)
        else:
            self.twin.wait(action.seconds)
        return list(self.twin.events)

    # ------------------------------------------------------------ pages

    async def get(self, url: str) -> Page:
        async with self.client.get(url, allow_redirects=False) as response:
            return Page(url, response.status, await response.text())

    async def open_link(self, where: str) -> None:
        fields = dict(self.script.contact_fields)
        if self.script.language is not None:
            fields[self.flow.survey.language_field] = self.script.language[0]
        body = {"fields": fields, "to": self.script.phone}
        async with self.client.post(f"/admin/surveys/{self.flow.id}/links", json=body,
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
            made = await response.json()
            if response.status != 201:
                self.fail(where, "a link for the contact", f"HTTP {response.status}: {made}")
                return
        link = await links.find(self.served.app[RESPONSES].engine, made["token"])
        self.respondent = link.respondent
        self.show(where, await self.get(f"/l/{made['token']}"))

    def show(self, where: str, page: Page) -> None:
        """The page now shown, and what it says as the text message would have said it."""
        self.page = page
        message = self.says(where, page)
        if message is not None:
            self.out(f"    < {_show(message)}")
            self.outbox.append(message)

    def says(self, where: str, page: Page) -> str | None:
        if page.status != 200:
            self.fail(where, "a page (HTTP 200)", f"HTTP {page.status} at {page.url}")
            return None
        if not page.has_form:
            if page.end is None:
                self.fail(where, "a question or an end", f"a page with neither at {page.url}")
            return page.end
        question = self.flow.questions.get(page.question or "")
        if question is None or page.prompt is None:
            self.fail(where, "a question's form", f"question {page.question!r}, label {page.prompt!r}")
            return None
        self.check_controls(where, page, question)
        if page.alert is not None:
            return page.alert
        return question.kind.message(question.ask, page.prompt, page.language)

    def check_controls(self, where: str, page: Page, question) -> None:
        ask, language = question.ask, page.language
        missing = [name for name in ("csrf", "page", "question") if not page.hidden.get(name)]
        if missing:
            self.fail(where, "the form's csrf, page and question fields", f"missing: {', '.join(missing)}")
        if page.control != ask.type:
            self.fail(where, f"the controls of a {ask.type} question", f"those of {page.control or 'none'}")
        elif ask.type == "nps" and page.buttons != NPS_VALUES:
            self.fail(where, "NPS buttons 0 to 10", str(page.buttons))
        elif ask.type == "choice":
            choices = [(choice.code, choice.text(language)) for choice in ask.choices]
            if page.options != choices:
                self.fail(where, f"the choices {choices}", str(page.options))
        elif ask.type == "text" and page.max_length != str(max_length(ask)):
            self.fail(where, f"a text box of at most {max_length(ask)}", f"maxlength {page.max_length}")

    async def post(self, where: str, action: Action) -> None:
        self.out(f"    > {_show(action.text)}")
        page = self.page
        if page is None or not page.has_form:
            self.fail(where, "a page with a form to answer", "the page has none")
            return
        data = {**page.hidden, "answer": action.text}
        async with self.client.post(page.url, data=data, allow_redirects=False) as response:
            if response.status != 303:
                self.fail(where, "the answer taken (HTTP 303)", f"HTTP {response.status}: {(await response.text())[:200]}")
                return
            location = response.headers["Location"]
        self.show(where, await self.get(location))

    async def wait(self, where: str, action: Action) -> None:
        self.out(f"    ... {action.text}")
        self.served.clock.now += action.seconds
        left = self.page
        if left is None or not left.has_form:
            return
        again = await self.get(left.url)
        if again.question != left.question:
            self.fail(where, f"the link to resume at question {left.question}", f"question {again.question}")
        self.page = again

    # ------------------------------------------------------------ expectations

    def on_the_page(self, expected: str) -> str:
        """An expected text message as a page shows it: ${l://OptOutURL} shows nothing on the web
        (no keywords there), so the opt-out text ("Reply STOP to opt out.") is not looked for."""
        language = self.page.language if self.page is not None else self.flow.default_language
        opt_out = self.flow.language(language).texts["opt_out_link"]
        return re.sub(r" {2,}", " ", expected.replace(opt_out, "")).strip()

    def untaken(self, where: str) -> None:
        while self.outbox:
            self.fail(where, "every message to be taken by an expect", f"untaken message {_show(self.outbox.popleft())}")

    def expect(self, where: str, action: Action) -> None:
        message = self.outbox.popleft() if self.outbox else None
        if action.kind == "expect" and message != action.text and (
                message is None or message.strip() != self.on_the_page(action.text)):
            self.fail(where, _show(action.text), _show(message))
        elif action.kind == "expect_match" and (message is None or not action.pattern.search(message)):
            self.fail(where, f"a message matching /{action.text}/", _show(message))

    async def check_result(self) -> None:
        unchecked = frozenset({PHONE_FIELD}) & {name for name, _ in self.script.expected_fields}
        if unchecked:
            self.skip(f"result field '{PHONE_FIELD}'", "a link keeps the contact's number out of the response")
        check_result(self.script, await self.last_session(), self.fail, unchecked)

    async def last_session(self) -> tuple[str, dict, dict, list]:
        """As Player.last_session, from the server: the open session in Redis, else the response
        record it left (on the stream or archived)."""
        respondent, _ = await self.served.app[SERVICE].web_read(self.respondent)
        session = respondent.session if respondent is not None else None
        if session is not None:
            return session.status, typed_answers(session, self.flow), session.fields, session.not_shown
        last = None
        async for _, record in self.served.app[RESPONSES].responses(self.flow.id):
            if record.get("phone") == self.respondent:
                last = record
        if last is None:
            return "none", {}, {}, []
        return last["status"], last["answers"], last["fields"], last["not_shown"]


def _state(player: Player) -> tuple:
    """Where the text conversation is: its status, question and answers."""
    status, answers, _, _ = player.last_session()
    session = player.respondent.session
    return status, session.state if session is not None else None, repr(answers)


def _texts_only(action: Action, events: list) -> str | None:
    """Why a step played over text messages has no web counterpart, or None."""
    if action.kind != "send":
        return None
    for event in events:
        if isinstance(event, OptedOut):
            return f"{action.text!r} is a keyword that opts out of text messages; the web has no keywords"
        if isinstance(event, OptedIn):
            return f"{action.text!r} is a keyword that opts back in to text messages; the web has no keywords"
        if isinstance(event, Help):
            return f"{action.text!r} is the help keyword of text messages; the web has no keywords"
        if isinstance(event, NotInSurvey):
            return "texted with no survey open: an end page takes no answer"
        if isinstance(event, QuestionRepeated):
            return "the survey's access code texted again: the web has no access codes"
    return None
