"""Question types by name: each renders its question and parses a reply (one module per type)."""

from __future__ import annotations

from dsl.vocabulary import QUESTION_TYPES as TYPE_NAMES
from engine.questions.base import Ambiguous, QuestionType
from engine.questions.choice import Choice
from engine.questions.nps import Nps
from engine.questions.number import Number
from engine.questions.text import Text

_KINDS = {kind.name: kind for kind in (Nps(), Choice(), Text(), Number())}
# Keyed by the vocabulary's types: a type the language names but no module implements fails here.
QUESTION_TYPES: dict[str, QuestionType] = {name: _KINDS[name] for name in TYPE_NAMES}

__all__ = ["QUESTION_TYPES", "Ambiguous", "QuestionType"]
