"""Piped text, compiled once per flow: ${e://Field/NAME}, ${q://ID/...} and ${l://OptOutURL}.

A Template renders against anything with `answers` and `fields` (a session, or the step cursor).
Anything missing renders as empty text; an unrecognised ${...} is left as written, and so is
${l://SurveyLink}, which only a link distribution's invitation fills in (engine.invitations).

Every message leaves NFC-normalised (what `canvass segments` counts is what is sent: a
decomposed e + U+0301 goes out as one é), and piped values (answers and contact fields,
which anyone may type) lose the characters no message can carry: C0 and C1 control
characters other than tab and line breaks, U+FFFE/U+FFFF and lone surrogates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from types import MappingProxyType, SimpleNamespace

from dsl import ast
from dsl.expr import display
from dsl.pipe import OPT_OUT_URL, Pipe, pipes
from engine.questions import QUESTION_TYPES
from engine.session import WEB
from engine.texts import builtin

OPT_OUT_TEXT = builtin("en")["opt_out_link"]  # what ${l://OptOutURL} shows over SMS and WhatsApp

UNSENDABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

Template = Callable[[object], str]
NO_VALUES = SimpleNamespace(answers=MappingProxyType({}), fields=MappingProxyType({}))  # no session


def first_unsendable(text: str) -> str | None:
    """The first character of `text` that no message can carry, or None."""
    found = UNSENDABLE.search(text)
    return found.group() if found else None


def sendable(text: str) -> str:
    """`text` without the characters no message can carry."""
    return UNSENDABLE.sub("", text) if UNSENDABLE.search(text) else text


def outgoing(text: str) -> str:
    """A message as it is counted and sent: NFC-normalised (a no-op, checked fast, for most texts)."""
    return unicodedata.normalize("NFC", text)


def _piece(pipe: Pipe, asks: dict[str, ast.Ask], written: str, language: str | None,
           opt_out_text: str | None) -> Template:
    if pipe.kind == "field":
        name = pipe.name
        return lambda values: sendable(display(values.fields.get(name)))
    if pipe.kind == "question" and pipe.name in asks:
        ask, qid = asks[pipe.name], pipe.name
        kind = QUESTION_TYPES[ask.type]

        def answer(values) -> str:
            stored = values.answers.get(qid)
            return "" if stored is None else sendable(kind.piped(ask, stored, language))

        return answer
    if pipe.kind == "question":
        return lambda values: ""
    if pipe.kind == "link" and pipe.name == OPT_OUT_URL:
        # a text message's "reply STOP"; a web page has no keywords (its invitation carried the
        # opt-out page's address), so it shows nothing there
        link = opt_out_text or OPT_OUT_TEXT
        return lambda values: "" if getattr(values, "channel", "") == WEB else link
    return lambda values: written


def compile_text(text: str, asks: dict[str, ast.Ask], language: str | None = None,
                 opt_out_text: str | None = None) -> Template:
    """A function giving the text with its pipes filled in from the values it is rendered against,
    answers shown as `language` shows them (choice labels, numbers); ${l://OptOutURL} as
    `opt_out_text` (the language's) or English's."""
    found = pipes(text)
    if not found:
        text = outgoing(text)
        return lambda values: text
    parts: list[Template] = []
    at = 0
    for pipe in found:
        literal = text[at:pipe.start]
        parts.append(lambda values, literal=literal: literal)
        parts.append(_piece(pipe, asks, text[pipe.start:pipe.end], language, opt_out_text))
        at = pipe.end
    tail = text[at:]
    parts.append(lambda values: tail)
    return lambda values: outgoing("".join(part(values) for part in parts))
