"""engine.step: pure steps that return new sessions, timers, counters, and nothing left alive."""

import copy
import gc
import weakref
from pathlib import Path

import pytest

from engine import step as steps
from engine.events import AnswerRecorded, InvalidReply, ReminderSent, SessionClosed, SessionOpened
from engine.flow import load_flow
from engine.session import COMPLETE, EXPIRED, OPEN, OPTED_OUT

GOOD = Path(__file__).resolve().parent / "flows" / "good"
STORE = load_flow(GOOD / "conv_store.yaml")
REMIND = load_flow(GOOD / "conv_remind.yaml")
T0 = 1704099600.0
PHONE = "+15551234567"


def opened(flow=STORE, channel="sms"):
    return steps.open_session(flow, channel, PHONE, {"FirstName": "Ana"}, T0)


def test_open_session_sends_the_first_question_and_sets_its_timers():
    result = opened()
    s = result.session
    assert result.outbound == ["Hi Ana! How likely are you to recommend us to a friend? Reply 0-10. Text STOP to opt out."]
    assert (s.survey, s.version, s.channel, s.phone, s.state, s.status) == (
        "conv-store", STORE.version, "sms", PHONE, "recommend", OPEN)
    assert s.fields == {"FirstName": "Ana", "Q_RecipientPhoneNumber": PHONE}
    assert (s.started_at, s.expires_at, s.remind_at) == (T0, T0 + 48 * 3600, None)
    assert (s.messages_in, s.messages_out, s.segments_in, s.segments_out) == (0, 1, 0, 1)
    assert result.events == [SessionOpened("conv-store", STORE.version)]


def test_a_step_never_changes_the_session_it_was_given():
    session = opened().session
    before = copy.deepcopy(session)
    for reply in ("4", "eleven", "STOP", ""):
        steps.step(STORE, session, reply, T0 + 5)
    steps.tick(STORE, session, T0 + 3 * 86400)
    steps.close(session, OPTED_OUT, T0 + 5, inbound="stop")
    assert session == before


def test_answers_events_and_counters():
    s = opened().session
    result = steps.step(STORE, s, "4", T0 + 10)
    assert result.outbound == ["What is the main reason for your score?"]
    assert result.events == [AnswerRecorded("conv-store", "recommend", 4)]
    s = result.session
    assert (s.state, s.answers, s.updated_at, s.messages_in, s.segments_in, s.messages_out) == (
        "reason", {"recommend": 4}, T0 + 10, 1, 1, 2)
    s = steps.step(STORE, s, "x" * 200, T0 + 20).session
    assert (s.segments_in, s.state) == (3, "visit")  # 200 GSM-7 characters: 2 segments


def test_invalid_reply_counts_attempts_and_explains():
    s = opened().session
    result = steps.step(STORE, s, "11", T0 + 1)
    assert result.outbound == ["Please reply with a number from 0 to 10."]
    assert result.events == [InvalidReply("conv-store", "recommend", 1)]
    assert (result.session.attempts, result.session.state, result.session.answers) == (1, "recommend", {})
    for attempt, reply in enumerate(["12", "-1", "7.5", "ten", "13"], start=2):  # no limit by default
        result = steps.step(STORE, result.session, reply, T0 + attempt)
        assert result.outbound == ["Please reply with a number from 0 to 10."]
        assert (result.session.attempts, result.session.state) == (attempt, "recommend")
    result = steps.step(STORE, result.session, "5", T0 + 10)
    assert (result.session.state, result.session.attempts, result.session.answers) == ("reason", 0, {"recommend": 5})


def test_reaching_an_end_completes_with_its_message():
    s = steps.step(STORE, opened().session, "9", T0 + 1).session
    result = steps.step(STORE, s, "1", T0 + 2)
    assert result.outbound == ["Thanks! Would you leave us a review? https://example.com/review"]
    assert (result.session.status, result.session.state) == (COMPLETE, "promoter_end")
    assert result.session.fields["segment"] == "promoter"
    assert result.events[-1] == SessionClosed("conv-store", COMPLETE, end="promoter_end")
    assert result.session.due_at() is None
    with pytest.raises(ValueError, match="open session"):
        steps.step(STORE, result.session, "1", T0 + 3)


def test_whatsapp_messages_count_no_segments():
    s = steps.step(STORE, opened(channel="whatsapp").session, "4", T0 + 1).session
    assert (s.messages_in, s.messages_out, s.segments_in, s.segments_out) == (1, 2, 0, 0)


def test_expiry_keeps_the_answers_and_ends_at_the_expiry_time():
    s = steps.step(STORE, opened().session, "4", T0 + 1).session
    assert steps.tick(STORE, s, s.expires_at - 1).session is s
    result = steps.tick(STORE, s, s.expires_at + 3600)
    assert (result.session.status, result.session.updated_at, result.session.answers) == (
        EXPIRED, s.expires_at, {"recommend": 4})
    assert result.outbound == [] and result.events == [SessionClosed("conv-store", EXPIRED)]


def test_one_reminder_after_remind_after_of_silence():
    s = opened(REMIND).session
    assert s.remind_at == T0 + 2 * 3600 and s.due_at() == s.remind_at
    assert steps.tick(REMIND, s, T0 + 3600).outbound == []
    result = steps.tick(REMIND, s, T0 + 3 * 3600)
    assert result.outbound == ["Reminder: Which pet do you have?\n1. Cat\n2. Dog\n3. Other"]
    assert result.events == [ReminderSent("conv-remind", "pet")]
    s = result.session
    assert (s.reminded, s.remind_at, s.messages_out, s.due_at()) == (True, None, 2, s.expires_at)
    s = steps.step(REMIND, s, "cat", T0 + 4 * 3600).session
    assert s.remind_at is None  # one reminder per session
    assert steps.tick(REMIND, s, T0 + 10 * 3600).outbound == []


def test_each_message_sent_restarts_the_reminder_timer():
    s = opened(REMIND).session
    s = steps.step(REMIND, s, "fish", T0 + 3600).session  # invalid: the explanation is sent
    assert s.remind_at == T0 + 3 * 3600


def test_close_counts_the_inbound_that_closed_it():
    s = opened().session
    result = steps.close(s, OPTED_OUT, T0 + 60, inbound="STOP")
    assert (result.session.status, result.session.messages_in, result.session.updated_at) == (
        OPTED_OUT, 1, T0 + 60)
    assert result.outbound == []


def test_finished_sessions_and_step_cursors_are_not_kept_alive():
    flow = STORE
    sessions = []
    for n in range(20):
        s = steps.open_session(flow, "sms", f"+1555000{n:04d}", {}, T0).session
        for reply in ("4", "because", "2"):
            s = steps.step(flow, s, reply, T0 + 1).session
        assert s.status == COMPLETE
        sessions.append(weakref.ref(s))
        del s
    gc.collect()
    assert all(ref() is None for ref in sessions)
    assert not [o for o in gc.get_objects() if isinstance(o, steps.Cursor)]
    assert flow.machine.models == []


def test_the_cursor_does_not_outlive_its_step(monkeypatch):
    made = []

    class Watched(steps.Cursor):
        __slots__ = ()

        def __init__(self, *args):
            super().__init__(*args)
            made.append(weakref.ref(self))

    monkeypatch.setattr(steps, "Cursor", Watched)
    session = steps.step(STORE, opened().session, "4", T0 + 1).session
    gc.collect()
    assert session.state == "reason"
    assert len(made) == 2 and all(ref() is None for ref in made)  # one for opening, one for the step
