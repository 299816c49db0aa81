"""What every question type does: shape its message, read a reply, and present a stored answer.

A flow builds each question's reader once per language (QuestionType.reader), so a step reads a
reply without preparing anything; `parse` is the same for one reply, for tests and tools."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dsl import ast
from engine import texts as builtin_texts


@dataclass(frozen=True)
class Ambiguous:
    """A reply that matches more than one choice: (code, label) of each, in the list's order."""

    choices: tuple[tuple[str, str], ...]


Answer = int | float | str
Reader = Callable[[str], "Answer | Ambiguous | None"]


class QuestionType(ABC):
    """One question type. Stored answers are JSON scalars (int, float or str) so sessions stay
    small, and the same whatever the respondent's language (a choice's code, a number)."""

    name = ""  # its word in dsl.vocabulary.QUESTION_TYPES

    def message(self, ask: ast.Ask, prompt: str, language: str | None = None) -> str:
        """The message that asks the question, given its rendered prompt."""
        return prompt

    def framer(self, ask: ast.Ask, language: str | None = None) -> Callable[[str], str] | None:
        """message() with all but the prompt prepared once, for the flow to call per message;
        None when the message is the prompt as it is."""
        return None

    @abstractmethod
    def reader(self, ask: ast.Ask, language: str | None = None) -> Reader:
        """A function from a reply to the answer to store, Ambiguous, or None (not a valid answer)."""

    def parse(self, ask: ast.Ask, reply: str, language: str | None = None) -> Answer | Ambiguous | None:
        return self.reader(ask, language)(reply)

    @abstractmethod
    def expected(self, ask: ast.Ask, texts: Mapping[str, str] | None = None, language: str | None = None) -> str:
        """The default explanation sent after an invalid reply, from one language's texts
        (engine.texts; None: English's), numbers written as `language` writes them."""

    def value(self, ask: ast.Ask, stored: Answer) -> object:
        """The stored answer as expressions see it."""
        return stored

    def record(self, ask: ast.Ask, stored: Answer, language: str | None = None) -> object:
        """The stored answer as a response record holds it (language: the respondent's, when it is
        not the survey's default)."""
        return stored

    def piped(self, ask: ast.Ask, stored: Answer, language: str | None = None) -> str:
        """The stored answer as piped text shows it, in the respondent's language."""
        return str(stored)


def texts_or_english(texts: Mapping[str, str] | None) -> Mapping[str, str]:
    return builtin_texts.builtin(None) if texts is None else texts
