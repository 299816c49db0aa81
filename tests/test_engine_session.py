"""Sessions and respondents in their compact stored form (engine.session.pack, Respondent.dumps)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.conversation import FORMAT, Respondent
from engine.session import PHONE_FIELD, STATUSES, Session

PHONE = "+15551234567"


def sample(**changes) -> Session:
    values = dict(
        survey="store-feedback", version="d27fe2f04dca", channel="sms", phone=PHONE,
        state="visit", answers={"recommend": 4, "reason": "Long queues at the till", "visit": "2"},
        not_shown=[], fields={"FirstName": "Ana", "Q_RecipientPhoneNumber": PHONE},
        attempts=1, started_at=1704099600.0, updated_at=1704099700.0, expires_at=1704272400.0,
        remind_at=1704106900.0, messages_in=3, messages_out=4, segments_in=3, segments_out=4)
    values.update(changes)
    return Session(**values)


def respondent(session: Session | None = None, **changes) -> Respondent:
    values = dict(channel="sms", phone=PHONE, session=session,
                  last_inbound_at=session.updated_at if session else None,
                  last_survey=session.survey if session else None)
    values.update(changes)
    return Respondent(**values)


def round_trip(r: Respondent) -> Respondent:
    return Respondent.loads(r.dumps(), r.channel, r.phone)


ROUND_TRIPS = {
    "new": Respondent("sms", PHONE),
    "open session": respondent(sample()),
    "no reminder due, defaults": respondent(sample(remind_at=None, attempts=0)),
    "reminded, some not shown": respondent(sample(remind_at=None, reminded=True, not_shown=["reason"])),
    "answer times": respondent(sample(answered_at={"recommend": 1704099610.0, "reason": 1704099650.0,
                                                   "visit": 1704099700.0})),
    "a question given up has a time, no answer": respondent(sample(
        answers={"recommend": 4}, answered_at={"recommend": 1704099610.0, "reason": 1704099650.0})),
    "closed status": respondent(sample(status="expired")),
    "whatsapp, odd field values": respondent(sample(
        channel="whatsapp", fields={"adult": True, "score": 7.5, "none": None, "Q_RecipientPhoneNumber": PHONE},
        segments_in=0, segments_out=0), channel="whatsapp"),
    "segments beyond one a message": respondent(sample(segments_in=5, segments_out=9)),
    "whatsapp with segments": respondent(sample(channel="whatsapp", segments_in=1, segments_out=0),
                                         channel="whatsapp"),
    "no phone field": respondent(sample(fields={"FirstName": "Ana"})),
    "phone field holding another number": respondent(sample(
        fields={"Q_RecipientPhoneNumber": "+447700900123", "FirstName": "Ana"})),
    "fields set after the phone": respondent(sample(
        fields={"FirstName": "Ana", "Q_RecipientPhoneNumber": PHONE, "segment": "other", "tier": 2})),
    "phone field first": respondent(sample(fields={"Q_RecipientPhoneNumber": PHONE, "FirstName": "Ana"})),
    "no fields but the phone": respondent(sample(fields={"Q_RecipientPhoneNumber": PHONE})),
    "never texted (invited)": respondent(sample(), last_inbound_at=None),
    "texted after the session last moved": respondent(sample(), last_inbound_at=1704099760.0),
    "texted before the session last moved": respondent(sample(), last_inbound_at=1704099100.0),
    "another last survey": respondent(sample(), last_survey="retail-nps"),
    "no last survey with a session": respondent(sample(), last_survey=None),
    "between sessions": Respondent("whatsapp", "+5511987654321", False, None, 1704099600.0, "retail-nps"),
    "opted out": Respondent("sms", PHONE, True, None, 1704099600.0, "retail-nps"),
    "opted out before ever texting": Respondent("sms", PHONE, opted_out=True),
    "unicode": respondent(sample(answers={"reason": "Très bien 👍"}, fields={"Name": "Zoë"})),
    "a session in Spanish": respondent(sample(language="es"), language="es"),
    "a language between sessions": Respondent("sms", PHONE, False, None, 1704099600.0, "retail-nps",
                                              language="pt-BR"),
    "a number answer": respondent(sample(answers={"people": 3, "wait": 1.5})),
}


def test_records_stored_before_languages_still_load():
    """A session packed without its trailing language speaks the survey's default; a respondent
    record without one knows no language; both are written back exactly as they were."""
    old = '[2,["store-feedback","d27fe2f04dca","visit",{"recommend":4},{"FirstName":"Ana"},1704099600,100,172800,[3,4]]]'
    loaded = Respondent.loads(old, "sms", PHONE)
    assert (loaded.session.language, loaded.language) == ("", None)
    assert loaded.dumps() == old


def test_the_language_is_a_trailing_item_left_out_at_its_default():
    spanish = json.loads(respondent(sample(language="es")).dumps())
    assert spanish[1][-1] == "es"
    assert "language" not in respondent(sample()).dumps() and json.loads(respondent(sample()).dumps())[1][-1] != ""


@pytest.mark.parametrize("stored", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_round_trip(stored):
    assert round_trip(stored) == stored
    assert round_trip(round_trip(stored)) == stored


def test_the_record_leaves_out_what_the_key_holds_and_every_default():
    """The benchmark's open session (3 answers, 2 contact fields): 177 bytes, which with its
    revision fits Redis's 192-byte allocation (a 264-byte key in all, bench/run)."""
    session = sample(state="staff", answers={"recommend": 8, "visit": "2", "reason": "Long queues at the till"},
                     fields={"FirstName": "Ana", "Store": "Northwind Market", "Q_RecipientPhoneNumber": PHONE},
                     attempts=0, remind_at=None, updated_at=1704099600.4, segments_in=3, segments_out=4,
                     survey="bench-5q", version="155a2b9fc8ee", expires_at=1704272400.2)
    text = respondent(session).dumps()
    assert text == ('[2,["bench-5q","155a2b9fc8ee","staff",{"recommend":8,"visit":"2",'
                    '"reason":"Long queues at the till"},{"FirstName":"Ana","Store":"Northwind Market"},'
                    '1704099600,0,172800,[3,4]]]')
    assert len(text.encode()) <= 188
    assert Respondent("sms", PHONE).dumps() == "[2]"
    assert Respondent("sms", PHONE, opted_out=True).dumps() == "[2,null,1]"


names = st.text(max_size=12) | st.just(PHONE_FIELD)
values = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.just(PHONE)
seconds = st.integers(min_value=1_600_000_000, max_value=1_900_000_000).map(float)
counts = st.integers(min_value=0, max_value=500)


@st.composite
def stored_respondents(draw) -> Respondent:
    channel = draw(st.sampled_from(["sms", "whatsapp"]))
    session = None
    if draw(st.booleans()):
        started = draw(seconds)
        updated = started + draw(st.integers(0, 10**6))
        session = Session(
            draw(st.text(min_size=1, max_size=10)), draw(st.text(max_size=12)), channel, PHONE,
            draw(st.text(min_size=1, max_size=10)), draw(st.sampled_from(STATUSES)),
            draw(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=20), max_size=4)),
            draw(st.lists(st.text(max_size=8), max_size=3)), draw(st.dictionaries(names, values, max_size=5)),
            draw(counts), started, updated, started + draw(st.integers(0, 10**7)),
            draw(st.none() | st.integers(-10**5, 10**6).map(lambda d: updated + d)), draw(st.booleans()),
            draw(counts), draw(counts), draw(counts), draw(counts),
            draw(st.sampled_from(["", "es", "pt-BR"])),
            draw(st.dictionaries(st.text(max_size=8), st.integers(0, 10**6).map(lambda d: started + d), max_size=4)))
    return Respondent(channel, PHONE, draw(st.booleans()), session, draw(st.none() | seconds),
                      draw(st.none() | st.text(max_size=10)))


@settings(max_examples=300, deadline=None)
@given(stored_respondents())
def test_any_respondent_in_whole_seconds_round_trips(stored):
    assert round_trip(stored) == stored
    if stored.session is not None:
        assert list(round_trip(stored).session.fields) == list(stored.session.fields)  # in order


def test_answer_times_ride_on_the_updated_item_and_old_records_read_without_them():
    session = sample(answered_at={"recommend": 1704099610.0, "reason": 1704099650.0, "visit": 1704099700.0})
    assert respondent(session).dumps().count(",[100,10,50,100],") == 1
    given_up = sample(answers={"recommend": 4}, answered_at={"recommend": 1704099610.0, "reason": 1704099650.0})
    assert ',[100,{"recommend":10,"reason":50}],' in respondent(given_up).dumps()
    before = respondent(sample()).dumps()  # as every record stored before answer times existed
    assert ",100,172800," in before
    assert Respondent.loads(before, "sms", PHONE).session.answered_at == {}


def test_loaded_sessions_share_no_lists():
    text = respondent(sample(not_shown=[])).dumps()
    first, second = (Respondent.loads(text, "sms", PHONE).session for _ in range(2))
    first.not_shown.append("reason")
    assert second.not_shown == []


def test_the_phone_field_keeps_its_place():
    fields = {"Q_RecipientPhoneNumber": PHONE, "FirstName": "Ana", "segment": "other"}
    loaded = round_trip(respondent(sample(fields=fields)))
    assert list(loaded.session.fields.items()) == list(fields.items())


def test_times_are_kept_in_whole_seconds_rounded_down():
    stored = respondent(sample(started_at=1704099600.9, updated_at=1704099700.2, expires_at=1704272400.9,
                               remind_at=1704106900.99), last_inbound_at=1704099650.7)
    loaded = round_trip(stored)
    s = loaded.session
    assert (s.started_at, s.updated_at, s.expires_at, s.remind_at) == (
        1704099600.0, 1704099700.0, 1704272400.0, 1704106900.0)
    assert loaded.last_inbound_at == 1704099650.0
    assert round_trip(Respondent("sms", PHONE, last_inbound_at=1704099650.7)).last_inbound_at == 1704099650.0


def test_a_respondent_cannot_hold_a_session_of_another_number():
    with pytest.raises(ValueError, match="channel and phone"):
        respondent(sample(phone="+15550000000")).dumps()


def test_due_at_is_the_next_timer_of_an_open_session():
    assert sample().due_at() == 1704106900.0
    assert sample(reminded=True, remind_at=None).due_at() == 1704272400.0
    assert sample(remind_at=1704300000.0).due_at() == 1704272400.0  # expiry comes first
    assert sample(status="complete").due_at() is None


GOOD = json.loads(respondent(sample()).dumps())


def spoilt(index: int, value) -> str:
    items = json.loads(json.dumps(GOOD))
    items[1][index] = value
    return json.dumps(items)


@pytest.mark.parametrize("text", [
    "", "nonsense", "[]", "{}", "null", "{", "[[[[", '{"c":"sms","p":"+1"}', "[2,[1]]", "[2,null,2]",
    "[2,null,0,0,0,0]", '[2,null,0,"yesterday"]', "[2,null,0,null,7]",
    spoilt(0, 1), spoilt(3, []), spoilt(4, [{}, {}, {}]), spoilt(4, "Ana"), spoilt(5, "noon"),
    spoilt(6, 1.5), spoilt(7, True), spoilt(8, [3]), spoilt(8, [3, 4, 5]), spoilt(8, [3, "4"]),
    json.dumps([2, [*GOOD[1], None, [], 0, 0, "weird"]]),
    json.dumps([2, [*GOOD[1], None, [], 0, 0, "open", "extra"]]),
])
def test_bad_stored_text_is_a_value_error(text):
    with pytest.raises(ValueError, match="not a stored respondent"):
        Respondent.loads(text, "sms", PHONE)


@pytest.mark.parametrize("text, named", [
    ("[1]", "format 1 is unknown"), ("[3,null,1]", "format 3 is unknown"), ('["2"]', "\\[\"2\"\\]")])
def test_an_unknown_format_is_named(text, named):
    with pytest.raises(ValueError, match=f"not a stored respondent: {named}"):
        Respondent.loads(text, "sms", PHONE)
    assert FORMAT == 2


def test_evolve_is_replace_and_refuses_unknown_fields():
    from dataclasses import replace

    from engine.session import evolve

    session = Session("s", "v", "sms", "+15551234567", "q1", answers={"q0": 3})
    changes = {"state": "q2", "messages_in": 2, "remind_at": 5.0}
    assert evolve(session, **changes) == replace(session, **changes)
    assert session.state == "q1" and evolve(session).answers is session.answers
    with pytest.raises(TypeError, match="no field stat"):
        evolve(session, stat="q2")
