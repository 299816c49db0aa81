"""A number, for counts and ratings: whole unless the question says `decimal`, within its optional
`min` and `max`, written as the respondent's language writes numbers (7,5 in Spanish; a point is
read too). It displays and branches like NPS: expressions compare it as a number."""

from __future__ import annotations

import math
import re

from dsl import ast
from engine.questions.base import QuestionType, texts_or_english
from engine.texts import decimal_comma, fill, format_number

# Spaces around and punctuation after the number are fine ("12!", " 7 "), as for NPS.
_NUMBER = re.compile(r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*[.!?;:)]*\s*$")
_POINT_ONLY = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*[.!?;:)]*\s*$")


def _value(written: str) -> int | float | None:
    """The number written; None past a float's range (400 nines read as infinity, which is
    no answer and no int)."""
    written = written.replace(",", ".")
    number = float(written)
    if not math.isfinite(number):
        return None
    return int(number) if "." not in written else number


class Number(QuestionType):
    name = "number"

    def reader(self, ask: ast.Ask, language: str | None = None):
        pattern = _NUMBER if decimal_comma(language) else _POINT_ONLY
        low, high, whole = ask.min_value, ask.max_value, not ask.decimal

        def read(reply: str) -> int | float | None:
            match = pattern.match(reply)
            if not match:
                return None
            number = _value(match.group(1))
            if number is None:
                return None
            if isinstance(number, float):
                if number.is_integer():
                    number = int(number)
                elif whole:
                    return None
            if (low is not None and number < low) or (high is not None and number > high):
                return None
            return number

        return read

    def expected(self, ask: ast.Ask, texts=None, language: str | None = None) -> str:
        texts = texts_or_english(texts)
        low, high = (None if v is None else format_number(v, language) for v in (ask.min_value, ask.max_value))
        if low is not None and high is not None:
            return fill(texts["invalid_number_range"], min=low, max=high)
        if low is not None:
            return fill(texts["invalid_number_min"], min=low)
        if high is not None:
            return fill(texts["invalid_number_max"], max=high)
        return texts["invalid_whole_number" if not ask.decimal else "invalid_number"]

    def piped(self, ask: ast.Ask, stored: int | float, language: str | None = None) -> str:
        return format_number(stored, language)
