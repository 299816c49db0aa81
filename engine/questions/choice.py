"""A single answer from a list: the reply is a choice's code, its label in the respondent's
language or the default's, or one of its synonyms (`match`), compared as dsl.matching folds them
(case, accents, punctuation and spacing around do not count). Codes come first: a label may look
like another choice's code. A reply that names two choices is Ambiguous, never a guess."""

from __future__ import annotations

from dsl import ast
from dsl.expr import ChoiceValue
from dsl.matching import fold_answer
from engine.questions.base import Ambiguous, QuestionType, texts_or_english
from engine.texts import fill


def normalise(text: str) -> str:
    """Case, accents, inner spacing, and spaces or punctuation around the text do not matter."""
    return fold_answer(text)


class Choice(QuestionType):
    name = "choice"

    def message(self, ask: ast.Ask, prompt: str, language: str | None = None) -> str:
        return self.framer(ask, language)(prompt)

    def framer(self, ask: ast.Ask, language: str | None = None):
        lines = "".join(f"\n{c.code}. {c.text(language)}" for c in ask.choices)
        return lambda prompt: prompt + lines

    def reader(self, ask: ast.Ask, language: str | None = None):
        codes = {}
        for choice in ask.choices:
            codes.setdefault(fold_answer(choice.code), choice.code)
        words: dict[str, list[ast.Choice]] = {}
        for choice in ask.choices:
            for word in {fold_answer(w) for w in (choice.label, choice.text(language), *choice.match)}:
                if word and choice not in words.setdefault(word, []):
                    words[word].append(choice)
        shown = {c.code: c.text(language) for c in ask.choices}

        def read(reply: str) -> str | Ambiguous | None:
            said = fold_answer(reply)
            if not said:
                return None
            if said in codes:
                return codes[said]
            found = words.get(said)
            if not found:
                return None
            if len(found) == 1:
                return found[0].code
            return Ambiguous(tuple((c.code, shown[c.code]) for c in found))

        return read

    def expected(self, ask: ast.Ask, texts=None, language: str | None = None) -> str:
        return fill(texts_or_english(texts)["invalid_choice"], codes=", ".join(c.code for c in ask.choices))

    def label(self, ask: ast.Ask, code: str, language: str | None = None) -> str:
        return next((c.text(language) for c in ask.choices if c.code == code), code)

    def value(self, ask: ast.Ask, stored: str) -> ChoiceValue:
        return ChoiceValue(stored, self.label(ask, stored))

    def record(self, ask: ast.Ask, stored: str, language: str | None = None) -> dict[str, str]:
        out = {"code": stored, "label": self.label(ask, stored)}
        if language is not None:
            out["shown"] = self.label(ask, stored, language)
        return out

    def piped(self, ask: ast.Ask, stored: str, language: str | None = None) -> str:
        return self.label(ask, stored, language)
