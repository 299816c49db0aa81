"""Sessions and respondents in their compact stored form."""

import pytest

from engine.conversation import Respondent
from engine.session import Session, dumps, loads


def sample(**changes) -> Session:
    values = dict(
        survey="store-feedback", version="d27fe2f04dca", channel="sms", phone="+15551234567",
        state="visit", answers={"recommend": 4, "reason": "Long queues at the till", "visit": "2"},
        not_shown=[], fields={"FirstName": "Ana", "Q_RecipientPhoneNumber": "+15551234567"},
        attempts=1, started_at=1704099600.0, updated_at=1704099700.0, expires_at=1704272400.0,
        remind_at=1704106900.0, messages_in=3, messages_out=4, segments_in=3, segments_out=4)
    values.update(changes)
    return Session(**values)


def test_round_trip():
    for session in (sample(), sample(remind_at=None, reminded=True, status="expired", not_shown=["reason"]),
                    sample(fields={"adult": True, "score": 7.5, "none": None}, channel="whatsapp")):
        assert loads(dumps(session)) == session


def test_three_answers_and_two_fields_fit_in_300_bytes():
    text = dumps(sample())
    assert len(text.encode("utf-8")) <= 300, len(text)


def test_fractional_times_keep_milliseconds():
    session = loads(dumps(sample(updated_at=1704099700.123456)))
    assert session.updated_at == 1704099700.123


@pytest.mark.parametrize("text", ["", "nonsense", "[]", "{}", "[1, 2, 3]", "null",
                                  dumps(sample()).replace('"open"', '"weird"'),
                                  dumps(sample()).replace("[1,", "[9,", 1)])
def test_bad_stored_text_is_a_value_error(text):
    with pytest.raises(ValueError, match="not a stored session"):
        loads(text)


def test_due_at_is_the_next_timer_of_an_open_session():
    assert sample().due_at() == 1704106900.0
    assert sample(reminded=True, remind_at=None).due_at() == 1704272400.0
    assert sample(remind_at=1704300000.0).due_at() == 1704272400.0  # expiry comes first
    assert sample(status="complete").due_at() is None


def test_respondent_round_trip():
    for respondent in (Respondent("sms", "+15551234567"),
                       Respondent("whatsapp", "+5511987654321", True, None, 1704099600.5, "retail-nps"),
                       Respondent("sms", "+15551234567", session=sample(), last_survey="store-feedback")):
        assert Respondent.loads(respondent.dumps()) == respondent
    assert Respondent("sms", "+1").dumps() == '{"c":"sms","p":"+1"}'


@pytest.mark.parametrize("text", ["", "[]", '{"c": "sms"}', '{"c":"sms","p":"+1","s":[1]}', "{"])
def test_bad_respondent_text_is_a_value_error(text):
    with pytest.raises(ValueError, match="not a stored respondent"):
        Respondent.loads(text)
