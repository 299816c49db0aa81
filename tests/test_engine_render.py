"""Outgoing text: NFC-normalised before it is counted and sent, and piped values stripped of the
characters no message (and no TwiML) can carry."""

from __future__ import annotations

import unicodedata

import pytest

from engine import step as steps
from engine.flow import load_flow
from engine.sms import segments

T0 = 1704099600.0
PHONE = "+15551234567"
DECOMPOSED = "Cafe\u0301"  # e + COMBINING ACUTE ACCENT: "Café" once composed
FLOW = """\
survey: render
fields: [Name]
flow:
  - ask: said
    type: text
    prompt: "Hi ${e://Field/Name}! Qu'avez-vous pris au Cafe\u0301? Text STOP to opt out."
  - ask: pick
    type: choice
    prompt: "You said ${q://said/ChoiceTextEntryValue}. Which one?"
    choices: ["The\u0301", "Cafe\u0301"]
  - end: done
    message: "Merci ${e://Field/Name}, a\u0300 bientot."
"""


@pytest.fixture
def flow(tmp_path):
    path = tmp_path / "render.yaml"
    path.write_text(FLOW, encoding="utf-8")
    return load_flow(path)


def test_every_outgoing_message_is_nfc_and_costs_what_segments_says(flow):
    opened = steps.open_session(flow, "sms", PHONE, {"Name": "Rene\u0301"}, T0)
    said = steps.step(flow, opened.session, "tre\u0300s bon", T0 + 1)
    picked = steps.step(flow, said.session, "1", T0 + 2)
    sent = opened.outbound + said.outbound + picked.outbound
    assert len(sent) == 3
    for message in sent:
        assert unicodedata.is_normalized("NFC", message), ascii(message)
    assert "Café" in sent[0] and "René" in sent[0]
    assert "très bon" in sent[1] and "1. Thé" in sent[1] and "2. Café" in sent[1]
    assert "René, à bientot" in sent[2]
    assert picked.session.segments_out == sum(segments.count(message).segments for message in sent)
    assert all(segments.count(message).encoding == "GSM-7" for message in sent)  # é, è, à are GSM-7


@pytest.mark.parametrize("typed, shown", [
    ("a\x01b\x0bc\x1fd\x7fe\x85f", "abcdef"),
    ("tab\tand\nline", "tab\tand\nline"),
    ("x\ufffey\uffffz", "xyz"),
    ("lone \ud800 surrogate", "lone  surrogate"),
])
def test_piped_answers_and_fields_lose_the_characters_no_message_can_carry(flow, typed, shown):
    opened = steps.open_session(flow, "sms", PHONE, {"Name": typed}, T0)
    assert f"Hi {shown}!" in opened.outbound[0]
    said = steps.step(flow, opened.session, typed, T0 + 1)
    assert said.outbound[0].startswith(f"You said {shown}.")
