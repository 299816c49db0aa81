"""The survey's web pages in a real browser: Debian's headless Chromium, driven by Selenium
through chromedriver, on a phone-sized window, against a Canvass app on 127.0.0.1. An example
survey is taken through a branch by clicking, one question is answered with the keyboard
alone, and a screenshot of each page is kept under the test's tmp_path; axe-core (from the
npm registry, pinned in tests/browser/package-lock.json) audits each page in the browser.

Selenium's calls block, so the browser runs in a thread while the event loop serves the app.
Chromium is started so that it reaches nothing beyond the app (no background networking,
component updates, sync or first-run pages) with a profile of its own."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from conftest import admin_headers

from engine.runtime.appkeys import ARCHIVER

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

SURVEY = Path(__file__).resolve().parent.parent / "surveys" / "retail-nps.yaml"
AXE = Path(__file__).resolve().parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SEVERE = ("serious", "critical")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WIDTH, HEIGHT = 375, 667
PAGE_WAIT = 15  # seconds a page may take to come after a submit


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


class Pages:
    """The pages one respondent sees, each kept as a screenshot."""

    def __init__(self, driver: webdriver.Chrome, shots: Path):
        self.driver, self.shots, self.seen = driver, shots, 0
        self.violations: dict[str, list] = {}

    def shot(self, name: str) -> None:
        """Keep a screenshot of the page, and audit it with axe-core: the serious and critical
        violations, by page."""
        self.seen += 1
        self.driver.save_screenshot(str(self.shots / f"{self.seen:02d}-{name}.png"))
        self.driver.execute_script(AXE.read_text())
        found = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document).then(r => done(r.violations.map(v => [v.id, v.impact, v.nodes.length])))"
            ".catch(e => done([['axe-error', 'critical', String(e)]]));")
        self.violations[name] = [v for v in found if v[1] in SEVERE]

    def text(self) -> str:
        return WebDriverWait(self.driver, PAGE_WAIT).until(
            expected_conditions.presence_of_element_located((By.TAG_NAME, "main"))).text

    def leave(self, act) -> None:
        """Do what submits the page (a click, a key), then wait for the next page to be there:
        a busy machine may still be loading it when the test reads on."""
        old = self.driver.find_element(By.TAG_NAME, "main")
        act()
        WebDriverWait(self.driver, PAGE_WAIT).until(expected_conditions.staleness_of(old))

    def click(self, css: str) -> None:
        self.leave(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())


def take_the_survey(url: str, profile: Path, shots: Path) -> dict:
    """A detractor's path through retail-nps: NPS by click, the reason typed, the choice made
    with the keyboard alone; what the pages said, for the test to check."""
    driver = browser(profile)
    seen = {}
    try:
        pages = Pages(driver, shots)
        driver.get(url)
        seen["lang"] = driver.find_element(By.TAG_NAME, "html").get_attribute("lang")
        seen["nps"] = pages.text()
        seen["width"] = driver.execute_script("return document.documentElement.scrollWidth")
        pages.shot("nps")
        pages.click('button[name="answer"][value="3"]')
        seen["reason"] = pages.text()
        pages.shot("reason")
        area = driver.find_element(By.CSS_SELECTOR, "textarea")
        area.send_keys("The queue was long")
        pages.click("button.next")
        seen["visit"] = pages.text()
        pages.shot("visit")
        # keyboard only: Tab from the top of the page to the first radio, arrows to the third
        # choice, Space to pick it, Tab to OK, Enter
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        active = driver.switch_to.active_element
        seen["first_focus"] = active.get_attribute("value")
        active.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN)
        driver.switch_to.active_element.send_keys(Keys.SPACE)
        driver.switch_to.active_element.send_keys(Keys.TAB)
        seen["ok_focus"] = driver.switch_to.active_element.text
        pages.leave(lambda: driver.switch_to.active_element.send_keys(Keys.ENTER))
        seen["end"] = pages.text()
        pages.shot("end")
        driver.back()  # the back button, then the same answer again
        driver.refresh()
        seen["after_back"] = pages.text()
        pages.shot("after-back")
        seen["violations"] = pages.violations
    finally:
        driver.quit()
    return seen


async def test_an_example_survey_in_headless_chromium(make_client, settings, flows_dir, tmp_path):
    shutil.copy(SURVEY, flows_dir / SURVEY.name)
    client = await make_client(settings)
    made = await client.post("/admin/surveys/retail-nps/links", data=json.dumps({}),
                             headers={**admin_headers(), "Content-Type": "application/json"})
    assert made.status == 201
    url = str(client.make_url(f"/l/{(await made.json())['token']}"))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    seen = await asyncio.to_thread(take_the_survey, url, tmp_path / "profile", shots)
    assert seen["lang"] == "en"
    assert "How likely are you to recommend us to a friend?" in seen["nps"]
    assert seen["width"] <= WIDTH  # nothing wider than the phone: no sideways scrolling
    assert "What is the main reason for your score?" in seen["reason"]  # the detractor's branch
    assert "What did you shop for today?" in seen["visit"] and seen["first_focus"] == "1"
    assert seen["ok_focus"] == "OK"
    assert "Thank you! Your answers help us improve." in seen["end"]
    assert "Thank you" in seen["after_back"]
    assert seen["violations"] == {name: [] for name in ("nps", "reason", "visit", "end", "after-back")}
    assert sorted(p.name for p in shots.iterdir()) == [
        "01-nps.png", "02-reason.png", "03-visit.png", "04-end.png", "05-after-back.png"]
    await client.app[ARCHIVER].archive_once()
    response = await client.get("/admin/responses/retail-nps?format=jsonl", headers=admin_headers())
    [record] = [json.loads(line) for line in (await response.text()).splitlines()]
    assert record["channel"] == "web" and record["status"] == "complete"
    assert record["answers"]["reason"] == "The queue was long"
    assert record["answers"]["visit"]["code"] == "3"  # picked with the arrow keys
