"""Expression text -> expression AST (shared by both forms), and back to text."""

from __future__ import annotations

import json
from decimal import Decimal

from lark import Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedInput

from dsl import ast
from dsl.diagnostics import EXPRESSION_SYNTAX, SYNTAX, Diagnostic
from dsl.errors import FlowError
from dsl.grammar import parser
from dsl.vocabulary import ON_INVALID, QUESTION_TYPES


def unquote(token: str) -> str:
    """A STRING token's value: quotes removed, backslash escapes applied."""
    body = token[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def quote(text: str) -> str:
    """The text as a double-quoted STRING token."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _at(node: ast.Expr, meta_or_token, line_offset: int, col_offset: int) -> ast.Expr:
    line = getattr(meta_or_token, "line", 0) or 0
    col = getattr(meta_or_token, "column", 0) or 0
    end_line = getattr(meta_or_token, "end_line", line)
    end_col = getattr(meta_or_token, "end_column", col + 1)
    node.line = line + line_offset
    node.col = col + (col_offset if line == 1 else 0)
    node.length = max(1, end_col - col) if end_line == line else 1
    return node


class ExprBuilder(Transformer):
    """Parse tree of an expression -> ast.Expr nodes. Positions are shifted by the offsets
    so that an expression inside a YAML scalar points into the YAML file."""

    def __init__(self, line_offset: int = 0, col_offset: int = 0):
        super().__init__()
        self.lo, self.co = line_offset, col_offset

    def _pos(self, node, meta):
        return _at(node, meta, self.lo, self.co)

    @v_args(meta=True)
    def number(self, meta, children):
        text = str(children[0])
        value = float(text) if "." in text else int(text)
        return self._pos(ast.Literal(value=value), meta)

    @v_args(meta=True)
    def string(self, meta, children):
        return self._pos(ast.Literal(value=unquote(str(children[0]))), meta)

    @v_args(meta=True)
    def true(self, meta, children):
        return self._pos(ast.Literal(value=True), meta)

    @v_args(meta=True)
    def false(self, meta, children):
        return self._pos(ast.Literal(value=False), meta)

    @v_args(meta=True)
    def name(self, meta, children):
        return self._pos(ast.Name(name=str(children[0])), meta)

    @v_args(meta=True)
    def list(self, meta, children):
        return self._pos(ast.ListExpr(items=[c for c in children if c is not None]), meta)

    @v_args(meta=True)
    def compare(self, meta, children):
        left, op, right = children
        return self._pos(ast.Compare(op=str(op), left=left, right=right), meta)

    @v_args(meta=True)
    def in_(self, meta, children):
        return self._pos(ast.In(item=children[0], options=children[1]), meta)

    @v_args(meta=True)
    def not_in(self, meta, children):
        return self._pos(ast.In(item=children[0], options=children[1], negated=True), meta)

    @v_args(meta=True)
    def contains(self, meta, children):
        return self._pos(ast.Contains(text=children[0], part=children[1]), meta)

    def _answered(self, meta, children, negated):
        token: Token = children[0]
        target = _at(ast.Name(name=str(token)), token, self.lo, self.co)
        return self._pos(ast.Answered(target=target, negated=negated), meta)

    @v_args(meta=True)
    def answered(self, meta, children):
        return self._answered(meta, children, False)

    @v_args(meta=True)
    def not_answered(self, meta, children):
        return self._answered(meta, children, True)

    @v_args(meta=True)
    def not_(self, meta, children):
        return self._pos(ast.Not(operand=children[0]), meta)

    @v_args(meta=True)
    def and_(self, meta, children):
        return self._pos(ast.BoolOp(op="and", operands=list(children)), meta)

    @v_args(meta=True)
    def or_(self, meta, children):
        return self._pos(ast.BoolOp(op="or", operands=list(children)), meta)

    @v_args(meta=True)
    def conditional(self, meta, children):
        then, cond, otherwise = children
        return self._pos(ast.Conditional(then=then, cond=cond, otherwise=otherwise), meta)

    def expression(self, children):
        return children[0]


def syntax_diagnostic(path: str, err: UnexpectedInput, what: str, line_offset=0, col_offset=0) -> Diagnostic:
    line = (getattr(err, "line", 1) or 1)
    col = (getattr(err, "column", 1) or 1)
    token = getattr(err, "token", None)
    expected = sorted(getattr(err, "expected", None) or getattr(err, "allowed", None) or [])
    if token is not None and getattr(token, "type", "") == "$END":
        message = f"unexpected end of {what}"
    elif token is not None:
        message = f"unexpected {str(token)!r} in {what}" if str(token).strip() else f"unexpected line break in {what}"
    else:
        message = f"unexpected character {err.char!r} in {what}" if hasattr(err, "char") else f"syntax error in {what}"
    nice = [_EXPECTED_NAMES.get(e, e.strip('"').lower()) for e in expected if not e.startswith("__")]
    hint = f"expected {', '.join(dict.fromkeys(nice))}" if nice and len(nice) <= 12 else ""
    written = str(token) if token is not None else getattr(err, "char", "")
    if written == "=":
        message = "'=' is not a comparison"
        hint = "compare with == (or !=, <, <=, >, >=); a single = only follows the name in a set"
    elif written in _CURLY_QUOTES:
        message = f"curly quote '{written}' cannot quote a string"
        hint = 'use straight quotes: "..." (editors often turn them curly)'
    code = SYNTAX if what == "flow" else EXPRESSION_SYNTAX
    return code.diagnostic(path, (line + line_offset, col + (col_offset if line == 1 else 0)), message, hint)


_CURLY_QUOTES = "\u201c\u201d\u2018\u2019\u201e\u00ab\u00bb"
_EXPECTED_NAMES = {
    "NAME": "a name", "STRING": "a quoted string", "NUMBER": "a number", "INT": "a whole number",
    "COMP_OP": "a comparison (== != < <= > >=)", "DURATION": "a duration like 48h",
    "QTYPE": f"a question type ({', '.join(QUESTION_TYPES)})", "SLUG": "a survey id", "_NL": "a line break",
    "LSQB": "'['", "RSQB": "']'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "EQUAL": "'='",
    "CODE": "a choice code", "END_ID": "an end id", "ON_INVALID": " or ".join(ON_INVALID), "$END": "end of text",
}


def parse_expression(text: str, path: str = "", line: int = 1, col: int = 1) -> ast.Expr:
    """Parse an expression written at (line, col) of a file; raise FlowError (EXPRESSION_SYNTAX) if it is malformed."""
    try:
        tree = parser().parse(text, start="expression")
    except UnexpectedInput as err:
        raise FlowError([syntax_diagnostic(path, err, "expression", line - 1, col - 1)]) from None
    except LarkError as err:  # pragma: no cover - lark's other errors
        raise FlowError([EXPRESSION_SYNTAX.diagnostic(path, (line, col), f"cannot parse expression: {err}")]) from None
    try:
        return ExprBuilder(line - 1, col - 1).transform(tree)
    except RecursionError:
        raise FlowError([EXPRESSION_SYNTAX.diagnostic(path, (line, col), "the expression is nested too deeply",
                                                      "split it into simpler expressions")]) from None


# ---------------------------------------------------------------- printing

_PRECEDENCE = {ast.Conditional: 0, ast.BoolOp: 1, ast.Not: 3}


def _prec(node: ast.Expr) -> int:
    if isinstance(node, ast.BoolOp):
        return 1 if node.op == "or" else 2
    return _PRECEDENCE.get(type(node), 4 if not isinstance(node, ast.Literal | ast.Name | ast.ListExpr) else 5)


def to_source(node: ast.Expr, parent_prec: int = 0) -> str:
    """The expression as text that parses back to an equal AST."""
    text = _source(node)
    return f"({text})" if _prec(node) < parent_prec else text


def _source(node: ast.Expr) -> str:
    match node:
        case ast.Literal(value=bool() as v):
            return "true" if v else "false"
        case ast.Literal(value=str() as v):
            return quote(v)
        case ast.Literal(value=float() as v):
            text = format(Decimal(repr(v)), "f")  # positional: the grammar has no exponents
            return text if "." in text else text + ".0"
        case ast.Literal(value=v):
            return json.dumps(v)
        case ast.Name(name=n):
            return n
        case ast.ListExpr(items=items):
            return "[" + ", ".join(to_source(i) for i in items) + "]"
        case ast.Compare(op=op, left=left, right=right):
            return f"{to_source(left, 5)} {op} {to_source(right, 5)}"
        case ast.In(item=item, options=options, negated=neg):
            return f"{to_source(item, 5)} {'not in' if neg else 'in'} {to_source(options, 5)}"
        case ast.Contains(text=t, part=p):
            return f"{to_source(t, 5)} contains {to_source(p, 5)}"
        case ast.Answered(target=t, negated=neg):
            return f"{t.name} is {'not answered' if neg else 'answered'}"
        case ast.Not(operand=o):
            return f"not {to_source(o, 3)}"
        case ast.BoolOp(op=op, operands=ops):
            prec = 1 if op == "or" else 2
            return f" {op} ".join(to_source(o, prec + 1) for o in ops)
        case ast.Conditional(then=t, cond=c, otherwise=o):
            return f"{to_source(t, 1)} if {to_source(c, 1)} else {to_source(o, 0)}"
    raise TypeError(f"not an expression node: {node!r}")
