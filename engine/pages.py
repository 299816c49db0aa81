"""What the survey's web page shows for a session: its question, or its end.

Pure: the flow, the session (or the replies a closing step sent) are given. The answers a
page posts are the texts an SMS respondent would send (the NPS number, the choice's code, the
free text), applied by engine.conversation.answer, the same step as a text message: display
logic, branches, piped text, ends and validation messages are the conversation's own.

A question's page shows its prompt with piped text filled in, as engine.render renders it,
without what the text message adds to it (the numbered list of choices: the page shows them
as its own controls). What an author wrote into the prompt stays as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.flow import Flow
from engine.questions.text import max_length
from engine.render import NO_VALUES
from engine.session import Session


@dataclass(frozen=True)
class Option:
    code: str  # what the page posts: the reply that picks this choice
    label: str  # in the session's language


@dataclass(frozen=True)
class QuestionPage:
    survey: str
    title: str
    language: str
    question: str  # its id
    type: str  # nps | choice | text | number
    prompt: str
    invalid: str | None = None  # the explanation, after an answer that was not valid
    options: tuple[Option, ...] = ()  # a choice question's
    max_length: int | None = None  # a text question's
    min: float | None = None  # a number question's bounds, and whether it takes decimals
    max: float | None = None
    decimal: bool = False


@dataclass(frozen=True)
class EndPage:
    survey: str
    title: str
    language: str
    message: str  # what the session's end said (the end message, or a custom end's)


def title(flow: Flow, language: str) -> str:
    """The survey's title in `language` (its translation, else the default's), else its id."""
    survey = flow.survey
    text = survey.title
    if language != flow.default_language:
        text = survey.translations.get("title", {}).get(language) or text
    return text or flow.id


def language_of(flow: Flow, session: Session | None) -> str:
    return (session.language if session is not None else "") or flow.default_language


def page(flow: Flow, session: Session) -> QuestionPage:
    """The page of an open session: the question it waits on, with the explanation when the
    last answer posted was not valid (the session counts that attempt)."""
    if not session.is_open:
        raise ValueError(f"page() needs an open session, not a {session.status} one")
    question = flow.questions[session.state]
    ask = question.ask
    language = language_of(flow, session)
    common = dict(survey=flow.id, title=title(flow, language), language=language, question=ask.id,
                  type=ask.type, prompt=question.prompt[language](session),
                  invalid=question.invalid[language](session) if session.attempts else None)
    if ask.type == "choice":
        options = tuple(Option(c.code, c.text(language)) for c in ask.choices)
        return QuestionPage(**common, options=options)
    if ask.type == "text":
        return QuestionPage(**common, max_length=max_length(ask))
    if ask.type == "number":
        return QuestionPage(**common, min=ask.min_value, max=ask.max_value, decimal=bool(ask.decimal))
    return QuestionPage(**common)


def ended(flow: Flow, language: str | None, replies: list[str] | None) -> EndPage:
    """The page after the session closed: what its closing step sent (`replies`: the end
    message, a custom end's, or nothing), else, when that is no longer known (it was long
    ago), the survey's end message without piped values."""
    language = language or flow.default_language
    if replies is not None:
        message = "\n".join(replies)
    else:
        message = flow.language(language).end_message(NO_VALUES)
    return EndPage(flow.id, title(flow, language), language, message)
