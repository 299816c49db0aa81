"""The web survey, link distributions, the opt-out URL and a survey's status, attacked: what a
careless browser, a hostile page or two tabs at once can do to them."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from conftest import admin_headers
from test_web_survey import WEB_FLOW, Form, answer, exported, link_path, page, post


@pytest.fixture
def web_flows(flows_dir):
    shutil.copy(WEB_FLOW, flows_dir / WEB_FLOW.name)
    return flows_dir


@pytest.fixture
async def web(make_client, settings, web_flows):
    return await make_client(settings)


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
