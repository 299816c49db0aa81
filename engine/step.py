"""One step of one conversation: (flow, session, inbound text, now) -> new session + messages.

No I/O and no clock: `now` is given. The input Session is never changed; a step returns a new
one, so a caller whose compare-and-set fails can retry from the stored session.

Replies that are not valid answers: each gets one message, the question's explanation, and
the question waits for a valid answer until the session expires. A question with `attempts: N`
gives N tries: the reply that is the Nth invalid one gets no explanation; `on_invalid` applies:
- `skip` (default): the question is left unanswered and the flow moves on (the next message is
  the next question, or the end message);
- `end`: the session closes with status `ended_invalid`, and the survey's end message is sent.

A reply that must not answer the question (the open survey's own access code, as
engine.conversation decides) is never recorded and never counts as an attempt: ask_again()
asks the question again, with its prompt where the question would have taken the reply as an
answer (a text question), else with its explanation, as for an invalid reply.

Languages: a session speaks the language it opened in (Session.language; "" is the survey's
default). Each question's message, explanation and reader exist per language, built with the flow;
a reply matching two choices (Ambiguous) is an invalid reply whose explanation names both.

Reminders: while a session is open and has not been reminded, every message sent to the
respondent sets remind_at = now + remind_after; tick() sends the one reminder when it is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from dsl.matching import trim
from engine import policy
from engine.events import (
    AnswerRecorded,
    Event,
    InvalidReply,
    QuestionRepeated,
    ReminderSent,
    SessionClosed,
    SessionOpened,
)
from engine.flow import Flow
from engine.questions import Ambiguous
from engine.render import outgoing, sendable
from engine.session import COMPLETE, ENDED_INVALID, EXPIRED, OPEN, PHONE_FIELD, Session, evolve
from engine.sms import segments
from engine.texts import fill


@dataclass(slots=True, weakref_slot=True)
class Cursor:
    """The small object the shared machine moves during one step: a state and a working copy."""

    state: str
    answers: dict
    fields: dict
    not_shown: list
    channel: str = ""  # the session's: a text may render differently on the web (engine.render)


@dataclass(frozen=True)
class Step:
    session: Session
    outbound: list[str]
    events: list[Event]


def segment_count(channel: str, text: str) -> int:
    """SMS segments of a message; WhatsApp messages are not split into segments."""
    return _sms_segments(text) if channel == "sms" else 0


@lru_cache(maxsize=4096)  # most texts are a flow's prompts, sent again and again
def _sms_segments(text: str) -> int:
    return segments.count(text).segments


def _received(session: Session, text: str | None) -> dict:
    """The changes that receiving `text` (None: nothing was received) makes to the session."""
    if text is None:
        return {}
    return {"messages_in": session.messages_in + 1,
            "segments_in": session.segments_in + segment_count(session.channel, text)}


def _sent(flow: Flow, session: Session, outbound: list[str], now: float, changes: dict) -> Session:
    """The session with `changes` (a dict of the caller's, completed here) after sending
    `outbound`, its reminder timer restarted if one is due. One evolve() for the whole
    step: each cost about 7% of one."""
    remind_at = changes.get("remind_at", session.remind_at)
    if changes.get("status", session.status) != OPEN:
        remind_at = None
    elif (remind_after := policy.remind_after(flow, session.channel)) \
            and not changes.get("reminded", session.reminded) and outbound:
        remind_at = now + remind_after
    channel = session.channel
    changes.update(updated_at=now, remind_at=remind_at, messages_out=session.messages_out + len(outbound),
                   segments_out=session.segments_out + sum(segment_count(channel, m) for m in outbound))
    return evolve(session, **changes)


def _settle(flow: Flow, session: Session, cursor: Cursor, events: list[Event], now: float,
            received: dict) -> Step:
    """Move through elements that send nothing until a question to ask or an end, then send it."""
    while cursor.state in flow.passing and flow.machine.events["pass"].trigger(cursor):
        pass  # gotos only jump forward (dsl.check), so this ends within the flow's length
    changes = dict(received, state=cursor.state, answers=cursor.answers, fields=cursor.fields,
                   not_shown=cursor.not_shown, attempts=0)
    question = flow.questions.get(cursor.state)
    language = session.language or flow.default_language
    if question is not None:
        outbound = [question.message[language](cursor)]
        return Step(_sent(flow, session, outbound, now, changes), outbound, events)
    message = flow.endings[cursor.state].message[language](cursor)
    outbound = [message] if message else []
    events.append(SessionClosed(session.survey, COMPLETE, end=cursor.state))
    changes["status"] = COMPLETE
    return Step(_sent(flow, session, outbound, now, changes), outbound, events)


def _left(session: Session, qid: str, now: float) -> dict:
    """The change that leaving question `qid` now (answered, or given up) makes."""
    return {"answered_at": {**session.answered_at, qid: now}}


def _cursor(session: Session) -> Cursor:
    return Cursor(session.state, dict(session.answers), dict(session.fields), list(session.not_shown),
                  session.channel)


def open_session(flow: Flow, channel: str, phone: str, fields: dict, now: float,
                 inbound: str | None = None, language: str | None = None) -> Step:
    """A new session on the flow, settled at its first question (whose message is sent).
    `inbound` is the respondent's message that started it (an access code), if any; `language`
    the one it speaks (None or one the flow does not speak: the flow's default)."""
    if language not in flow.languages or language == flow.default_language:
        language = ""
    session = Session(
        survey=flow.id, version=flow.version, channel=channel, phone=phone, state=flow.first,
        fields={**fields, PHONE_FIELD: phone}, started_at=now, updated_at=now,
        expires_at=now + policy.session_lasts(flow, channel), language=language)
    events: list[Event] = [SessionOpened(flow.id, flow.version)]
    return _settle(flow, session, _cursor(session), events, now, _received(session, inbound))


def step(flow: Flow, session: Session, inbound: str, now: float) -> Step:
    """Apply the respondent's reply to the question the open session is waiting on."""
    if not session.is_open:
        raise ValueError(f"step() needs an open session, not a {session.status} one")
    received = _received(session, inbound)
    question = flow.questions[session.state]
    language = session.language or flow.default_language
    stored = question.read[language](inbound)
    cursor = _cursor(session)
    if stored is not None and not isinstance(stored, Ambiguous):
        cursor.answers[question.id] = stored
        events: list[Event] = [AnswerRecorded(flow.id, question.id, stored)]
        flow.machine.events["answer"].trigger(cursor)
        return _settle(flow, session, cursor, events, now, received | _left(session, question.id, now))
    attempts = session.attempts + 1
    if question.attempts is None or attempts < question.attempts:
        outbound = [question.invalid[language](cursor) if stored is None
                    else _ambiguous(flow, language, stored, inbound)]
        event = InvalidReply(flow.id, question.id, attempts)
        return Step(_sent(flow, session, outbound, now, dict(received, attempts=attempts)), outbound, [event])
    event = InvalidReply(flow.id, question.id, attempts, then=question.on_invalid)
    if question.on_invalid == "end":
        message = flow.language(language).end_message(cursor)
        outbound = [message] if message else []
        events = [event, SessionClosed(session.survey, ENDED_INVALID, question=question.id)]
        changes = dict(received, status=ENDED_INVALID, attempts=attempts)
        return Step(_sent(flow, session, outbound, now, changes), outbound, events)
    flow.machine.events["answer"].trigger(cursor)
    return _settle(flow, session, cursor, [event], now, received | _left(session, question.id, now))


def _ambiguous(flow: Flow, language: str, reply: Ambiguous, inbound: str) -> str:
    """The explanation for a reply that names two choices: which ones, and how to pick one."""
    texts = flow.language(language).texts
    choices = ", ".join(f"{code} ({label})" for code, label in reply.choices)
    return outgoing(fill(texts["ambiguous"], reply=sendable(trim(inbound)), choices=choices))


def ask_again(flow: Flow, session: Session, inbound: str, now: float) -> Step:
    """Ask the open session's question again after a reply that must not answer it (the
    survey's own access code): received and counted, never recorded, attempts unchanged."""
    question = flow.questions[session.state]
    outbound = [question.message[session.language or flow.default_language](session)]
    changes = _received(session, inbound)
    return Step(_sent(flow, session, outbound, now, changes), outbound, [QuestionRepeated(flow.id, question.id)])


def close(session: Session, status: str, now: float, inbound: str | None = None) -> Step:
    """Close an open session (expired, opted out, error) without sending anything."""
    closed = evolve(session, **_received(session, inbound), status=status, updated_at=now, remind_at=None)
    return Step(closed, [], [SessionClosed(session.survey, status)])


def tick(flow: Flow, session: Session, now: float) -> Step:
    """Fire the session's timer if it is due: expiry first, else the one reminder."""
    if session.status != OPEN:
        return Step(session, [], [])
    if now >= session.expires_at:
        return close(session, EXPIRED, session.expires_at)
    if session.reminded or session.remind_at is None or now < session.remind_at:
        return Step(session, [], [])
    question = flow.questions[session.state]  # an open session always waits on a question
    language = flow.language(session.language)
    if language.reminder is not None:
        text = language.reminder(session)
    else:
        text = language.texts["reminder_prefix"] + question.message[language.code](session)
    event = ReminderSent(flow.id, question.id)
    changes = {"reminded": True, "remind_at": None}
    return Step(_sent(flow, session, [text], now, changes), [text], [event])
