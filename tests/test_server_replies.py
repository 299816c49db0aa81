"""Every reply is well-formed XML whatever a respondent types or a contact list holds: any Unicode
string piped into a prompt (an answer, a contact field) comes back in TwiML a real XML parser reads,
through the real server."""

from __future__ import annotations

import itertools
import json
import xml.dom.minidom
from urllib.parse import parse_qsl, urlencode

import pytest
from conftest import admin_headers
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, replies_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.render import UNSENDABLE
from engine.runtime.twilio import sign

ECHO = """\
survey: echo
access_code: "@ECHO"
fields: [Name]
flow:
  - ask: said
    type: text
    prompt: "Hi ${e://Field/Name}, say anything. Text STOP to opt out."
  - ask: again
    type: text
    prompt: "You said ${q://said/ChoiceTextEntryValue}, ${e://Field/Name}. Once more?"
  - end: done
    message: "Bye ${e://Field/Name}: ${q://again/ChoiceTextEntryValue}"
"""
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x01", "a\x0bb", "\ufffe", "\uffff", "\ud800", "x\udfffy", "]]>&<\"'", "\x7f\x85\u2028", "e\u0301"])
numbers = (f"+1555126{n:04d}" for n in itertools.count())


@pytest.fixture
async def echo_client(make_client, settings, flows_dir):
    (flows_dir / "echo.yaml").write_text(ECHO, encoding="utf-8")
    return await make_client(settings)


async def text(client, number: str, body: str, sid: str) -> str:
    """Post an inbound SMS as Twilio would (UTF-8, percent-encoded; a lone surrogate arrives as the
    bytes Python would write for it), signed over the form the server will read; the TwiML."""
    encoded = urlencode({"MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": number, "Body": body},
                        encoding="utf-8", errors="surrogatepass")
    form = dict(parse_qsl(encoded, keep_blank_values=True))
    signature = sign(AUTH_TOKEN, PUBLIC_BASE_URL + "/twilio/messages", form)
    response = await client.post("/twilio/messages", data=encoded.encode("ascii"), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
    assert response.status == 200, await response.text()
    return await response.text()


def well_formed(twiml: str) -> list[str]:
    xml.dom.minidom.parseString(twiml.encode("utf-8"))
    replies = replies_of(twiml)
    assert not any(UNSENDABLE.search(reply) for reply in replies), [ascii(reply) for reply in replies]
    return replies


@PROPERTY
@given(answer=ANY_TEXT)
async def test_any_answer_piped_into_the_next_prompt_is_well_formed_twiml(echo_client, answer):
    number, sids = next(numbers), (f"SM{n:032x}" for n in itertools.count(1))
    assert well_formed(await text(echo_client, number, "@ECHO", next(sids)))
    well_formed(await text(echo_client, number, answer, next(sids)))
    well_formed(await text(echo_client, number, answer + "!", next(sids)))


@PROPERTY
@given(name=ANY_TEXT)
async def test_any_contact_field_is_refused_or_piped_into_well_formed_twiml(echo_client, fake_twilio, name):
    number = next(numbers)
    response = await echo_client.post("/admin/surveys/echo/start", data=json.dumps({"to": number, "fields": {
        "Name": name}}), headers={**admin_headers(), "Content-Type": "application/json"})
    if UNSENDABLE.search(name):
        assert response.status == 400, await response.text()
        return
    assert response.status == 201, await response.text()
    assert not UNSENDABLE.search(fake_twilio.messages[-1].body)
    well_formed(await text(echo_client, number, "fine", f"SM{1:032x}"))
    well_formed(await text(echo_client, number, name, f"SM{2:032x}"))
