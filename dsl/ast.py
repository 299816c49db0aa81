"""The Survey AST: what both flow forms parse into.

Every node carries the line and column where it starts (1-based). Positions do
not take part in equality, so a survey converted to the other form and back
compares equal to the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsl.vocabulary import DEFAULT_EXPIRES_AFTER


def _pos():
    return field(default=0, compare=False, repr=False)


def _spans():
    return field(default_factory=dict, compare=False, repr=False)


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


@dataclass
class Choice:
    code: str
    label: str
    line: int = _pos()
    col: int = _pos()


@dataclass
class Ask:
    id: str
    type: str  # nps | choice | text
    prompt: str
    show_if: Expr | None = None
    choices: list[Choice] = field(default_factory=list)
    invalid_message: str | None = None  # sent after a reply that is not a valid answer
    attempts: int | None = None  # tries before on_invalid applies (None: ask again until it expires)
    on_invalid: str | None = None  # skip | end (after the last attempt)
    max_length: int | None = None  # text questions only
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()  # key -> (line, col) of its value


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


@dataclass
class End:
    id: str
    message: str | None = None
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()


Element = Ask | Set | Goto | End


@dataclass
class Survey:
    id: str
    title: str | None = None
    expires_after: int = DEFAULT_EXPIRES_AFTER  # seconds
    access_code: str | None = None
    end_message: str | None = None
    sender: str | None = None
    fields: list[str] = field(default_factory=list)  # contact fields the survey expects
    remind_after: int | None = None  # seconds of silence before the one reminder
    remind_message: str | None = None
    not_in_survey_message: str | None = None
    help_message: str | None = None
    content_sid: str | None = None  # WhatsApp template for server-initiated first messages
    elements: list[Element] = field(default_factory=list)
    path: str = field(default="", compare=False, repr=False)
    line: int = _pos()
    col: int = _pos()
    spans: dict[str, tuple[int, int]] = _spans()

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
