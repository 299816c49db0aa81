"""Free text: any non-empty reply up to the question's maximum length."""

from __future__ import annotations

from dsl import ast
from dsl.vocabulary import DEFAULT_MAX_LENGTH
from engine.questions.base import QuestionType


def max_length(ask: ast.Ask) -> int:
    return ask.max_length or DEFAULT_MAX_LENGTH


class Text(QuestionType):
    name = "text"

    def parse(self, ask: ast.Ask, reply: str) -> str | None:
        answer = reply.strip()
        return answer if 0 < len(answer) <= max_length(ask) else None

    def expected(self, ask: ast.Ask) -> str:
        return f"Please reply with some text (up to {max_length(ask)} characters)."
