"""Net Promoter Score: a whole number from 0 to 10."""

from __future__ import annotations

import re

from dsl import ast
from engine.questions.base import QuestionType, texts_or_english

# Spaces around and punctuation after the number are fine ("10!", " 7 ", "8."); "7.5" is not.
_SCORE = re.compile(r"^\s*(\d{1,2})\s*[.!?,;:)]*\s*$")


def _score(reply: str) -> int | None:
    match = _SCORE.match(reply)
    if not match:
        return None
    score = int(match.group(1))
    return score if score <= 10 else None


class Nps(QuestionType):
    name = "nps"

    def reader(self, ask: ast.Ask, language: str | None = None):
        return _score

    def expected(self, ask: ast.Ask, texts=None, language: str | None = None) -> str:
        return texts_or_english(texts)["invalid_nps"]
