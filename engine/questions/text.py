"""Free text: any non-empty reply up to the question's maximum length."""

from __future__ import annotations

from dsl import ast
from dsl.vocabulary import DEFAULT_MAX_LENGTH
from engine.questions.base import QuestionType, texts_or_english
from engine.texts import fill


def max_length(ask: ast.Ask) -> int:
    return ask.max_length or DEFAULT_MAX_LENGTH


class Text(QuestionType):
    name = "text"

    def reader(self, ask: ast.Ask, language: str | None = None):
        limit = max_length(ask)

        def read(reply: str) -> str | None:
            answer = reply.strip()
            return answer if 0 < len(answer) <= limit else None

        return read

    def expected(self, ask: ast.Ask, texts=None, language: str | None = None) -> str:
        return fill(texts_or_english(texts)["invalid_text"], max_length=max_length(ask))
