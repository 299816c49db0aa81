"""Question types by name: each renders its question and parses a reply (one module per type)."""

from __future__ import annotations

from engine.questions.base import QuestionType
from engine.questions.choice import Choice
from engine.questions.nps import Nps
from engine.questions.text import Text

QUESTION_TYPES: dict[str, QuestionType] = {t.name: t for t in (Nps(), Choice(), Text())}

__all__ = ["QUESTION_TYPES", "QuestionType"]
