"""What every question type does: shape its message, parse a reply, and present a stored answer."""

from __future__ import annotations

from abc import ABC, abstractmethod

from dsl import ast


class QuestionType(ABC):
    """One question type. Stored answers are JSON scalars (int or str) so sessions stay small."""

    name = ""  # its word in dsl.vocabulary.QUESTION_TYPES

    def message(self, ask: ast.Ask, prompt: str) -> str:
        """The message that asks the question, given its rendered prompt."""
        return prompt

    @abstractmethod
    def parse(self, ask: ast.Ask, reply: str) -> int | str | None:
        """The answer to store for a reply, or None when the reply is not a valid answer."""

    @abstractmethod
    def expected(self, ask: ast.Ask) -> str:
        """The default explanation sent after an invalid reply."""

    def value(self, ask: ast.Ask, stored: int | str) -> object:
        """The stored answer as expressions see it."""
        return stored

    def record(self, ask: ast.Ask, stored: int | str) -> object:
        """The stored answer as a response record holds it."""
        return stored

    def piped(self, ask: ast.Ask, stored: int | str) -> str:
        """The stored answer as piped text shows it."""
        return str(stored)
