"""engine.policy and the core rules built on it: the WhatsApp window and template, the one
opt-out, the open survey's access code, the once-a-day not-in-survey reply, how long a record
is kept, and a reminder that could not go."""

from dataclasses import replace
from pathlib import Path

import pytest

from engine import conversation as conv
from engine import policy
from engine.events import (
    CARRIER,
    KEYWORD,
    NotInSurvey,
    OptedOut,
    QuestionRepeated,
    ReminderNotSent,
    ReminderSent,
    SessionClosed,
)
from engine.flow import load_flow

TESTS = Path(__file__).resolve().parent
STORE = load_flow(TESTS / "flows" / "good" / "conv_store.yaml")  # nps first, @SHOP, no template
REMIND = load_flow(TESTS / "flows" / "good" / "conv_remind.yaml")  # reminder after 2 h, no template
TEMPLATED = load_flow(TESTS / "flows" / "server" / "templated.yaml")  # a template, reminder after 30 min
TEMPLATE = TEMPLATED.survey.content_sid
FLOWS = conv.FlowSet([STORE, REMIND, TEMPLATED])
T0 = 1704099600.0
DAY = 86400
PHONE = "+15551234567"


def whatsapp(last_inbound_at=None) -> conv.Respondent:
    return conv.Respondent("whatsapp", PHONE, last_inbound_at=last_inbound_at)


@pytest.mark.parametrize(("respondent", "flow", "how", "template"), [
    (conv.Respondent("sms", PHONE), STORE, policy.TEXT, None),
    (whatsapp(T0 - 3600), STORE, policy.TEXT, None),
    (whatsapp(T0 - DAY + 1), TEMPLATED, policy.TEXT, None),
    (whatsapp(T0 - DAY), TEMPLATED, policy.TEMPLATE, TEMPLATE),
    (whatsapp(None), TEMPLATED, policy.TEMPLATE, TEMPLATE),
    (whatsapp(None), STORE, policy.REFUSED, None),
])
def test_how_a_server_initiated_message_may_go(respondent, flow, how, template):
    delivery = policy.server_initiated(respondent, flow, T0)
    assert (delivery.how, delivery.template) == (how, template)
    assert delivery.reason


def test_a_whatsapp_start_outside_the_window_uses_the_template_or_is_refused():
    assert conv.start(STORE, whatsapp(T0 - 60), {}, T0).template is None
    outcome = conv.start(TEMPLATED, whatsapp(), {}, T0)
    assert outcome.template == TEMPLATE and outcome.respondent.session.messages_out == 1
    with pytest.raises(conv.NotStartable) as caught:
        conv.start(STORE, whatsapp(), {}, T0)
    assert caught.value.reason == "whatsapp_window"
    with pytest.raises(conv.NotStartable) as caught:  # an opt-out is the reason given first
        conv.start(STORE, replace(whatsapp(), opted_out=True), {}, T0)
    assert caught.value.reason == "opted_out"


def test_a_reminder_outside_the_window_without_a_template_is_not_sent_nor_counted():
    r = conv.start(REMIND, whatsapp(T0 - 23 * 3600), {}, T0).respondent  # the window closes at T0 + 1 h
    outcome = conv.tick(FLOWS, r, T0 + 2 * 3600)
    assert outcome.replies == [] and outcome.template is None
    [event] = outcome.events
    assert isinstance(event, ReminderNotSent) and "24-hour window" in event.reason
    s = outcome.respondent.session
    assert (s.reminded, s.remind_at, s.messages_out, s.segments_out) == (False, None, 1, 0)
    assert outcome.respondent.due_at() == s.expires_at  # no reminder comes back by itself


def test_a_reminder_outside_the_window_goes_as_the_template():
    r = conv.start(TEMPLATED, whatsapp(T0 - 23 * 3600 - 45 * 60), {}, T0).respondent
    outcome = conv.tick(FLOWS, r, T0 + 30 * 60)
    assert outcome.template == TEMPLATE and len(outcome.replies) == 1
    assert [type(e) for e in outcome.events] == [ReminderSent]
    assert outcome.respondent.session.reminded


def test_a_reminder_that_failed_to_send_is_taken_back():
    r = conv.start(REMIND, conv.Respondent("sms", PHONE), {}, T0).respondent
    reminded = conv.tick(FLOWS, r, T0 + 2 * 3600)
    session = reminded.respondent.session
    assert (session.reminded, session.messages_out, session.segments_out) == (True, 2, 2)
    taken = conv.reminder_not_sent(reminded.respondent, session, reminded.replies, "Twilio refused it")
    s = taken.respondent.session
    assert (s.reminded, s.messages_out, s.segments_out) == (False, 1, 1)
    assert taken.events == [ReminderNotSent("conv-remind", "pet", "Twilio refused it")]
    other = conv.start(REMIND, conv.Respondent("sms", PHONE), {}, T0 + 60).respondent  # another session
    assert conv.reminder_not_sent(other, session, reminded.replies, "x").respondent == other


def test_stop_and_a_carrier_opt_out_are_one_rule():
    r = conv.start(STORE, conv.Respondent("sms", PHONE), {}, T0).respondent
    by_text = conv.receive(FLOWS, r, "STOP", T0 + 10)
    by_carrier = conv.opt_out(FLOWS, r, T0 + 10)
    for outcome, how in ((by_text, KEYWORD), (by_carrier, CARRIER)):
        assert outcome.replies == [] and outcome.respondent.opted_out and outcome.respondent.session is None
        assert outcome.events == [SessionClosed("conv-store", "opted_out"), OptedOut(how)]
        assert outcome.responses[0]["status"] == "opted_out"
    assert (by_text.responses[0]["messages_in"], by_carrier.responses[0]["messages_in"]) == (1, 0)
    expired = conv.opt_out(FLOWS, r, T0 + 3 * DAY)  # a session past its expiry closes as expired
    assert [rec["status"] for rec in expired.responses] == ["expired"]
    assert conv.opt_out(FLOWS, by_carrier.respondent, T0 + 20).events == []  # already opted out


def test_the_open_surveys_access_code_is_never_an_answer(tmp_path):
    path = tmp_path / "text_first.yaml"
    path.write_text('survey: text-first\naccess_code: "@TEXT"\nflow:\n'
                    '  - ask: why\n    type: text\n    prompt: Why did you come today?\n'
                    '  - ask: score\n    type: nps\n    prompt: Score 0-10?\n    attempts: 1\n    on_invalid: end\n')
    text_first = load_flow(path)
    flows = conv.FlowSet([text_first, STORE])
    r = conv.start(text_first, conv.Respondent("sms", PHONE), {}, T0).respondent  # the admin start won
    outcome = conv.receive(flows, r, " @text", T0 + 1)  # ... against the respondent's access code
    assert outcome.replies == ["Why did you come today?"]
    assert outcome.events == [QuestionRepeated("text-first", "why")]
    s = outcome.respondent.session
    assert (s.answers, s.state, s.attempts, s.messages_in, s.messages_out) == ({}, "why", 0, 1, 2)
    s = conv.receive(flows, outcome.respondent, "@shop", T0 + 2).respondent.session  # another survey's code
    assert s.answers == {"why": "@shop"}
    outcome = conv.receive(flows, replace(r, session=s), "@TEXT", T0 + 3)  # no attempt used up
    assert outcome.replies == ["Score 0-10?"]
    assert (outcome.respondent.session.status, outcome.respondent.session.attempts) == ("open", 0)


def test_not_in_survey_is_said_at_most_once_a_day():
    r = conv.Respondent("sms", PHONE)
    first = conv.receive(FLOWS, r, "hi", T0)
    assert first.replies == ["You are not currently taking a survey."]
    assert first.respondent.told_not_in_survey_at == T0
    again = conv.receive(FLOWS, first.respondent, "hello?", T0 + DAY - 1)
    assert again.replies == [] and again.events == [NotInSurvey(replied=False)]
    assert again.respondent.told_not_in_survey_at == T0
    assert conv.receive(FLOWS, again.respondent, "HELP", T0 + 10).replies  # HELP is always answered
    later = conv.receive(FLOWS, again.respondent, "hello?", T0 + DAY)
    assert later.replies == ["You are not currently taking a survey."]
    stored = conv.Respondent.loads(later.respondent.dumps(), "sms", PHONE)
    assert stored == later.respondent


def test_how_long_a_record_is_kept():
    stranger = conv.receive(FLOWS, conv.Respondent("sms", PHONE), "hi", T0).respondent
    assert policy.keep_for(stranger, T0) == policy.STRANGER_KEEP == DAY
    started = conv.receive(FLOWS, stranger, "@shop", T0).respondent
    assert policy.keep_for(started, T0) == 48 * 3600 + policy.KEEP_AFTER
    closed = conv.receive(FLOWS, started, "STOP", T0).respondent
    assert policy.keep_for(closed, T0) is None  # an opt-out is kept forever
    between = replace(closed, opted_out=False)
    assert between.last_survey == "conv-store" and policy.keep_for(between, T0) == policy.KEEP_AFTER
