"""What a step or a conversation call did, as values: the shells count and show these.

Each event is a frozen dataclass; match on its type (`isinstance`, `match`), never on a string.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SessionOpened:
    survey: str
    version: str


@dataclass(frozen=True)
class SessionClosed:
    survey: str
    status: str  # engine.session's statuses other than open
    end: str | None = None  # the end reached (complete)
    question: str | None = None  # the question that ran out of attempts (ended_invalid)


@dataclass(frozen=True)
class AnswerRecorded:
    survey: str
    question: str
    answer: int | str


@dataclass(frozen=True)
class InvalidReply:
    survey: str
    question: str
    attempt: int
    then: str | None = None  # the question's on_invalid, when this was its last attempt


@dataclass(frozen=True)
class QuestionRepeated:
    """The open survey's own access code came in: the question was sent again, not answered."""

    survey: str
    question: str


@dataclass(frozen=True)
class ReminderSent:
    survey: str
    question: str


@dataclass(frozen=True)
class ReminderNotSent:
    """The reminder was due but could not go (engine.policy says why); it does not count."""

    survey: str
    question: str
    reason: str


@dataclass(frozen=True)
class OptedOut:
    how: str = "keyword"  # KEYWORD (the respondent texted STOP...), CARRIER (Twilio's 21610), WEB_PAGE


@dataclass(frozen=True)
class OptedIn:
    how: str = "keyword"


KEYWORD, CARRIER = "keyword", "carrier_21610"  # how an opt-out or opt-in came
WEB_PAGE = "web_page"  # an opt-out confirmed at a link invitation's opt-out URL


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class NotInSurvey:
    replied: bool = True  # False: told so within the last day already, so nothing was sent


@dataclass(frozen=True)
class SurveyNotActive:
    """The survey is paused or closed (engine.policy): its access code opened no session, or
    its open session took no answer."""

    survey: str
    status: str


Event = (SessionOpened | SessionClosed | AnswerRecorded | InvalidReply | QuestionRepeated
         | ReminderSent | ReminderNotSent | OptedOut | OptedIn | Help | NotInSurvey
         | SurveyNotActive)
