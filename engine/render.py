"""Piped text, compiled once per flow: ${e://Field/NAME}, ${q://ID/...} and ${l://OptOutURL}.

A Template renders against anything with `answers` and `fields` (a session, or the step cursor).
Anything missing renders as empty text; an unrecognised ${...} is left as written.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType, SimpleNamespace

from dsl import ast
from dsl.expr import display
from dsl.pipe import Pipe, pipes
from engine.questions import QUESTION_TYPES

OPT_OUT_TEXT = "Reply STOP to opt out."  # what ${l://OptOutURL} shows over SMS and WhatsApp

Template = Callable[[object], str]
NO_VALUES = SimpleNamespace(answers=MappingProxyType({}), fields=MappingProxyType({}))  # no session


def _piece(pipe: Pipe, asks: dict[str, ast.Ask], written: str) -> Template:
    if pipe.kind == "field":
        name = pipe.name
        return lambda values: display(values.fields.get(name))
    if pipe.kind == "question" and pipe.name in asks:
        ask, qid = asks[pipe.name], pipe.name
        kind = QUESTION_TYPES[ask.type]

        def answer(values) -> str:
            stored = values.answers.get(qid)
            return "" if stored is None else kind.piped(ask, stored)

        return answer
    if pipe.kind == "question":
        return lambda values: ""
    if pipe.kind == "link":
        return lambda values: OPT_OUT_TEXT
    return lambda values: written


def compile_text(text: str, asks: dict[str, ast.Ask]) -> Template:
    """A function giving the text with its pipes filled in from the values it is rendered against."""
    found = pipes(text)
    if not found:
        return lambda values: text
    parts: list[Template] = []
    at = 0
    for pipe in found:
        literal = text[at:pipe.start]
        parts.append(lambda values, literal=literal: literal)
        parts.append(_piece(pipe, asks, text[pipe.start:pipe.end]))
        at = pipe.end
    tail = text[at:]
    parts.append(lambda values: tail)
    return lambda values: "".join(part(values) for part in parts)
