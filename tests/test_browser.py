"""The survey's web pages in a real browser: Debian's headless Chromium, driven by Selenium
through chromedriver, on a phone-sized window (375 x 667), against a Canvass app on 127.0.0.1.

Every example survey (surveys/*.yaml) is taken through every branch: the branches are
computed from the flow by the core itself (engine.conversation.answer tried with every NPS
score, every choice, the bounds of each number and a text, the paths kept apart by the
questions they ask and the end they reach), and the browser is given only the answer for each
question; it reads everything else from the rendered pages. The first branch of each survey
is taken with the keyboard alone, the others by tapping. Each response exported is compared
with the one the same answers leave over SMS (the core's). The back button followed by a
resubmit and a double tap are applied once; a paused and a closed survey, the anonymous
link's start and an unknown link each have their page. A screenshot of each page is kept under
the test's tmp_path (screenshots/); axe-core (from the npm registry, pinned in
tests/browser/package-lock.json) audits every kind of page in the browser, and none may have a
serious or critical violation.

One browser serves the whole module. Selenium's calls block, so the browser runs in a thread
while the event loop serves the app. Chromium is started so that it reaches nothing beyond the
app (no background networking, component updates, sync or first-run pages) with a profile of
its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import admin_headers

from engine import conversation, pages
from engine.conversation import FlowSet, Respondent
from engine.flow import Flow, load_flow
from engine.runtime.appkeys import ARCHIVER

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

SURVEYS = sorted((Path(__file__).resolve().parent.parent / "surveys").glob("*.yaml"))
AXE = Path(__file__).resolve().parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SEVERE = ("serious", "critical")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WIDTH, HEIGHT = 375, 667
PAGE_WAIT = 15  # seconds a page may take to come after a submit
MAX_PAGES = 30  # a walk longer than this is going round in circles
FIELDS = {"FirstName": "Ana", "EventName": "DevConf", "City": "Lisbon", "Technician": "Sam",
          "Plan": "Fiber 500", "TicketId": "T-42"}  # what a contact list gives the examples
TEXT_ANSWER = "It was fine"


# ---------------------------------------------------------------- the branches, from the flow


@dataclass(frozen=True)
class Branch:
    answers: dict[str, str]  # question id -> the text the page posts, in the order asked
    record: dict  # the response record the same answers leave over SMS (the core's)


def candidates(page: pages.QuestionPage, literals: list[str]) -> list[str]:
    """The answers worth trying on a page: every score and choice, a number's bounds, a text
    (and each text a `contains` condition looks for)."""
    if page.type == "nps":
        return [str(n) for n in range(11)]
    if page.type == "choice":
        return [option.code for option in page.options]
    if page.type == "number":
        low = int(page.min) if page.min is not None else 0
        high = int(page.max) if page.max is not None else low + 1
        return [str(n) for n in range(low, high + 1)] if high - low <= 10 else [str(low), str(high)]
    return [TEXT_ANSWER, *literals]


def branches(flow: Flow, fields: dict) -> list[Branch]:
    """One answer sequence per distinct path (the questions asked, in order, and the end)."""
    flows = FlowSet([flow])
    literals = re.findall(r'contains\s+"([^"]+)"', flow.source)
    found: dict[tuple, Branch] = {}

    def walk(respondent: Respondent, answers: dict[str, str], now: float) -> None:
        page = pages.page(flow, respondent.session)
        for text in candidates(page, literals):
            outcome = conversation.answer(flows, respondent, text, now)
            session = outcome.respondent.session
            taken = {**answers, page.question: text}
            if session is None:
                [record] = outcome.responses
                found.setdefault((tuple(taken), record["end"]), Branch(taken, record))
            elif session.state != page.question:  # an invalid answer is not a branch
                walk(outcome.respondent, taken, now + 1)

    opened = conversation.start(flow, Respondent("web", "web-branches"), fields, 1e9, flows=flows)
    walk(opened.respondent, {}, 1e9 + 1)
    return list(found.values())


def survey_fields(flow: Flow) -> dict:
    return {name: FIELDS[name] for name in flow.survey.fields if name in FIELDS}


# ---------------------------------------------------------------- the browser


def browser(profile: Path) -> webdriver.Chrome:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail("chromium and chromium-driver are not installed: run ./dev test (it installs them)")
    if not AXE.exists():
        pytest.fail("axe-core is not installed: run ./dev test (npm ci in tests/browser)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_window_size(WIDTH, HEIGHT)
    driver.set_page_load_timeout(20)
    return driver


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    chromium = browser(tmp_path_factory.mktemp("profile"))
    yield chromium
    chromium.quit()


@dataclass
class Pages:
    """What one test's respondents see: each page kept as a screenshot, each kind of page audited
    once by axe-core (its serious and critical violations, by kind)."""

    driver: webdriver.Chrome
    shots: Path
    seen: int = 0
    violations: dict[str, list] = field(default_factory=dict)
    widths: dict[str, int] = field(default_factory=dict)  # the widest page of each kind

    def shot(self, kind: str, name: str) -> None:
        self.seen += 1
        self.driver.save_screenshot(str(self.shots / f"{self.seen:03d}-{name}-{kind}.png"))
        width = self.driver.execute_script("return document.documentElement.scrollWidth")
        self.widths[kind] = max(width, self.widths.get(kind, 0))
        if kind in self.violations:
            return
        self.driver.execute_script(_axe())
        found = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document).then(r => done(r.violations.map(v => [v.id, v.impact, v.nodes.length])))"
            ".catch(e => done([['axe-error', 'critical', String(e)]]));")
        self.violations[kind] = [v for v in found if v[1] in SEVERE]

    def main(self) -> str:
        return WebDriverWait(self.driver, PAGE_WAIT).until(
            expected_conditions.presence_of_element_located((By.TAG_NAME, "main"))).text

    def leave(self, act) -> None:
        """Do what submits the page (a tap, a key), then wait for the next page to be there:
        a busy machine may still be loading it when the test reads on."""
        old = self.driver.find_element(By.TAG_NAME, "main")
        # chromedriver may lose the tapped node to the page it led to before it answers; an act
        # that did nothing leaves the old page there, and the wait below fails
        with contextlib.suppress(WebDriverException):
            act()

        def gone(_) -> bool:
            try:
                old.is_enabled()
            except WebDriverException:  # stale, or (mid-navigation) no longer in the document
                return True
            return False

        WebDriverWait(self.driver, PAGE_WAIT).until(gone)

    def found(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def kind(self) -> str:
        """The page's kind, as its controls show it."""
        if self.found('button[name="answer"]'):
            return "nps"
        if self.found('input[type="radio"]'):
            return "choice"
        if self.found("textarea"):
            return "text"
        if self.found('input[type="text"]'):
            return "number"
        return "start" if self.found('button[name="start"]') else "end"

    def focused(self):
        return self.driver.switch_to.active_element

    def answer_by_keyboard(self, kind: str, text: str) -> None:
        """Tab from the top of the page to the control, then keys only: Tab along the score
        buttons and Enter; the arrows down the choices (Space for the first), Tab to the
        button, Enter; type the text, Tab, Enter; type the number, Enter."""
        self.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        if kind == "nps":
            for _ in range(int(text)):
                self.focused().send_keys(Keys.TAB)
            assert self.focused().get_attribute("value") == text
            self.leave(lambda: self.focused().send_keys(Keys.ENTER))
            return
        if kind == "choice":
            codes = [radio.get_attribute("value") for radio in self.found('input[type="radio"]')]
            steps = codes.index(text)
            self.focused().send_keys(*([Keys.ARROW_DOWN] * steps) if steps else Keys.SPACE)
            assert self.focused().get_attribute("value") == text and self.focused().is_selected()
            self.focused().send_keys(Keys.TAB)
            assert self.focused().get_attribute("class") == "next"
            self.leave(lambda: self.focused().send_keys(Keys.ENTER))
            return
        assert self.focused().get_attribute("name") == "answer"
        self.focused().send_keys(text)
        if kind == "text":
            self.focused().send_keys(Keys.TAB)
        self.leave(lambda: self.focused().send_keys(Keys.ENTER))

    def answer_by_tapping(self, kind: str, text: str) -> None:
        if kind == "nps":
            self.leave(lambda: self.found(f'button[name="answer"][value="{text}"]')[0].click())
            return
        if kind == "choice":
            self.driver.find_element(By.CSS_SELECTOR, f'input[type="radio"][value="{text}"]') \
                .find_element(By.XPATH, "..").click()  # its label, as a thumb would
        else:
            self.driver.find_element(By.NAME, "answer").send_keys(text)
        self.leave(lambda: self.found("button.next")[0].click())


_AXE: list[str] = []


def _axe() -> str:
    if not _AXE:
        _AXE.append(AXE.read_text())
    return _AXE[0]


@dataclass
class Walk:
    language: str  # the html lang of every page
    asked: list[str]  # the question ids, in the order the pages asked them
    end: str  # the last page's text


def take(seen: Pages, url: str, name: str, answers: dict[str, str], keyboard: bool) -> Walk:
    """Answer each question the pages ask with `answers`, until the end."""
    driver = seen.driver
    driver.delete_all_cookies()
    driver.get(url)
    languages, asked = set(), []
    for _ in range(MAX_PAGES):
        text = seen.main()
        languages.add(driver.find_element(By.TAG_NAME, "html").get_attribute("lang"))
        kind = seen.kind()
        seen.shot(kind, name)
        if kind == "end":
            break
        question = driver.find_element(By.NAME, "question").get_attribute("value")
        asked.append(question)
        if keyboard:
            seen.answer_by_keyboard(kind, answers[question])
        else:
            seen.answer_by_tapping(kind, answers[question])
    else:
        raise AssertionError(f"{name}: no end after {MAX_PAGES} pages")
    assert len(languages) == 1, languages
    return Walk(languages.pop(), asked, text)


# ---------------------------------------------------------------- the app


async def app_with_examples(make_client, settings, flows_dir):
    for survey in SURVEYS:
        shutil.copy(survey, flows_dir / survey.name)
    return await make_client(settings)


async def make_link(client, survey: str, fields: dict) -> str:
    made = await client.post(f"/admin/surveys/{survey}/links", data=json.dumps({"fields": fields}),
                             headers={**admin_headers(), "Content-Type": "application/json"})
    assert made.status == 201, await made.text()
    return str(client.make_url(f"/l/{(await made.json())['token']}"))


async def exported(client, survey: str) -> list[dict]:
    await client.app[ARCHIVER].archive_once()
    response = await client.get(f"/admin/responses/{survey}?format=jsonl", headers=admin_headers())
    return [json.loads(line) for line in (await response.text()).splitlines()]


def shots_dir(tmp_path: Path) -> Path:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    return shots


def ordered(records: list[dict]) -> list[tuple]:
    return sorted((r["status"], r["end"], tuple(sorted(r["answers"])), tuple(sorted(r["not_shown"])))
                  for r in records)


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("path", SURVEYS, ids=[p.stem for p in SURVEYS])
async def test_each_example_survey_through_every_branch(driver, make_client, settings, flows_dir, tmp_path, path):
    flow = load_flow(path)
    fields = survey_fields(flow)
    taken = branches(flow, fields)
    assert taken, "the survey has no branch"
    client = await app_with_examples(make_client, settings, flows_dir)
    seen = Pages(driver, shots_dir(tmp_path))
    for number, branch in enumerate(taken):
        # a survey in several languages: each branch in the next one (the contact's field picks it)
        language = list(flow.languages)[number % len(flow.languages)]
        own = {**fields, flow.survey.language_field: language} if len(flow.languages) > 1 else fields
        url = await make_link(client, flow.id, own)
        walk = await asyncio.to_thread(take, seen, url, f"{number}", branch.answers, number == 0)
        assert walk.language == flow.language_of(own)
        assert walk.asked == list(branch.answers)  # the questions the core asks, in its order
        assert play(flow, own, branch.answers) in " ".join(walk.end.split())  # its end, piped
    records = await exported(client, flow.id)
    assert ordered(records) == ordered([b.record for b in taken])  # as over SMS
    assert all(r["channel"] == "web" and r["status"] == "complete" for r in records)
    assert seen.violations == {kind: [] for kind in seen.violations}
    assert all(width <= WIDTH for width in seen.widths.values()), seen.widths  # no sideways scrolling
    assert len(list(seen.shots.iterdir())) == seen.seen


def play(flow: Flow, fields: dict, answers: dict[str, str]) -> str:
    """What the end says after `answers`, as the core says it over SMS (the closing step's replies)."""
    flows = FlowSet([flow])
    respondent = conversation.start(flow, Respondent("web", "web-branches"), fields, 1e9, flows=flows).respondent
    for text in answers.values():
        outcome = conversation.answer(flows, respondent, text, 1e9 + 1)
        respondent = outcome.respondent
    assert respondent.session is None
    return " ".join(" ".join(outcome.replies).split())


def back_and_double(seen: Pages, url: str) -> dict:
    """retail-nps: a 9 double-tapped, the back button and another score posted from the page
    it shows, then the choice posted twice at once, the way a double tap sends it."""
    driver, said = seen.driver, {}
    driver.delete_all_cookies()
    driver.get(url)
    seen.main()
    seen.shot("nps", "double")
    seen.leave(lambda: driver.execute_script(
        "const b = document.querySelector('button[name=\"answer\"][value=\"9\"]'); b.click(); b.click();"))
    said["after_double"] = seen.main()
    driver.back()
    said["back"] = seen.main()
    seen.shot(seen.kind(), "back")
    if seen.kind() == "nps":  # the page the browser kept: its form is the old one
        seen.leave(lambda: seen.found('button[name="answer"][value="3"]')[0].click())
    said["after_resubmit"] = seen.main()
    urls = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const form = new FormData(document.querySelector('form')); form.set('answer', '2');"
        "const post = () => fetch(location.href, {method: 'POST', body: new URLSearchParams(form)});"
        "Promise.all([post(), post()]).then(rs => done(rs.map(r => r.url)), e => done([String(e)]));")
    said["redirects"] = urls
    # the post applied redirects to the end with what it said; the other, a duplicate, to the link
    driver.get(next((url for url in urls if "?p=" in url), url))
    said["end"] = seen.main()
    seen.shot("end", "double")
    return said


async def test_the_back_button_and_a_double_tap_are_applied_once(driver, make_client, settings, flows_dir, tmp_path):
    client = await app_with_examples(make_client, settings, flows_dir)
    seen = Pages(driver, shots_dir(tmp_path))
    said = await asyncio.to_thread(back_and_double, seen, await make_link(client, "retail-nps", {}))
    assert "What did you shop for today?" in said["after_double"]  # a promoter: no reason asked
    assert "What did you shop for today?" in said["after_resubmit"]  # the old page's 3 changed nothing
    assert len(said["redirects"]) == 2 and sum("?p=" in url for url in said["redirects"]) == 1
    assert "Would you leave us a review?" in said["end"]
    [record] = await exported(client, "retail-nps")
    assert record["answers"]["recommend"]["score"] == 9 and record["answers"]["visit"]["code"] == "2"
    assert record["messages_in"] == 2 and record["end"] == "promoter_end"
    assert seen.violations == {kind: [] for kind in seen.violations}


def status_pages(seen: Pages, pages_to_see: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    said = {}
    for name, url in pages_to_see:
        seen.driver.delete_all_cookies()
        seen.driver.get(url)
        said[name] = (seen.main(), seen.driver.find_element(By.TAG_NAME, "html").get_attribute("lang"))
        seen.shot(name, "status")
    return said


async def test_the_start_paused_closed_and_unknown_pages(driver, make_client, settings, flows_dir, tmp_path):
    client = await app_with_examples(make_client, settings, flows_dir)
    paused = await make_link(client, "appointment-confirm", {"FirstName": "Ana"})
    closed = await make_link(client, "retail-nps", {})
    for survey, status in (("appointment-confirm", "paused"), ("retail-nps", "closed")):
        answer = await client.put(f"/admin/surveys/{survey}/status", json={"status": status},
                                  headers=admin_headers())
        assert answer.status == 200
    seen = Pages(driver, shots_dir(tmp_path))
    said = await asyncio.to_thread(status_pages, seen, [
        ("start", str(client.make_url("/s/event-feedback"))), ("paused", paused), ("closed", closed),
        ("unknown", str(client.make_url("/l/AAAAAAAAAAAAAAAAAAAAAA")))])
    assert "Conference feedback" in said["start"][0] and "Start" in said["start"][0]
    assert said["paused"] == ("Encuesta en pausa\nEsta encuesta está en pausa. Inténtelo de nuevo más tarde.", "es")
    assert said["closed"][1] == "en" and "Survey closed" in said["closed"][0]
    assert "Survey not found" in said["unknown"][0]
    assert seen.violations == {name: [] for name in ("start", "paused", "closed", "unknown")}
    assert sorted(p.name for p in seen.shots.iterdir()) == [
        "001-status-start.png", "002-status-paused.png", "003-status-closed.png", "004-status-unknown.png"]
