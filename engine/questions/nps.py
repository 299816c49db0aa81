"""Net Promoter Score: a whole number from 0 to 10."""

from __future__ import annotations

import re

from dsl import ast
from engine.questions.base import QuestionType

# Spaces around and punctuation after the number are fine ("10!", " 7 ", "8."); "7.5" is not.
_SCORE = re.compile(r"^\s*(\d{1,2})\s*[.!?,;:)]*\s*$")


class Nps(QuestionType):
    name = "nps"

    def parse(self, ask: ast.Ask, reply: str) -> int | None:
        match = _SCORE.match(reply)
        if not match:
            return None
        score = int(match.group(1))
        return score if score <= 10 else None

    def expected(self, ask: ast.Ask) -> str:
        return "Please reply with a number from 0 to 10."
