"""engine.pages and the web channel's core rules: the page of a session (its question, bare
prompt, choices, limits, the explanation after an invalid answer, its end), answers applied by
the conversation's own step without keywords, and the web session's lifetime without reminders."""

from pathlib import Path

import pytest

from engine import conversation as conv
from engine import pages, policy
from engine.events import OptedOut
from engine.flow import load_flow
from engine.session import evolve

TESTS = Path(__file__).resolve().parent
WEB = load_flow(TESTS / "flows" / "web" / "webtest.yaml")
CLINIC = load_flow(TESTS.parent / "surveys" / "appointment-confirm.yaml")  # es and en
FLOWS = conv.FlowSet([WEB, CLINIC])
T0 = 1704099600.0
VISITOR = "web-AAAAAAAAAAAAAAAA"


def started(flow=WEB, fields=None) -> conv.Respondent:
    return conv.start(flow, conv.Respondent(policy.WEB, VISITOR), fields or {"FirstName": "Ana"}, T0).respondent


def answered(*texts: str, flow=WEB) -> conv.Outcome:
    respondent = started(flow)
    outcome = None
    for n, text in enumerate(texts, 1):
        outcome = conv.answer(FLOWS, respondent, text, T0 + n)
        respondent = outcome.respondent
    return outcome


def test_an_nps_page_shows_the_prompt_with_piped_text_and_no_choice_list():
    page = pages.page(WEB, started().session)
    assert page == pages.QuestionPage(
        survey="webtest", title="Web test survey", language="en", question="score", type="nps",
        prompt="Hi Ana! How likely are you to recommend us? Reply 0-10. Text STOP to opt out.")


def test_a_choice_page_lists_its_codes_and_labels_and_the_sms_message_does_not_change():
    outcome = answered("3")
    assert outcome.replies == ["Sorry about the 3. What went wrong?\n1. Too slow\n2. Too loud"]
    page = pages.page(WEB, outcome.respondent.session)
    assert page.prompt == "Sorry about the 3. What went wrong?"
    assert page.options == (pages.Option("1", "Too slow"), pages.Option("2", "Too loud"))


def test_text_and_number_pages_carry_their_limits():
    text = pages.page(WEB, answered("9").respondent.session)
    assert (text.type, text.max_length) == ("text", 20)
    number = pages.page(WEB, answered("9", "ok").respondent.session)
    assert (number.type, number.min, number.max, number.decimal) == ("number", 0, 9, False)


def test_an_invalid_answer_puts_the_questions_explanation_on_its_page():
    outcome = answered("9", "ok", "12")
    page = pages.page(WEB, outcome.respondent.session)
    assert page.invalid == "Please reply with a number from 0 to 9." == outcome.replies[0]
    assert pages.page(WEB, answered("9", "ok").respondent.session).invalid is None


def test_the_page_speaks_the_sessions_language():
    respondent = conv.start(CLINIC, conv.Respondent(policy.WEB, VISITOR),
                            {"FirstName": "Eva", "Language": "en"}, T0).respondent
    page = pages.page(CLINIC, respondent.session)
    assert page.language == "en" and page.title == "Appointment confirmation"
    assert page.options[0] == pages.Option("1", "Yes, I will come")
    default = pages.page(CLINIC, conv.start(CLINIC, conv.Respondent(policy.WEB, VISITOR), {}, T0).respondent.session)
    assert default.language == "es" and default.title == "Confirmacion de citas"


def test_stop_and_help_are_answers_on_the_web_not_keywords():
    outcome = answered("9", "STOP")
    assert not outcome.respondent.opted_out and not any(isinstance(e, OptedOut) for e in outcome.events)
    assert outcome.respondent.session.answers["reason"] == "STOP"
    assert answered("9", "HELP").respondent.session.answers["reason"] == "HELP"


def test_without_an_open_session_an_answer_changes_nothing_but_the_time():
    outcome = conv.answer(FLOWS, conv.Respondent(policy.WEB, VISITOR), "9", T0)
    assert outcome.replies == [] and outcome.respondent.session is None and outcome.responses == []


def test_the_end_page_shows_what_the_closing_step_said_else_the_end_message():
    outcome = answered("3", "2", "why", "4")
    assert outcome.respondent.session is None and outcome.replies == ["We will turn it down."]
    assert pages.ended(WEB, None, outcome.replies).message == "We will turn it down."
    assert pages.ended(WEB, None, None).message == "Thanks for your answers!"
    with pytest.raises(ValueError, match="open session"):
        pages.page(WEB, evolve(started().session, status="complete"))


@pytest.mark.parametrize("channel, lasts, reminds", [
    ("sms", 3600, 600), ("whatsapp", 3600, 600), (policy.WEB, policy.WEB_SESSION_LASTS, None)])
def test_a_web_session_outlasts_the_surveys_expiry_and_gets_no_reminder(channel, lasts, reminds):
    assert policy.session_lasts(WEB, channel) == lasts
    assert policy.remind_after(WEB, channel) == reminds
    phone = VISITOR if channel == policy.WEB else "+15551230001"
    session = conv.start(WEB, conv.Respondent(channel, phone, last_inbound_at=T0), {}, T0).respondent.session
    assert session.expires_at == T0 + lasts
    assert session.remind_at == (None if reminds is None else T0 + reminds)
    later = conv.tick(FLOWS, conv.Respondent(channel, session.phone, session=session), T0 + 7200).respondent
    assert (later.session is not None) == (channel == policy.WEB)  # SMS and WhatsApp expired
