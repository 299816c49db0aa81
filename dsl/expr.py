"""Expression AST -> Python closure. Names are resolved once, at compile time, to getters.

Semantics (what an author can rely on):
- A missing value (unanswered question, absent or empty field) is None: `is answered` is false,
  `==`, `<`, `<=`, `>`, `>=` and `contains` are false, `!=` is true, `in` is false, `not in` true.
- Numbers and numeric strings compare as numbers (a contact field "42" >= 18).
- Other text compares case-insensitively ("Yes" == "yes").
- A choice answer (ChoiceValue) equals its code and its label; it orders by its code.
- `and`, `or`, `not` work on truthiness and give true or false; `A if C else B` gives A or B.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from dsl import ast

Values = object  # whatever the resolver's getters read (the engine passes its per-step cursor)
Getter = Callable[[Values], object]
Resolve = Callable[[str], Getter]

_NUMERIC = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")


@dataclass(frozen=True)
class ChoiceValue:
    """A choice answer as expressions see it: equal to its code and to its label."""

    code: str
    label: str

    def __str__(self) -> str:
        return self.label


def number(value: object) -> int | float | None:
    """The value as a number when it is one or spells one, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, ChoiceValue):
        return number(value.code)
    if isinstance(value, str) and _NUMERIC.match(value):
        text = value.strip()
        return float(text) if "." in text else int(text)
    return None


def display(value: object) -> str:
    """A value as text: what piped text shows and what `contains` searches."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def truthy(value: object) -> bool:
    if isinstance(value, ChoiceValue):
        return True
    return bool(value)


def equal(left: object, right: object) -> bool:
    if left is None or right is None:
        return False
    if isinstance(left, ChoiceValue) and isinstance(right, ChoiceValue):
        return equal(left.code, right.code)
    if isinstance(right, ChoiceValue):
        left, right = right, left
    if isinstance(left, ChoiceValue):
        return equal(left.code, right) or equal(left.label, right)
    if isinstance(left, list | tuple) or isinstance(right, list | tuple):
        return False
    a, b = number(left), number(right)
    if a is not None and b is not None:
        return a == b
    return display(left).casefold() == display(right).casefold()


def _ordered(op: Callable[[object, object], bool]) -> Callable[[object, object], bool]:
    def compare(left: object, right: object) -> bool:
        if left is None or right is None:
            return False
        a, b = number(left), number(right)
        if a is not None and b is not None:
            return op(a, b)
        if isinstance(left, str | ChoiceValue) and isinstance(right, str | ChoiceValue):
            left = left.code if isinstance(left, ChoiceValue) else left
            right = right.code if isinstance(right, ChoiceValue) else right
            return op(left.casefold(), right.casefold())
        return False

    return compare


COMPARISONS: dict[str, Callable[[object, object], bool]] = {
    "==": equal,
    "!=": lambda a, b: not equal(a, b),
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
}


def contains(text: object, part: object) -> bool:
    if text is None or part is None:
        return False
    return display(part).casefold() in display(text).casefold()


def compile_expr(expr: ast.Expr, resolve: Resolve) -> Getter:
    """A closure computing the expression from a Values object; `resolve` maps each name to a getter."""
    match expr:
        case ast.Literal(value=value):
            return lambda values: value
        case ast.Name(name=name):
            return resolve(name)
        case ast.ListExpr(items=items):
            parts = [compile_expr(item, resolve) for item in items]
            return lambda values: [part(values) for part in parts]
        case ast.Compare(op=op, left=left, right=right):
            compare, a, b = COMPARISONS[op], compile_expr(left, resolve), compile_expr(right, resolve)
            return lambda values: compare(a(values), b(values))
        case ast.In(item=item, options=options, negated=negated):
            get_item = compile_expr(item, resolve)
            choices = [compile_expr(option, resolve) for option in options.items]

            def member(values: Values) -> bool:
                value = get_item(values)
                return any(equal(value, choice(values)) for choice in choices) != negated

            return member
        case ast.Contains(text=text, part=part):
            get_text, get_part = compile_expr(text, resolve), compile_expr(part, resolve)
            return lambda values: contains(get_text(values), get_part(values))
        case ast.Answered(target=target, negated=negated):
            get = resolve(target.name)
            return lambda values: (get(values) is not None) != negated
        case ast.Not(operand=operand):
            inner = compile_expr(operand, resolve)
            return lambda values: not truthy(inner(values))
        case ast.BoolOp(op="and", operands=operands):
            parts = [compile_expr(o, resolve) for o in operands]
            return lambda values: all(truthy(part(values)) for part in parts)
        case ast.BoolOp(op="or", operands=operands):
            parts = [compile_expr(o, resolve) for o in operands]
            return lambda values: any(truthy(part(values)) for part in parts)
        case ast.Conditional(then=then, cond=cond, otherwise=otherwise):
            get_then, get_cond = compile_expr(then, resolve), compile_expr(cond, resolve)
            get_otherwise = compile_expr(otherwise, resolve)
            return lambda values: get_then(values) if truthy(get_cond(values)) else get_otherwise(values)
    raise TypeError(f"not an expression node: {expr!r}")
