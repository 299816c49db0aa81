"""The text form (`.survey`): grammar.lark's parse tree -> Survey AST."""

from __future__ import annotations

from lark import Token, Tree
from lark.exceptions import UnexpectedInput

from dsl import ast
from dsl import diagnostics as codes
from dsl.diagnostics import Diagnostic, Reporter
from dsl.durations import parse_duration
from dsl.errors import FlowError, suggest
from dsl.expr_parse import ExprBuilder, syntax_diagnostic, unquote
from dsl.grammar import parser
from dsl.vocabulary import (
    ELEMENTS,
    OPTIONS,
    SETTINGS,
    STATEMENT_WORDS,
    TRANSLATED_SETTINGS,
    keyword,
)

# setting rule -> the Survey attribute its one quoted text sets
_TEXT_SETTINGS = {s.rule: s.attr for s in SETTINGS if s.kind == "text" and s.rule}
_DURATION_SETTINGS = {s.rule: s.attr for s in SETTINGS if s.kind == "duration"}
_OPTIONS = (*(o.rule for o in OPTIONS), "match")


def _pos(token) -> tuple[int, int]:
    return (getattr(token, "line", 0) or 0, getattr(token, "column", 0) or 0)


class _Reader(Reporter):
    def __init__(self, path: str):
        super().__init__(path)
        self.seen: dict[str, tuple[int, int]] = {}
        self.exprs = ExprBuilder()
        self.target: tuple[object, str] | None = None  # (node, text attribute) a `xx: "..."` line translates

    def expr(self, tree):
        return None if tree is None else self.exprs.transform(tree)

    def read(self, tree: Tree) -> ast.Survey:
        head = tree.children[0]
        slug, title = head.children
        survey = ast.Survey(id=str(slug), title=unquote(title) if title else None, path=self.path,
                            line=head.meta.line, col=head.meta.column)
        survey.spans["survey"] = _pos(slug)
        if title is not None:
            self.seen["title"] = _pos(title)
            survey.spans["title"] = _pos(title)
        self.target = (survey, "title")
        current: ast.Ask | None = None
        for node in tree.children[1:]:
            kind = node.data
            at = (node.meta.line, node.meta.column)
            if kind == "translation":
                self.translation(node)
                continue
            if kind in _OPTIONS:
                if current is None:
                    self.report(codes.MALFORMED_VALUE, at, f"'{keyword(kind)}' must come under an 'ask' line",
                               "indent it under the question it belongs to")
                    continue
                self.option(current, kind, node)
                continue
            if kind in ELEMENTS:
                element = self.element(kind, node)
                survey.elements.append(element)
                current = element if isinstance(element, ast.Ask) else None
                continue
            current = None
            self.target = None
            self.setting(survey, kind, node, at)
        return survey

    def translation(self, node: Tree) -> None:
        """A `xx: "..."` line: the text above it in language xx."""
        language, text = node.children
        at = _pos(language)
        if self.target is None:
            self.report(codes.MALFORMED_VALUE, at, f"'{language}:' has no text above it to translate",
                        "put it under the line whose text it gives in that language (a prompt, a choice, "
                        "invalid, an end or a message setting)")
            return
        owner, attr = self.target
        texts = owner.translations.setdefault(attr, {})
        key = f"{attr}:{language}"
        if language in texts:
            self.report(codes.DUPLICATE_KEY, at, f"the '{language}' text is given twice",
                        f"the first is on line {owner.spans[key][0]}", length=len(language))
            return
        texts[str(language)] = unquote(text)
        owner.spans[key] = _pos(text)

    def setting(self, survey: ast.Survey, kind: str, node: Tree, at) -> None:
        if kind == "texts":
            self.builtin_text(survey, node, at)
            return
        if kind in self.seen:
            line, _ = self.seen[kind]
            self.report(codes.DUPLICATE_KEY, at, f"'{keyword(kind)}' is given twice", f"the first is on line {line}")
            return
        self.seen[kind] = at
        first = node.children[0]
        survey.spans[kind] = _pos(first)
        if kind in _TEXT_SETTINGS:
            setattr(survey, _TEXT_SETTINGS[kind], unquote(first))
            if _TEXT_SETTINGS[kind] in TRANSLATED_SETTINGS:
                self.target = (survey, _TEXT_SETTINGS[kind])
        elif kind in _DURATION_SETTINGS:
            seconds = parse_duration(first)
            if not seconds:  # as in the YAML form: a zero duration is a mistake
                self.report(codes.BAD_DURATION, _pos(first), f"'{first}' is not a duration",
                            length=len(first))
            setattr(survey, _DURATION_SETTINGS[kind], seconds)
        if kind == "remind_after" and node.children[1] is not None:
            survey.remind_message = unquote(node.children[1])
            survey.spans["remind_message"] = _pos(node.children[1])
            self.target = (survey, "remind_message")
        elif kind == "fields":
            survey.fields = [str(t) for t in node.children]
        elif kind == "access_code_countries":
            survey.access_code_countries = [str(t) for t in node.children]
            for index, token in enumerate(node.children):
                survey.spans[f"access_code_countries.{index}"] = _pos(token)
        elif kind == "languages":
            survey.languages = [str(t) for t in node.children]
        elif kind == "language_field":
            survey.language_field = str(first)

    def builtin_text(self, survey: ast.Survey, node: Tree, at) -> None:
        """A `text KEY "..."` line: one built-in text overridden (the checker knows the keys)."""
        name, text = node.children
        attr = f"texts.{name}"
        if attr in survey.spans:
            self.report(codes.DUPLICATE_KEY, at, f"text '{name}' is given twice",
                        f"the first is on line {survey.spans[attr][0]}")
            return
        survey.texts[str(name)] = unquote(text)
        survey.spans[attr] = _pos(name)
        self.target = (survey, attr)

    def element(self, kind: str, node: Tree):
        c = node.children
        line, col = node.meta.line, node.meta.column
        if kind == "ask":
            ask = ast.Ask(id=str(c[0]), type=str(c[1]), prompt=unquote(c[2]), show_if=self.expr(c[3]),
                          line=line, col=col)
            ask.spans.update(id=_pos(c[0]), type=_pos(c[1]), prompt=_pos(c[2]))
            if c[3] is not None:
                ask.spans["show_if"] = (c[3].meta.line, c[3].meta.column)
            self.target = (ask, "prompt")
            return ask
        if kind == "set":
            item = ast.Set(name=str(c[0]), value=self.expr(c[1]), line=line, col=col)
            item.spans.update(name=_pos(c[0]))
            return item
        if kind == "goto":
            item = ast.Goto(target=str(c[0]), cond=self.expr(c[1]), line=line, col=col)
            item.spans.update(target=_pos(c[0]))
            return item
        item = ast.End(id=str(c[0]), message=unquote(c[1]) if c[1] is not None else None, line=line, col=col)
        item.spans.update(id=_pos(c[0]))
        self.target = (item, "message")
        if c[1] is not None:
            item.spans["message"] = _pos(c[1])
        return item

    def option(self, ask: ast.Ask, kind: str, node: Tree) -> None:
        c = node.children
        at = (node.meta.line, node.meta.column)
        if kind == "choice":
            code, label = c
            choice = ast.Choice(code=str(code), label=unquote(label), line=code.line, col=code.column)
            ask.choices.append(choice)
            self.target = (choice, "label")
            return
        if kind == "match":
            if not ask.choices:
                self.report(codes.MALFORMED_VALUE, at, "'match' must come under a choice",
                            "list a choice's synonyms on the line after it: match \"si\", \"claro\"")
                return
            ask.choices[-1].match.extend(unquote(word) for word in c)
            ask.choices[-1].spans.setdefault("match", at)
            return
        if kind in ask.spans:
            self.report(codes.DUPLICATE_KEY, at, f"'{keyword(kind)}' is given twice for question '{ask.id}'")
            return
        ask.spans[kind] = _pos(c[0]) if c else at
        self.target = None
        if kind == "invalid_message":
            ask.invalid_message = unquote(c[0])
            self.target = (ask, "invalid_message")
        elif kind == "attempts":
            ask.attempts = int(c[0])
        elif kind == "on_invalid":
            ask.on_invalid = str(c[0])
        elif kind == "max_length":
            ask.max_length = int(c[0])
        elif kind in ("min_value", "max_value"):
            setattr(ask, kind, number_value(str(c[0])))
        elif kind == "decimal":
            ask.decimal = True




def number_value(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _unknown_statement(source: str, diag: Diagnostic) -> Diagnostic | None:
    """UNKNOWN_KEY with a 'did you mean' when a line starts with a word that begins no statement."""
    lines = source.splitlines()
    if not 0 < diag.line <= len(lines):
        return None
    text = lines[diag.line - 1]
    word = text.split()[0] if text.split() else ""
    start = len(text) - len(text.lstrip()) + 1
    if diag.col != start or not word.isalpha() or word in STATEMENT_WORDS:
        return None
    hint = suggest(word, STATEMENT_WORDS) or "a line starts with ask, set, goto, end or a setting"
    return codes.UNKNOWN_KEY.diagnostic(diag.path, (diag.line, diag.col), f"unknown statement '{word}'", hint,
                                        len(word))


MAX_SYNTAX_ERRORS = 20  # reported from one file before the rest waits for those to be fixed


def _clearer(lines: list[str], diag: Diagnostic, err: UnexpectedInput) -> Diagnostic:
    """The diagnostic said the way an author reads the mistake: an unterminated string where it
    runs off, and an unquoted text on the right of a `set`."""
    line = lines[diag.line - 1] if 0 < diag.line <= len(lines) else ""
    char = getattr(err, "char", None)
    token = getattr(err, "token", None)
    if char in ("\"", "'") and not _closes(line, diag.col - 1, char):
        end = len(line.rstrip("\r")) + 1
        return codes.SYNTAX.diagnostic(diag.path, (diag.line, end), "unterminated string: the line ends before "
                                       "its closing quote", f"close the string opened at column {diag.col} with "
                                       f"{char} (a string ends on its own line: write a line break as \\n)")
    words = line.split("=", 1)
    if (isinstance(token, Token) and token.type in ("NAME", "END_ID", "QTYPE", "SLUG") and line.lstrip().startswith("set ")
            and len(words) == 2 and diag.col > len(words[0]) + 1):
        return codes.SYNTAX.diagnostic(diag.path, (diag.line, diag.col), f"unexpected {str(token)!r} in the value of a set",
                                       f'to set a text, quote it: {words[0].strip()} = "{words[1].strip()}"',
                                       len(str(token)))
    return diag


def _closes(line: str, start: int, quote: str) -> bool:
    """Whether the string opened at `start` closes on its line."""
    i = start + 1
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == quote:
            return True
        i += 1
    return False


def _blank_statement(lines: list[str], number: int) -> list[str]:
    """The lines with the statement on line `number` (its continued lines, and the options indented
    under it when it is a statement of its own) made blank, so the lines after it can be read."""
    out = list(lines)
    first = number - 1
    while first > 0 and out[first - 1].rstrip().endswith("\\"):
        first -= 1
    last = number - 1
    while last + 1 < len(out) and out[last].rstrip().endswith("\\"):
        last += 1
    if out[first][:1] not in (" ", "\t"):
        while last + 1 < len(out) and out[last + 1][:1] in (" ", "\t"):
            last += 1
    for i in range(first, last + 1):
        out[i] = ""
    return out


def _syntax_error(source: str, lines: list[str], path: str, err: UnexpectedInput) -> Diagnostic:
    diag = syntax_diagnostic(path, err, "flow")
    if isinstance(getattr(err, "token", None), Token) and err.token.type == "CODE":
        diag = codes.SYNTAX.diagnostic(path, (diag.line, diag.col), diag.message,
                                       "a choice line must come under an 'ask ... choice' line")
    return _unknown_statement(source, diag) or _clearer(lines, diag, err)


def _parse_tree(source: str, path: str) -> Tree:
    """The parse tree; FlowError with every syntax error found, one per statement: after an error
    the statement is set aside and the lines after it are read (the text form is line-oriented)."""
    lines = (source if source.endswith("\n") else source + "\n").split("\n")
    header = next((i + 1 for i, text in enumerate(lines) if text.strip() and not text.lstrip().startswith("#")), 1)
    found: list[Diagnostic] = []
    while True:
        text = "\n".join(lines)
        try:
            tree = parser().parse(text, start="file")
        except UnexpectedInput as err:
            diag = _syntax_error(text, lines, path, err)
            found.append(diag)
            line = getattr(err, "line", 0) or 0
            if line <= header or line > len(lines) or len(found) >= MAX_SYNTAX_ERRORS or not lines[line - 1].strip():
                raise FlowError(found) from None
            lines = _blank_statement(lines, line)
            continue
        if found:
            raise FlowError(found)
        return tree


def parse_text(source: str, path: str = "<text>") -> ast.Survey:
    """Parse a survey in the text form; raise FlowError with positioned diagnostics."""
    if not source.strip():
        raise FlowError([codes.UNREADABLE.diagnostic(path, (1, 1), "the file is empty",
                                                     "start with: survey my-survey \"Title\"")])
    try:
        tree = _parse_tree(source, path)
    except RecursionError:
        raise FlowError([codes.SYNTAX.diagnostic(path, (1, 1), "the flow is nested too deeply to read")]) from None
    reader = _Reader(path)
    survey = reader.read(tree)
    if reader.diagnostics:
        raise FlowError(reader.diagnostics)
    return survey
