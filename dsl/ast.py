"""The Survey AST: what both flow forms parse into.

Every node carries the line and column where it starts (1-based). Positions do
not take part in equality, so a survey converted to the other form and back
compares equal to the original.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from dsl.vocabulary import DEFAULT_EXPIRES_AFTER, DEFAULT_LANGUAGE


def _pos():
    return field(default=0, compare=False, repr=False)


def _spans():
    return field(default_factory=dict, compare=False, repr=False)


def _translations():
    """A node's texts in the survey's other languages: text attribute -> language -> text
    (the attribute itself holds the default language's text)."""
    return field(default_factory=dict)


Translations = dict[str, dict[str, str]]


def _repr_leaving_out(*late: str):
    """A dataclass __repr__ that leaves out the fields added after flow versions were first
    hashed while they hold their default, so a survey that does not use them keeps its version
    (engine.flow.version_of hashes the repr) and sessions pinned to it keep running."""

    def __repr__(self) -> str:
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                 if f.repr and not (f.name in late and is_default(self, f))]
        return f"{type(self).__qualname__}({', '.join(shown)})"

    __repr__.late = late
    return __repr__


def is_default(node, f: dataclasses.Field) -> bool:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return getattr(node, f.name) == default


def late_and_default(node, f: dataclasses.Field) -> bool:
    """Whether a field was added after flow versions were first hashed and holds its default (the
    repr and the golden JSON leave it out, so they stay as they were for flows that do not use it)."""
    return f.name in getattr(type(node).__repr__, "late", ()) and is_default(node, f)


# ---------------------------------------------------------------- expressions


@dataclass
class Expr:
    line: int = _pos()
    col: int = _pos()
    length: int = field(default=1, compare=False, repr=False)  # source width, for carets


@dataclass
class Literal(Expr):
    value: int | float | str | bool = 0


@dataclass
class Name(Expr):
    name: str = ""


@dataclass
class ListExpr(Expr):
    items: list[Expr] = field(default_factory=list)


@dataclass
class Compare(Expr):
    op: str = "=="  # == != < <= > >=
    left: Expr | None = None
    right: Expr | None = None


@dataclass
class In(Expr):
    item: Expr | None = None
    options: ListExpr | None = None
    negated: bool = False


@dataclass
class Contains(Expr):
    text: Expr | None = None
    part: Expr | None = None


@dataclass
class Answered(Expr):
    target: Name | None = None
    negated: bool = False


@dataclass
class Not(Expr):
    operand: Expr | None = None


@dataclass
class BoolOp(Expr):
    op: str = "and"  # and | or
    operands: list[Expr] = field(default_factory=list)


@dataclass
class Conditional(Expr):
    then: Expr | None = None
    cond: Expr | None = None
    otherwise: Expr | None = None


# ---------------------------------------------------------------- flow elements


@dataclass(repr=False)
class Choice:
    code: str
    label: str
    match: list[str] = field(default_factory=list)  # synonyms, matched in every language
    translations: Translations = _translations()  # {"label": {"es": "Sí"}}
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()  # "label:es" -> (line, col) of that text

    __repr__ = _repr_leaving_out("match", "translations", "spans")

    def text(self, language: str | None = None) -> str:
        """The label in `language` (None or a language it has no label in: the default's)."""
        return self.translations.get("label", {}).get(language, self.label) if language else self.label


@dataclass(repr=False)
class Ask:
    id: str
    type: str  # nps | choice | text | number
    prompt: str
    show_if: Expr | None = None
    choices: list[Choice] = field(default_factory=list)
    invalid_message: str | None = None  # sent after a reply that is not a valid answer
    attempts: int | None = None  # tries before on_invalid applies (None: ask again until it expires)
    on_invalid: str | None = None  # skip | end (after the last attempt)
    max_length: int | None = None  # text questions only
    min_value: int | float | None = None  # number questions only
    max_value: int | float | None = None  # number questions only
    decimal: bool = False  # number questions: whether 7.5 is an answer (else whole numbers only)
    translations: Translations = _translations()  # {"prompt": {"es": ...}, "invalid_message": {...}}
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()  # key -> (line, col) of its value ("prompt:es" too)

    __repr__ = _repr_leaving_out("min_value", "max_value", "decimal", "translations")


@dataclass
class Set:
    name: str
    value: Expr
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()


@dataclass
class Goto:
    target: str
    cond: Expr | None = None
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()


@dataclass(repr=False)
class End:
    id: str
    message: str | None = None
    translations: Translations = _translations()  # {"message": {"es": ...}}
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()

    __repr__ = _repr_leaving_out("translations")


Element = Ask | Set | Goto | End


@dataclass(repr=False)
class Survey:
    id: str
    title: str | None = None
    expires_after: int = DEFAULT_EXPIRES_AFTER  # seconds
    access_code: str | None = None
    access_code_countries: list[str] = field(default_factory=list)  # ISO regions; [] means any
    end_message: str | None = None
    sender: str | None = None
    fields: list[str] = field(default_factory=list)  # contact fields the survey expects
    remind_after: int | None = None  # seconds of silence before the one reminder
    remind_message: str | None = None
    not_in_survey_message: str | None = None
    help_message: str | None = None
    content_sid: str | None = None  # WhatsApp template for server-initiated first messages
    languages: list[str] = field(default_factory=list)  # the first is the default; [] means English only
    language_field: str | None = None  # the contact field naming a respondent's language
    texts: dict[str, str] = field(default_factory=dict)  # built-in texts overridden (engine/texts.py keys)
    elements: list[Element] = field(default_factory=list)
    translations: Translations = _translations()  # settings' texts ("end_message") and "texts.KEY"
    path: str = field(default="", compare=False, repr=False)
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()

    __repr__ = _repr_leaving_out("languages", "language_field", "texts", "translations")

    @property
    def default_language(self) -> str:
        return self.languages[0] if self.languages else DEFAULT_LANGUAGE

    @property
    def other_languages(self) -> list[str]:
        return self.languages[1:]

    @property
    def questions(self) -> list[Ask]:
        return [e for e in self.elements if isinstance(e, Ask)]


def element_id(element: Element) -> str:
    """The id an element is known by (gotos target asks and ends)."""
    if isinstance(element, Ask | End):
        return element.id
    if isinstance(element, Set):
        return element.name
    return ""


def walk(expr: Expr | None):
    """Every node of an expression, without recursion (expressions can nest thousands deep)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        yield node
        for child in vars(node).values():
            if isinstance(child, Expr):
                stack.append(child)
            elif isinstance(child, list):
                stack.extend(item for item in child if isinstance(item, Expr))
