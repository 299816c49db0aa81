"""Where author text stands in a flow file: the survey's texts, their start positions, and how
to find a piece inside one (the AST knows each value only by where it starts)."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from itertools import accumulate

from dsl import ast


class SourceMap:
    """Finds the file position of a piece of a text value, which the AST knows only by its start."""

    def __init__(self, source: str | None, survey: ast.Survey | None = None):
        self.source = source or ""
        # Each line starts one past the end of the line before it (C loops: flows run to MBs).
        self.starts = list(accumulate(map((1).__add__, map(len, self.source.split("\n"))), initial=0))[:-1]
        # Where each value of the survey starts: a text ends before the next one begins.
        known = [self.offset(at) for at in _positions(survey)] if survey is not None else []
        self.bounds = sorted({offset for offset in known if offset is not None})

    def offset(self, at: tuple[int, int]) -> int | None:
        line, col = at
        if not self.source or not 0 < line <= len(self.starts):
            return None
        return self.starts[line - 1] + max(0, col - 1)

    def position(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.starts, offset) - 1
        return index + 1, offset - self.starts[index] + 1

    def _limit(self, start: int, span: int) -> int:
        """Where a value starting at `start` ends at the latest: it ends before the next one begins."""
        limit = start + 8 * span + 64  # room for quotes, escapes and folded lines
        following = bisect.bisect_right(self.bounds, start)
        return min(limit, self.bounds[following]) if following < len(self.bounds) else limit

    def find(self, at: tuple[int, int], needle: str, nth: int = 0, span: int = 0) -> tuple[int, int]:
        """Where the nth `needle` of a value starting at `at` is written; `at` itself when unsure."""
        start = self.offset(at)
        if start is None or not needle:
            return at
        limit = self._limit(start, span)
        pos = start - 1
        for _ in range(nth + 1):
            pos = self.source.find(needle, pos + 1, limit)
            if pos < 0:
                return at
        return self.position(pos)

    def matches(self, at: tuple[int, int], pattern: re.Pattern, span: int = 0):
        """(position, match) of each match of `pattern` where a value starting at `at` is written."""
        start = self.offset(at)
        if start is None:
            return
        for match in pattern.finditer(self.source, start, self._limit(start, span)):
            yield self.position(match.start()), match

    def key(self, key: str, value_at: tuple[int, int], floor: int) -> tuple[int, int]:
        """The position of a YAML key whose value starts at value_at (a block list starts a line below)."""
        if not self.source:
            return value_at
        pattern = re.compile(rf"(?:^|[\s{{,-])({re.escape(key)})\s*:")
        lines = self.source.split("\n")
        for line in range(min(value_at[0], len(lines)), max(floor, 1) - 1, -1):
            match = pattern.search(lines[line - 1])
            if match:
                return line, match.start(1) + 1
        return value_at


def _positions(survey: ast.Survey):
    yield from survey.spans.values()
    for element in survey.elements:
        yield element.line, element.col
        yield from element.spans.values()
        for choice in getattr(element, "choices", ()):
            yield choice.line, choice.col
            yield from choice.spans.values()


def span(node, *keys: str) -> tuple[int, int]:
    """(line, col) of the first of `keys` present on a node (the two forms name some keys differently)."""
    for key in keys:
        if key in node.spans:
            return node.spans[key]
    return node.line, node.col


@dataclass(frozen=True)
class Text:
    """One piece of author text: where it starts, what it is, and which element owns it."""

    value: str
    at: tuple[int, int]
    where: str
    kind: str  # title | prompt | choice | message
    element: int | None  # index in survey.elements; None for survey-level texts
    language: str | None = None  # None: the survey's default language


def _translated(text: Text, node, attr: str):
    """The text, then its translations (the survey's other languages), each where it is written."""
    yield text
    for language, value in node.translations.get(attr, {}).items():
        if value:
            yield Text(value, node.spans.get(f"{attr}:{language}", text.at), text.where, text.kind,
                       text.element, language)


def every_text(survey: ast.Survey):
    """Every text of a survey that reaches a respondent or a message: texts(), the settings that
    are text (access code, sender, WhatsApp template), choice codes and strings in expressions."""
    yield from texts(survey)
    for key in ("access_code", "sender", "content_sid"):
        value = getattr(survey, key)
        if value:
            yield Text(value, span(survey, key), f"the survey's {key}", "setting", None)
    for index, element in enumerate(survey.elements):
        if isinstance(element, ast.Ask):
            for choice in element.choices:
                yield Text(choice.code, (choice.line, choice.col),
                           f"the code of choice '{choice.code}' of question '{element.id}'", "code", index)
        for expr in (getattr(element, "show_if", None), getattr(element, "value", None),
                     getattr(element, "cond", None)):
            for node in ast.walk(expr):
                if isinstance(node, ast.Literal) and isinstance(node.value, str) and node.value:
                    yield Text(node.value, (node.line, node.col),
                               f"a string in an expression of {_describe(element)}", "expression", index)


def _describe(element: ast.Element) -> str:
    kind = {ast.Ask: "question", ast.Set: "set", ast.Goto: "goto", ast.End: "end"}[type(element)]
    name = ast.element_id(element) or getattr(element, "target", "")
    return f"{kind} '{name}'"


def texts(survey: ast.Survey):
    """Every piece of author text in a survey, in file order."""
    for key in ("title", "end_message", "remind_message", "not_in_survey_message", "help_message"):
        value = getattr(survey, key)
        if value:
            where = "the title" if key == "title" else f"the survey's {key}"
            yield from _translated(Text(value, span(survey, key), where, "title" if key == "title" else "message",
                                        None), survey, key)
    for name, value in survey.texts.items():
        if value:
            attr = f"texts.{name}"
            yield from _translated(Text(value, span(survey, attr), f"the survey's text '{name}'", "message", None),
                                   survey, attr)
    for index, element in enumerate(survey.elements):
        if isinstance(element, ast.Ask):
            yield from _translated(Text(element.prompt, span(element, "prompt"),
                                        f"the prompt of question '{element.id}'", "prompt", index), element, "prompt")
            for choice in element.choices:
                yield from _translated(Text(choice.label, (choice.line, choice.col),
                                            f"choice '{choice.code}' of question '{element.id}'", "choice", index),
                                       choice, "label")
            if element.invalid_message:
                yield from _translated(Text(element.invalid_message, span(element, "invalid_message"),
                                            f"the invalid_message of question '{element.id}'", "message", index),
                                       element, "invalid_message")
        elif isinstance(element, ast.End) and element.message:
            yield from _translated(Text(element.message, span(element, "message"),
                                        f"the message of end '{element.id}'", "message", index),
                                   element, "message")
