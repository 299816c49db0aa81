"""The pure router every shell calls: one respondent's state + a message (or the time) -> outcome.

receive() decides, in order: an opted-out number hears nothing unless it opts back in; an open
session past its expiry closes as `expired` first; STOP and the other opt-out keywords close the
open session as `opted_out` (answers kept, no reply); START/UNSTOP reply a confirmation; HELP/INFO
reply the help text and leave the session as it was; otherwise the message answers the open
session's question (its own access code, though, is no answer: the question is sent again), or
starts the survey whose access code it is (from a number of one of the survey's
access_code_countries, when it names any; from another the code is text like any other), or gets
"You are not currently taking a survey." (at most once a day per number: engine.policy). The
countries limit only the access code: start() invites any number.

A survey that is not active (engine.policy: paused or closed, FlowLookup.status) opens no
session: start() refuses, its access code is answered with the survey_paused or survey_closed
text. Over text, a paused survey's open session goes on; a closed one's closes as expired at
its next message (which is answered with survey_closed) or timer. A web answer is taken only
while the survey is active.

opt_out() is the one opt-out: an inbound STOP and a carrier's report that the number
unsubscribed (Twilio error 21610) both go through it. start() and tick() ask engine.policy how
their message may go (free text, the survey's WhatsApp template, or not at all).

The help and not-in-survey texts are those of the open survey, else of the respondent's last
survey (Respondent.last_survey), when it sets them; else the built-in ones (engine.texts).

Languages: a session opens in the language its contact's language field names, or the language of
the access code texted, or the survey's default. Replies outside a session (help, resubscribed,
not in a survey) go in the language of the keyword texted when it is one of a language's own
words (AYUDA), else in the respondent's language (Respondent.language: their latest session's).
Opt-out and help keywords count in every language Canvass ships (engine.sms.keywords), except
that a language's own word which the open choice question takes as an answer is that answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from dsl.folder import access_key
from engine import policy
from engine import step as steps
from engine import texts as builtin_texts
from engine.events import (
    CARRIER,
    KEYWORD,
    Event,
    Help,
    NotInSurvey,
    OptedIn,
    OptedOut,
    ReminderNotSent,
    SurveyNotActive,
)
from engine.flow import Flow
from engine.questions import Ambiguous
from engine.render import NO_VALUES
from engine.responses import response_record
from engine.session import (
    ERROR,
    EXPIRED,
    OPTED_OUT,
    Session,
    at_offset,
    evolve,
    offset,
    pack,
    unpack,
    with_defaults,
    without_defaults,
)
from engine.sms import keywords
from engine.sms.phones import region_of

NOT_IN_SURVEY_TEXT = builtin_texts.builtin("en")["not_in_survey"]
FORMAT = 2  # the first item of a stored respondent record: a new layout gets a new number


@dataclass
class Respondent:
    """Everything Canvass keeps for one (channel, phone)."""

    channel: str
    phone: str
    opted_out: bool = False
    session: Session | None = None  # the open session; closed ones leave as response records
    last_inbound_at: float | None = None  # for the WhatsApp 24-hour window
    last_survey: str | None = None  # whose help and not-in-survey texts apply between sessions
    told_not_in_survey_at: float | None = None  # when it last got the not-in-survey reply
    language: str | None = None  # its latest session's language, unless that was its survey's default

    def due_at(self) -> float | None:
        return self.session.due_at() if self.session is not None else None

    def dumps(self) -> str:
        """The stored record: [FORMAT, session, opted_out, last_inbound, last_survey, told, language]
        as JSON,
        without the trailing items that hold their default (_defaults). Channel and phone are
        left out: the key it is stored under holds them. session: the open session packed
        (engine.session.pack) or null. opted_out: 1 or 0. last_inbound: seconds after the
        session's updated_at (the message that last moved it: 0), or Unix seconds without a
        session; null for none. last_survey: a survey id or null; the open session's by default.
        told: when it was last told it is not in a survey, as last_inbound; null (the default)
        for never. language: a language code, null (the default: records written before
        languages lack it) when none is known."""
        session = self.session
        if session is not None and (session.channel, session.phone) != (self.channel, self.phone):
            raise ValueError("a respondent's session must be on the respondent's channel and phone")
        base = session.updated_at if session is not None else 0.0
        inbound, told = (None if t is None else offset(t, base)
                         for t in (self.last_inbound_at, self.told_not_in_survey_at))
        items = [FORMAT, None if session is None else pack(session), int(self.opted_out), inbound,
                 self.last_survey, told, self.language]
        return json.dumps(without_defaults(items, _defaults(session)), separators=(",", ":"),
                          ensure_ascii=False)

    @classmethod
    def loads(cls, text: str, channel: str, phone: str) -> Respondent:
        """The Respondent of (channel, phone) from dumps(); ValueError when the text is not one,
        naming the format when it is one this version cannot read."""
        try:
            items = json.loads(text)
            version = items[0] if isinstance(items, list) and items else None
        except (TypeError, ValueError, RecursionError):
            version = None
        if version != FORMAT:
            known = isinstance(version, int) and not isinstance(version, bool)
            detail = f"format {version} is unknown (this version reads {FORMAT})" if known else str(text)[:80]
            raise ValueError(f"not a stored respondent: {detail}")
        try:
            packed = items[1] if len(items) > 1 else None
            session = None if packed is None else unpack(packed, channel, phone)
            _, _, opted_out, inbound, last_survey, told, language = with_defaults(items, 1, _defaults(session))
            if opted_out not in (0, 1) or not all(v is None or isinstance(v, str) for v in (last_survey, language)):
                raise ValueError
            base = session.updated_at if session is not None else 0.0
            inbound, told = (None if t is None else at_offset(t, base) for t in (inbound, told))
            return cls(channel, phone, bool(opted_out), session, inbound, last_survey, told, language)
        except (TypeError, ValueError):
            raise ValueError(f"not a stored respondent: {str(text)[:80]}") from None


def _defaults(session: Session | None) -> tuple:
    """What the stored record's optional items mean when left out: no session, not opted out,
    last inbound when the session last moved (none without a session), the session's survey,
    never told it is not in a survey, the session's language (without one: none known, which
    means the last survey's default)."""
    if session is None:
        return (None, 0, None, None, None, None)
    return (None, 0, 0, session.survey, None, session.language or None)


@dataclass
class Outcome:
    respondent: Respondent  # the new state to store
    replies: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)  # records of sessions closed by this call
    template: str | None = None  # the WhatsApp template (ContentSid) the replies go as, if any

    def apply(self, step: steps.Step, flow: Flow | None) -> None:
        session = step.session
        self.replies += step.outbound
        self.events += step.events
        language = session.language or None  # None: the survey's default, which needs no storing
        if session.is_open:
            self.respondent = evolve(self.respondent, session=session, last_survey=session.survey,
                                     language=language)
            return
        self.respondent = evolve(self.respondent, session=None, last_survey=session.survey, language=language)
        self.responses.append(response_record(session, flow))

    def reply(self, text: str, event: Event) -> None:
        self.replies.append(text)
        self.events.append(event)


class FlowLookup(Protocol):
    def get(self, survey_id: str, version: str | None = None) -> Flow | None: ...

    def by_access_code(self, code: str) -> Flow | None: ...

    def status(self, survey_id: str) -> str: ...  # engine.policy.SURVEY_STATUSES


class FlowSet:
    """A FlowLookup over flows held in memory (simulator, conversation tests); the last added is live."""

    def __init__(self, flows: Iterable[Flow] = ()):
        self._versions: dict[tuple[str, str], Flow] = {}
        self._live: dict[str, Flow] = {}
        self._codes: dict[str, Flow] = {}
        self.statuses: dict[str, str] = {}  # survey id -> its status, when not active
        for flow in flows:
            self.add(flow)

    def add(self, flow: Flow) -> None:
        self._versions[(flow.id, flow.version)] = flow
        self._live[flow.id] = flow
        self._codes = {code: f for f in self._live.values() for code in f.access_codes}

    def get(self, survey_id: str, version: str | None = None) -> Flow | None:
        if version is None:
            return self._live.get(survey_id)
        return self._versions.get((survey_id, version))

    def by_access_code(self, code: str) -> Flow | None:
        return self._codes.get(access_key(code))

    def status(self, survey_id: str) -> str:
        return self.statuses.get(survey_id, policy.ACTIVE)


class WithStatuses:
    """A FlowLookup's flows with the surveys' statuses as the caller read them (the server: from
    Redis, for the step at hand); a survey not in `statuses` is active."""

    def __init__(self, flows: FlowLookup, statuses: dict[str, str]):
        self.flows, self.statuses = flows, statuses

    def get(self, survey_id: str, version: str | None = None) -> Flow | None:
        return self.flows.get(survey_id, version)

    def by_access_code(self, code: str) -> Flow | None:
        return self.flows.by_access_code(code)

    def status(self, survey_id: str) -> str:
        return self.statuses.get(survey_id, policy.ACTIVE)


def status_of(flows: FlowLookup | None, survey_id: str) -> str:
    return flows.status(survey_id) if flows is not None else policy.ACTIVE


class NotStartable(Exception):
    # open_session | opted_out | whatsapp_window | survey_paused | survey_closed
    def __init__(self, reason: str):
        super().__init__(f"cannot start a survey for this respondent: {reason}")
        self.reason = reason


def _close_stale(outcome: Outcome, flows: FlowLookup | None, now: float) -> tuple[Flow | None, Session | None]:
    """The open session and its flow, after closing it if it expired or its flow version is gone."""
    session = outcome.respondent.session
    if session is None:
        return None, None
    flow = flows.get(session.survey, session.version) if flows is not None else None
    if flow is None and flows is not None:
        outcome.apply(steps.close(session, ERROR, now), None)
        return None, None
    if now >= session.expires_at:
        outcome.apply(steps.close(session, EXPIRED, session.expires_at), flow)
        return None, None
    return flow, session


def _language(respondent: Respondent, word: keywords.Keyword | None = None) -> str | None:
    """The language to answer in: the open session's; else a local keyword's; else the latest one's."""
    session = respondent.session
    if session is not None and session.language:
        return session.language
    if session is None and word is not None and word.language is not None:
        return word.language
    return respondent.language


def _survey_text(flows: FlowLookup, respondent: Respondent, which: str, language: str | None) -> str:
    """The help or not-in-survey text of the respondent's survey (the open one, else the last) in
    `language`, with piped text filled from the open session (empty between sessions); without a
    survey, the built-in text."""
    session = respondent.session
    flow = None
    if session is not None:
        flow = flows.get(session.survey, session.version)
    elif respondent.last_survey:
        flow = flows.get(respondent.last_survey)
    if flow is None:
        return builtin_texts.builtin(language)[which]
    return getattr(flow.language(language), which)(session or NO_VALUES)


def _resubscribed(flows: FlowLookup, respondent: Respondent, language: str | None) -> str:
    flow = flows.get(respondent.last_survey) if respondent.last_survey else None
    texts = flow.language(language).texts if flow is not None else builtin_texts.builtin(language)
    return texts["resubscribed"]


def _is_access_code(flow: Flow, text: str) -> bool:
    return flow.code_language(text) is not None


def _may_start_by_code(flow: Flow, phone: str) -> bool:
    """Whether a number may start the survey by its access code: from any country unless the
    survey's access_code_countries names some. From another, the code is text like any other."""
    allowed = flow.survey.access_code_countries
    return not allowed or region_of(phone) in allowed


def _answers_open_question(flows: FlowLookup, respondent: Respondent, text: str) -> bool:
    """Whether the open session's question is a choice that takes `text` as an answer."""
    session = respondent.session
    flow = flows.get(session.survey, session.version) if session is not None else None
    question = flow.questions.get(session.state) if flow is not None else None
    if question is None or question.kind.name != "choice":
        return False
    read = question.read[session.language or flow.default_language](text)
    return read is not None and not isinstance(read, Ambiguous)


def _not_in_survey(outcome: Outcome, flows: FlowLookup, now: float) -> None:
    if not policy.may_tell_not_in_survey(outcome.respondent, now):
        outcome.events.append(NotInSurvey(replied=False))
        return
    reply = _survey_text(flows, outcome.respondent, "not_in_survey", _language(outcome.respondent))
    outcome.respondent = evolve(outcome.respondent, told_not_in_survey_at=now)
    outcome.reply(reply, NotInSurvey())


def _close_for_status(outcome: Outcome, flow: Flow, session: Session, status: str, now: float,
                      inbound: str | None = None) -> None:
    """The survey of the open session is not active and the session takes no answer: a closed
    survey's closes (as expired, answers kept) and says so; a paused one's (on the web) waits."""
    if status == policy.CLOSED:
        outcome.apply(steps.close(session, EXPIRED, now, inbound=inbound), flow)
    if session.channel != policy.WEB:
        text = flow.language(session.language).texts[policy.not_active_text(status)]
        outcome.reply(text, SurveyNotActive(session.survey, status))
    else:
        outcome.events.append(SurveyNotActive(session.survey, status))


def receive(flows: FlowLookup, respondent: Respondent, text: str, now: float) -> Outcome:
    """An inbound message from the respondent."""
    word = keywords.keyword(text, respondent.opted_out)
    if respondent.opted_out:
        if word is None or word.kind != keywords.OPT_IN:
            return Outcome(respondent)
        outcome = Outcome(evolve(respondent, opted_out=False, last_inbound_at=now))
        outcome.reply(_resubscribed(flows, respondent, _language(respondent, word)), OptedIn())
        return outcome
    respondent = evolve(respondent, last_inbound_at=now)
    if word is not None and word.language is not None and respondent.session is not None \
            and _answers_open_question(flows, respondent, text):
        word = None  # a language's own keyword that the open question takes as its answer
    kind = word.kind if word is not None else None
    if kind == keywords.OPT_OUT:
        return opt_out(flows, respondent, now, inbound=text)
    outcome = Outcome(respondent)
    flow, session = _close_stale(outcome, flows, now)
    if kind == keywords.OPT_IN:
        outcome.reply(_resubscribed(flows, outcome.respondent, _language(outcome.respondent, word)), OptedIn())
    elif kind == keywords.HELP:
        help_text = _survey_text(flows, outcome.respondent, "help", _language(outcome.respondent, word))
        outcome.reply(help_text, Help())
    elif session is not None and not policy.takes_answers(status := flows.status(session.survey),
                                                          session.channel):
        _close_for_status(outcome, flow, session, status, now, inbound=text)
    elif session is not None and _is_access_code(flow, text):
        outcome.apply(steps.ask_again(flow, session, text, now), flow)
    elif session is not None:
        outcome.apply(steps.step(flow, session, text, now), flow)
    elif (started := flows.by_access_code(text.strip())) is not None \
            and _may_start_by_code(started, outcome.respondent.phone):
        r = outcome.respondent
        status = flows.status(started.id)
        if policy.opens_sessions(status):
            outcome.apply(steps.open_session(started, r.channel, r.phone, {}, now, inbound=text,
                                             language=started.code_language(text)), started)
        else:
            language = started.code_language(text)
            outcome.reply(started.language(language).texts[policy.not_active_text(status)],
                          SurveyNotActive(started.id, status))
    else:
        _not_in_survey(outcome, flows, now)
    return outcome


def answer(flows: FlowLookup, respondent: Respondent, text: str, now: float) -> Outcome:
    """An answer posted on the survey's web page (engine.pages): the text an SMS respondent
    would send, applied by the same step. The web has no keywords (STOP typed into a text
    answer is an answer), no access codes and no not-in-survey text: without an open session
    (it expired, or the survey's version is gone) nothing is answered."""
    outcome = Outcome(evolve(respondent, last_inbound_at=now))
    flow, session = _close_stale(outcome, flows, now)
    if session is not None and not policy.takes_answers(status := flows.status(session.survey), policy.WEB):
        _close_for_status(outcome, flow, session, status, now)
    elif session is not None:
        outcome.apply(steps.step(flow, session, text, now), flow)
    return outcome


def opt_out(flows: FlowLookup | None, respondent: Respondent, now: float,
            inbound: str | None = None, how: str | None = None) -> Outcome:
    """The respondent opts out: by texting STOP (`inbound`), as the carrier reports (Twilio
    error 21610, no `inbound`), or `how` else (a link's opt-out page). Any open session closes
    as opted_out, answers kept; nothing is sent."""
    outcome = Outcome(respondent)
    if respondent.opted_out:
        return outcome
    flow, session = _close_stale(outcome, flows, now)
    if session is not None:
        outcome.apply(steps.close(session, OPTED_OUT, now, inbound=inbound), flow)
    outcome.respondent = evolve(outcome.respondent, opted_out=True)
    outcome.events.append(OptedOut(how or (KEYWORD if inbound is not None else CARRIER)))
    return outcome


def start(flow: Flow, respondent: Respondent, fields: dict, now: float,
          flows: FlowLookup | None = None, language: str | None = None) -> Outcome:
    """Invite the respondent: open a session and send its first message(s), as free text or,
    outside WhatsApp's window, as the survey's template (Outcome.template). The session speaks
    `language` when given, else the one the contact's language field names, else the default.
    NotStartable when they opted out, a session is still open (one that expired closes first;
    pass `flows` so its response record can carry choice labels), or WhatsApp allows no message."""
    status = status_of(flows, flow.id)
    if not policy.opens_sessions(status):
        raise NotStartable(f"survey_{status}")
    if respondent.opted_out:
        raise NotStartable("opted_out")
    outcome = Outcome(respondent)
    _, session = _close_stale(outcome, flows, now)
    if session is not None:
        raise NotStartable("open_session")
    delivery = policy.server_initiated(respondent, flow, now)
    if delivery.refused:
        raise NotStartable("whatsapp_window")
    step = steps.open_session(flow, respondent.channel, respondent.phone, dict(fields), now,
                              language=language or flow.language_of(fields))
    outcome.apply(step, flow)
    outcome.template = delivery.template
    return outcome


def tick(flows: FlowLookup, respondent: Respondent, now: float) -> Outcome:
    """Fire the open session's due timer: expiry, or the one reminder (sent by REST) as
    engine.policy allows; a reminder it refuses is dropped and not counted (ReminderNotSent)."""
    outcome = Outcome(respondent)
    session = respondent.session
    if session is None or session.due_at() is None or now < session.due_at():
        return outcome
    flow = flows.get(session.survey, session.version)
    if flow is None:
        outcome.apply(steps.close(session, ERROR, now), None)
        return outcome
    if flows.status(session.survey) == policy.CLOSED:  # no reminder: the session closes now
        outcome.apply(steps.close(session, EXPIRED, min(now, session.expires_at)), flow)
        return outcome
    if session.remind_at is not None and not session.reminded and now < session.expires_at:
        at = policy.reminder_time(session, respondent.phone, now)
        if at is None:  # its quiet hours never open before the session expires
            outcome.apply(steps.Step(evolve(session, remind_at=None), [],
                                     [ReminderNotSent(session.survey, session.state, "outside its quiet hours")]),
                          flow)
            return outcome
        if at > now:  # wait for the window: the timer moves there
            outcome.apply(steps.Step(evolve(session, remind_at=at), [], []), flow)
            return outcome
    step = steps.tick(flow, session, now)
    if step.outbound:
        delivery = policy.server_initiated(respondent, flow, now)
        if delivery.refused:
            dropped = ReminderNotSent(session.survey, session.state, delivery.reason)
            step = steps.Step(evolve(session, remind_at=None), [], [dropped])
        outcome.template = delivery.template
    outcome.apply(step, flow)
    return outcome


def reminder_not_sent(respondent: Respondent, reminded: Session, texts: list[str],
                      reason: str) -> Outcome:
    """The reminder `texts`, committed with the session `reminded`, could not be sent after all:
    the session (if it is still that one) counts it neither as sent nor as its reminder."""
    outcome = Outcome(respondent)
    session = respondent.session
    if session is None or not session.reminded or session.survey != reminded.survey \
            or offset(session.started_at, reminded.started_at) != 0:
        return outcome
    segments = sum(steps.segment_count(session.channel, text) for text in texts)
    session = evolve(session, reminded=False, messages_out=session.messages_out - len(texts),
                     segments_out=session.segments_out - segments)
    outcome.respondent = evolve(respondent, session=session)
    outcome.events.append(ReminderNotSent(session.survey, session.state, reason))
    return outcome
