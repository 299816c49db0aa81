"""A single answer from a list: the reply is a choice's code or its label."""

from __future__ import annotations

import string

from dsl import ast
from dsl.expr import ChoiceValue
from engine.questions.base import QuestionType

_AROUND = string.whitespace + string.punctuation


def normalise(text: str) -> str:
    """Case, inner spacing, and spaces or punctuation around the text do not matter."""
    return " ".join(text.strip(_AROUND).split()).casefold()


class Choice(QuestionType):
    name = "choice"

    def message(self, ask: ast.Ask, prompt: str) -> str:
        return "\n".join([prompt, *(f"{c.code}. {c.label}" for c in ask.choices)])

    def parse(self, ask: ast.Ask, reply: str) -> str | None:
        said = normalise(reply)
        if not said:
            return None
        for choice in ask.choices:  # codes first: a label may look like another choice's code
            if normalise(choice.code) == said:
                return choice.code
        for choice in ask.choices:
            if normalise(choice.label) == said:
                return choice.code
        return None

    def expected(self, ask: ast.Ask) -> str:
        return "Please reply with one of: " + ", ".join(c.code for c in ask.choices) + "."

    def label(self, ask: ast.Ask, code: str) -> str:
        return next((c.label for c in ask.choices if c.code == code), code)

    def value(self, ask: ast.Ask, stored: str) -> ChoiceValue:
        return ChoiceValue(stored, self.label(ask, stored))

    def record(self, ask: ast.Ask, stored: str) -> dict[str, str]:
        return {"code": stored, "label": self.label(ask, stored)}

    def piped(self, ask: ast.Ask, stored: str) -> str:
        return self.label(ask, stored)
