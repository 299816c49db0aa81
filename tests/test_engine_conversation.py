"""engine.conversation: routing, keywords, access codes, response records, and the memory store."""

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.load import parse_source
from engine import conversation as conv
from engine.events import Help, NotInSurvey, OptedOut, SessionClosed
from engine.flow import compile_flow, load_flow
from engine.sms.keywords import HELP, OPT_IN, OPT_OUT, Keyword, keyword
from engine.tools.memory_store import MemoryStore

GOOD = Path(__file__).resolve().parent / "flows" / "good"
STORE = load_flow(GOOD / "conv_store.yaml")
REMIND = load_flow(GOOD / "conv_remind.yaml")
FLOWS = conv.FlowSet([STORE, REMIND])
T0 = 1704099600.0
PHONE = "+15551234567"


def fresh(channel="sms") -> conv.Respondent:
    return conv.Respondent(channel, PHONE)


def invited(flow=STORE) -> conv.Respondent:
    return conv.start(flow, fresh(), {"FirstName": "Ana"}, T0).respondent


@pytest.mark.parametrize(("text", "opted_out", "expected"), [
    ("STOP", False, OPT_OUT), ("stop", False, OPT_OUT), ("  Stop. ", False, OPT_OUT), ("STOPALL", False, OPT_OUT),
    ("unsubscribe!", False, OPT_OUT), ("Cancel", False, OPT_OUT), ("end", False, OPT_OUT),
    ("quit", False, OPT_OUT), ("revoke", False, OPT_OUT), ("optout", False, OPT_OUT), ("STOP", True, OPT_OUT),
    ("start", False, OPT_IN), ("UNSTOP", True, OPT_IN), ("yes", True, OPT_IN), ("Yes!", True, OPT_IN),
    ("yes", False, None), ("help", False, HELP), ("INFO?", True, HELP),
    ("stop it", False, None), ("please stop", False, None), ("opt out", False, None), ("4", False, None),
    ("", False, None), ("S T O P", False, None),
])
def test_keywords_match_the_whole_message(text, opted_out, expected):
    found = keyword(text, opted_out)
    assert (found.kind if found else None) == expected


def test_stop_closes_the_session_as_opted_out_with_no_reply():
    r = conv.receive(FLOWS, invited(), "4", T0 + 10).respondent
    outcome = conv.receive(FLOWS, r, "STOP", T0 + 20)
    assert outcome.replies == []
    assert outcome.respondent.opted_out and outcome.respondent.session is None
    [record] = outcome.responses
    assert (record["status"], record["answers"], record["messages_in"]) == ("opted_out", {"recommend": 4}, 2)
    assert [type(e) for e in outcome.events] == [SessionClosed, OptedOut]


def test_an_opted_out_number_hears_nothing_and_changes_nothing():
    r = replace(fresh(), opted_out=True, last_inbound_at=T0)
    for text in ("hello", "@SHOP", "HELP", "4", "STOP"):
        outcome = conv.receive(FLOWS, r, text, T0 + 60)
        assert (outcome.respondent, outcome.replies, outcome.events, outcome.responses) == (r, [], [], [])
    outcome = conv.receive(FLOWS, r, "Unstop", T0 + 60)
    assert outcome.replies == ["You have been resubscribed. Reply STOP to opt out."]
    assert not outcome.respondent.opted_out and outcome.respondent.last_inbound_at == T0 + 60


def test_help_leaves_the_session_exactly_as_it_was():
    r = invited()
    outcome = conv.receive(FLOWS, r, "HELP", T0 + 10)
    assert outcome.respondent.session == r.session
    assert outcome.events == [Help()]
    r = invited(REMIND)
    assert conv.receive(FLOWS, r, "info", T0).replies == ["Pet survey. Reply to each question, or STOP to opt out."]


def test_access_code_starts_a_survey_only_without_an_open_session():
    outcome = conv.receive(FLOWS, fresh(), " @shop\n", T0)
    session = outcome.respondent.session
    assert (session.survey, session.messages_in, session.fields) == (
        "conv-store", 1, {"Q_RecipientPhoneNumber": PHONE})
    assert outcome.replies[0].startswith("Hi ! How likely")
    outcome = conv.receive(FLOWS, outcome.respondent, "@join", T0 + 5)  # an answer to the open survey
    assert outcome.replies == ["Please reply with a number from 0 to 10."]


def test_not_in_survey_uses_the_last_surveys_text():
    assert conv.receive(FLOWS, fresh(), "hi", T0).replies == ["You are not currently taking a survey."]
    r = replace(fresh(), last_survey="conv-remind")
    outcome = conv.receive(FLOWS, r, "hi", T0)
    assert outcome.replies == ["No survey is open. Text @JOIN to start one."]
    assert outcome.events == [NotInSurvey()]


def test_an_expired_session_closes_before_the_message_is_routed():
    r = conv.receive(FLOWS, invited(), "4", T0 + 10).respondent
    outcome = conv.receive(FLOWS, r, "@join", T0 + 49 * 3600)
    assert [rec["status"] for rec in outcome.responses] == ["expired"]
    assert outcome.responses[0]["ended_at"] == "2024-01-03T09:00:00Z"
    assert outcome.respondent.session.survey == "conv-remind"
    assert outcome.replies == ["Which pet do you have?\n1. Cat\n2. Dog\n3. Other"]


def test_start_refuses_opted_out_numbers_and_open_sessions():
    with pytest.raises(conv.NotStartable) as caught:
        conv.start(STORE, replace(fresh(), opted_out=True), {}, T0)
    assert caught.value.reason == "opted_out"
    with pytest.raises(conv.NotStartable) as caught:
        conv.start(REMIND, invited(), {}, T0 + 60)
    assert caught.value.reason == "open_session"
    outcome = conv.start(REMIND, invited(), {}, T0 + 3 * 86400, flows=FLOWS)  # the old one expired
    assert [rec["status"] for rec in outcome.responses] == ["expired"]
    assert outcome.respondent.session.survey == "conv-remind"


def test_a_session_whose_flow_version_is_gone_closes_as_error():
    r = invited()
    outcome = conv.receive(conv.FlowSet([REMIND]), r, "4", T0 + 10)
    assert [rec["status"] for rec in outcome.responses] == ["error"]
    assert outcome.replies == ["You are not currently taking a survey."]
    outcome = conv.tick(conv.FlowSet(), r, T0 + 49 * 3600)
    assert [rec["status"] for rec in outcome.responses] == ["error"]


def test_tick_fires_due_timers_only():
    r = invited(REMIND)
    assert conv.tick(FLOWS, r, T0 + 60).replies == []
    outcome = conv.tick(FLOWS, r, T0 + 2 * 3600)
    assert outcome.replies == ["Reminder: Which pet do you have?\n1. Cat\n2. Dog\n3. Other"]
    assert outcome.respondent.due_at() == T0 + 86400
    assert conv.tick(FLOWS, fresh(), T0).replies == []


def test_response_record():
    r = invited()
    for i, text in enumerate(("3", "Too busy", "clothing")):
        outcome = conv.receive(FLOWS, r, text, T0 + 60 * (i + 1))
        r = outcome.respondent
    [record] = outcome.responses
    assert record == {
        "response_id": record["response_id"], "survey": "conv-store", "version": STORE.version,
        "channel": "sms", "phone": PHONE, "status": "complete", "language": "en",
        "started_at": "2024-01-01T09:00:00Z", "ended_at": "2024-01-01T09:03:00Z",
        "fields": {"FirstName": "Ana", "Q_RecipientPhoneNumber": PHONE, "segment": "other"},
        "answers": {"recommend": 3, "reason": "Too busy", "visit": {"code": "2", "label": "Clothing"}},
        "not_shown": [], "messages_in": 3, "messages_out": 4, "segments_in": 3, "segments_out": 4,
        "end": "default_end", "last_question": None,
        "answered_at": {"recommend": "2024-01-01T09:01:00Z", "reason": "2024-01-01T09:02:00Z",
                        "visit": "2024-01-01T09:03:00Z"},
    }
    assert len(record["response_id"]) == 20
    assert r.session is None and r.last_survey == "conv-store" and r.last_inbound_at == T0 + 180


def test_flow_set_looks_up_versions_and_access_codes():
    newer = replace(STORE, version="0" * 12)
    flows = conv.FlowSet([STORE, newer, REMIND])
    assert flows.get("conv-store") is newer and flows.get("conv-store", STORE.version) is STORE
    assert flows.get("conv-store", "f" * 12) is None and flows.get("nope") is None
    assert flows.by_access_code("@SHOP") is newer and flows.by_access_code("@join") is REMIND
    assert flows.by_access_code("shop") is None


def test_memory_store_keeps_respondents_and_responses():
    store = MemoryStore()
    assert store.load("sms", PHONE) == fresh()
    outcome = conv.receive(FLOWS, store.load("sms", PHONE), "@shop", T0)
    store.save(outcome.respondent)
    loaded = store.load("sms", PHONE)
    assert loaded == outcome.respondent and loaded is not outcome.respondent
    assert store.load("whatsapp", PHONE) == fresh("whatsapp")
    stop = conv.receive(FLOWS, loaded, "stop", T0 + 1)
    store.append_responses(stop.responses)
    assert [r["status"] for r in store.responses("conv-store")] == ["opted_out"]
    assert store.responses("conv-remind") == []


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(max_size=30) | st.sampled_from(["4", "10", "2", "clothing", "STOP", "help",
                                                              "start", "yes", "@shop", "@join"]),
                      max_size=8))
def test_any_messages_get_at_most_one_reply_each_and_never_crash(texts):
    r = invited()
    for n, text in enumerate(texts):
        before = r
        outcome = conv.receive(FLOWS, r, text, T0 + n)
        r = outcome.respondent
        assert len(outcome.replies) <= 1
        if before.session is not None and not before.opted_out and keyword(text) is None:
            assert len(outcome.replies) == 1  # an answer, an explanation, or the end message
        assert conv.Respondent.loads(r.dumps(), r.channel, r.phone) == r


# ---------------------------------------------------------------- languages


@pytest.mark.parametrize(("text", "opted_out", "kind", "language"), [
    ("ALTO", False, OPT_OUT, "es"), ("baja", False, OPT_OUT, "es"), ("Arrêt", False, OPT_OUT, "fr"),
    ("ARRET!", False, OPT_OUT, "fr"), ("parar", False, OPT_OUT, "es"), ("sair", False, OPT_OUT, "pt"),
    ("stopp", False, OPT_OUT, "de"), ("AYUDA", False, HELP, "es"), ("aide", False, HELP, "fr"),
    ("Ajuda", False, HELP, "pt"), ("HILFE", False, HELP, "de"), ("stop", False, OPT_OUT, None),
    ("sí", True, OPT_IN, "es"), ("OUI", True, OPT_IN, "fr"), ("sim", True, OPT_IN, "pt"), ("ja", True, OPT_IN, "de"),
    ("yes", True, OPT_IN, None),
])
def test_each_language_has_its_own_keywords(text, opted_out, kind, language):
    assert keyword(text, opted_out) == Keyword(kind, language)


@pytest.mark.parametrize("text", ["fin", "FIN", "no", "non", "nein", "si", "oui", "alto ahí", "ja"])
def test_everyday_answers_are_no_keywords(text):
    assert keyword(text) is None


PRICE = """\
survey: price
languages: [es, en]
flow:
  - ask: price
    type: choice
    prompt: {es: "¿El precio? Envíe STOP para darse de baja.", en: "The price? Text STOP to opt out."}
    choices:
      - {es: "Alta", en: "High"}
      - {es: "Baja", en: "Low"}
  - ask: why
    type: text
    prompt: {es: "¿Por qué?", en: "Why?"}
"""


def price_flow():
    return compile_flow(parse_source(PRICE, "x.yaml"), PRICE, "yaml")


def test_a_local_keyword_that_answers_the_open_choice_is_the_answer():
    flow = price_flow()
    flows = conv.FlowSet([flow])
    r = conv.start(flow, fresh(), {}, T0).respondent
    outcome = conv.receive(flows, r, "BAJA", T0 + 60)
    assert outcome.respondent.session.answers == {"price": "2"}
    assert outcome.replies == ["¿Por qué?"]
    stopped = conv.receive(flows, outcome.respondent, "baja", T0 + 120)  # a text question: the keyword
    assert stopped.respondent.opted_out and stopped.replies == []
    assert stopped.responses[0]["answers"] == {"price": {"code": "2", "label": "Baja"}}


def test_replies_between_sessions_speak_the_respondents_last_language():
    flow = price_flow()
    flows = conv.FlowSet([flow])
    r = conv.start(flow, fresh(), {}, T0, language="en").respondent
    assert r.session.language == "en" and r.language == "en"
    r = conv.receive(flows, r, "STOP", T0 + 60).respondent
    back = conv.receive(flows, r, "START", T0 + 120)
    assert back.replies == ["You have been resubscribed. Reply STOP to opt out."]
    assert conv.receive(flows, back.respondent, "AYUDA", T0 + 180).replies[0].startswith("Esta es una encuesta")
    assert conv.receive(flows, back.respondent, "HELP", T0 + 180).replies[0].startswith("This is an automated")


def test_existing_surveys_keep_their_versions():
    """Fields added for languages and the number type stay out of the hashed repr while unused,
    so sessions pinned to a version from before them keep running after an upgrade."""
    for flow in (STORE, REMIND):
        text = repr(flow.survey)
        assert not any(word in text for word in ("languages=", "translations=", "match=", "min_value=", "texts="))
