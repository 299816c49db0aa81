"""Language checks on a parsed Survey: ids, types, markup, names, references, gotos, reachability.

`dsl` knows nothing of SMS; the channel checks (sender, opt-out, segments) live in engine/sms/compat.py.
Every code is defined, with its summary and hint, in dsl/diagnostics.py.

Gotos may jump to a later question or end (never to a set, never backwards), so the element
graph is acyclic and one forward pass in file order is a complete dataflow analysis.
"""

from __future__ import annotations

import html.entities
import re
from collections import Counter

from dsl import ast, characters, vocabulary
from dsl import diagnostics as codes
from dsl.diagnostics import Diagnostic, Reporter, in_order
from dsl.errors import suggest
from dsl.expr import COMPARISONS, ChoiceValue, equal, number
from dsl.feasible import Feasible
from dsl.flowgraph import KnownBefore, Paths
from dsl.matching import fold_answer
from dsl.pipe import SURVEY_LINK, pipes
from dsl.positions import SourceMap, Text, every_text, span, texts
from dsl.vocabulary import (
    BUILTIN_FIELDS,
    DEFAULT_MAX_LENGTH,
    ON_INVALID,
    QUESTION_TYPES,
    RESERVED,
    TYPE_OPTIONS,
)

PIPE_FORMS = ("${e://Field/NAME}, ${q://ID/ChoiceGroup/SelectedChoices}, "
              "${q://ID/ChoiceTextEntryValue} or ${l://OptOutURL} (and, in a link distribution's "
              "invitation only, ${l://SurveyLink})")
_SUPPORTED = f"supported types are {', '.join(QUESTION_TYPES[:-1])} and {QUESTION_TYPES[-1]}"

# Question types authors bring from web survey tools: why each cannot travel over 2-way SMS,
# and what to write instead.
_ONE_TEXT = "a reply is one text message with one answer"
UNSUPPORTED_TYPES = {
    **dict.fromkeys(("multi_select", "multiselect", "multiple_select", "multi_choice", "multiple_answer",
                     "checkbox", "checkboxes", "select_all"),
                    (_ONE_TEXT, "ask one choice question per option, or a text question")),
    **dict.fromkeys(("matrix", "likert", "matrix_table", "grid", "side_by_side"),
                    ("a grid of rows and columns does not fit a text conversation",
                     "ask one choice question per row")),
    **dict.fromkeys(("slider", "graphic_slider", "scale"),
                    ("a text message has no slider", "use nps for 0-10, or a choice question")),
    **dict.fromkeys(("rank", "ranking", "rank_order", "pick_group_rank", "constant_sum"),
                    (_ONE_TEXT, "ask for the top pick with a choice question")),
    **dict.fromkeys(("dropdown", "single_choice", "multiple_choice", "radio", "select", "yes_no", "boolean"),
                    ("this is a choice question under another name", "write type: choice")),
    **dict.fromkeys(("rating", "stars", "star_rating"),
                    ("star widgets do not exist in a text message", "use nps or a choice question")),
    **dict.fromkeys(("numeric", "integer", "decimal"), ("this is a number question under another name",
                                                        "write type: number")),
    **dict.fromkeys(("email", "phone", "date", "date_picker", "essay", "text_entry",
                     "open_ended", "form"),
                    ("a typed answer is a text question", "write type: text")),
    **dict.fromkeys(("file_upload", "signature", "heat_map", "hot_spot", "highlight", "drill_down",
                     "captcha", "timing", "meta_info", "descriptive", "descriptive_text", "image", "video"),
                    ("it needs a web page, not a text conversation", "leave it out of the SMS survey")),
}

_HTML_TAGS = ("a|abbr|b|big|blockquote|body|br|center|code|div|em|font|h[1-6]|head|hr|html|i|img|li|ol|p|"
              "pre|s|small|span|strike|strong|sub|sup|table|tbody|td|th|tr|u|ul")
_HTML_TAG = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>|<!--", re.IGNORECASE)
_HTML_ENTITY = re.compile(r"&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_WHITESPACE = re.compile(r"\s")
_SURVEY_ID = re.compile(vocabulary.SURVEY_ID)
_NAME = re.compile(vocabulary.NAME)
_END_ID = re.compile(vocabulary.END_ID)


def piped_fields(survey: ast.Survey) -> set[str]:
    return {p.name for text in texts(survey) for p in pipes(text.value) if p.kind == "field"}


# ---------------------------------------------------------------- the checks


class _Checker(Reporter):
    def __init__(self, survey: ast.Survey, source: str | None, paths: Paths):
        super().__init__(survey.path)
        self.survey = survey
        self.map = SourceMap(source, survey)
        self.elements = survey.elements
        self.ids = paths.ids
        self.reached = paths.reached
        self.before = KnownBefore(survey, paths.succ)
        self.feasible = Feasible(survey, paths.succ)
        asks = Counter(e.id for e in self.elements if isinstance(e, ast.Ask))
        self.asks = {e.id: e for e in self.elements if isinstance(e, ast.Ask) and asks[e.id] == 1}
        self.questions = {e.id for e in self.elements if isinstance(e, ast.Ask)}
        self.sets = {e.name for e in self.elements if isinstance(e, ast.Set)}
        self.ends = {e.id for e in self.elements if isinstance(e, ast.End)}
        self.fields = set(survey.fields)
        self.field_names = self.fields | piped_fields(survey) | set(BUILTIN_FIELDS)
        self.warned_fields: set[str] = set()

    def run(self) -> list[Diagnostic]:
        self.settings()
        self.ids_and_names()
        for i, element in enumerate(self.elements):
            if isinstance(element, ast.Ask):
                self.ask(i, element)
            elif isinstance(element, ast.Set):
                self.expression(i, element.value, f"the value of set '{element.name}'")
            elif isinstance(element, ast.Goto):
                self.goto(i, element)
        for text in texts(self.survey):
            self.markup(text)
            self.piped(text)
            self.yaml_comment(text)
        for text in every_text(self.survey):
            self.characters(text)
        self.never_true()
        self.unreachable()
        self.languages()
        return self.diagnostics

    # -- survey settings

    def access_code_countries(self) -> None:
        survey = self.survey
        if survey.access_code_countries and not survey.access_code:
            self.report(codes.COUNTRIES_WITHOUT_ACCESS_CODE, span(survey, "access_code_countries"),
                        "access_code_countries is given but the survey has no access code")
        for index, country in enumerate(survey.access_code_countries):
            if country in vocabulary.COUNTRIES:
                continue
            meant = vocabulary.COUNTRY_ALIASES.get(country.upper(), country.upper())
            hint = (f"did you mean '{meant}'?" if meant in vocabulary.COUNTRIES
                    else suggest(country.upper(), vocabulary.COUNTRIES) or None)
            self.report(codes.UNKNOWN_COUNTRY,
                        span(survey, f"access_code_countries.{index}", "access_code_countries"),
                        f"'{country}' is not a country code Canvass knows", hint, len(country))

    def settings(self) -> None:
        survey = self.survey
        code = survey.access_code
        if code is not None:
            at = span(survey, "access_code")
            if not code.startswith("@"):
                self.report(codes.BAD_ACCESS_CODE, at, f"access code '{code}' must start with '@'",
                            f'write "@{code.strip()}" (quoted in YAML: a plain value cannot start with @)',
                            len(code))
            elif len(code) == 1:
                self.report(codes.BAD_ACCESS_CODE, at, "the access code '@' has nothing after the '@'",
                            'write a word after it, like "@STORE"')
            elif _WHITESPACE.search(code):
                self.report(codes.BAD_ACCESS_CODE, at, f"access code '{code}' contains whitespace",
                            "respondents text the code as one word: remove the spaces", len(code))
        self.access_code_countries()
        if survey.expires_after is None or survey.expires_after <= 0:
            self.report(codes.BAD_DURATION, span(survey, "expires_after"), "expires_after must be a positive duration")
        elif survey.remind_after is not None and survey.remind_after >= survey.expires_after:
            self.report(codes.BAD_DURATION, span(survey, "remind_after"),
                        "remind_after is not shorter than expires_after: the reminder would never be sent",
                        "remind well before the survey expires, e.g. remind_after: 4h with expires_after: 48h")
        if not survey.questions:
            at = span(survey, "flow")
            if "flow" in survey.spans:
                at = self.map.key("flow", at, survey.line)
            self.report(codes.NO_QUESTIONS, at, "the survey has no questions")

    # -- ids, one namespace for questions, ends and sets

    def id_spelling(self, name: str, what: str, pattern: re.Pattern, at: tuple[int, int]) -> None:
        """BAD_ID: an id that expressions, piped text or the text form could not name."""
        if not name:
            return
        allowed = {_SURVEY_ID: "letters, digits, '_', '-' and '.'", _NAME: "letters, digits and '_'",
                   _END_ID: "letters, digits, '_' and '-'"}[pattern]
        if not pattern.fullmatch(name):
            self.report(codes.BAD_ID, at, f"{what} '{name}' is not a valid id",
                        f"use {allowed}, starting with a letter" + ("" if pattern is _NAME else " or digit"),
                        len(name))
        elif pattern is _NAME and name in RESERVED:
            self.report(codes.BAD_ID, at, f"{what} '{name}' is a word of the expression language",
                        "choose another name: expressions could not refer to this one", len(name))

    def ids_and_names(self) -> None:
        self.id_spelling(self.survey.id, "survey id", _SURVEY_ID, span(self.survey, "survey"))
        for element in self.elements:
            at = span(element, "ask", "end", "set", "id", "name")
            if isinstance(element, ast.End):
                self.id_spelling(element.id, "end id", _END_ID, at)
            elif isinstance(element, ast.Ask | ast.Set):
                self.id_spelling(ast.element_id(element), "question id" if isinstance(element, ast.Ask)
                                 else "set name", _NAME, at)
        seen: dict[str, ast.Element] = {}
        for element in self.elements:
            name = ast.element_id(element)
            if not name:
                continue
            at = span(element, "ask", "end", "set", "id", "name")
            first = seen.get(name)
            if first is None:
                seen[name] = element
                continue
            if isinstance(first, ast.Set) and isinstance(element, ast.Set):
                continue  # embedded data may be set on several branches
            if isinstance(first, ast.Set) == isinstance(element, ast.Set):
                self.report(codes.DUPLICATE_ID, at, f"duplicate id '{name}'", f"the first is on line {first.line}; "
                            "every question and end needs its own name", len(name))
            else:
                self.report(codes.NAME_CLASH, at, f"'{name}' names both a {_kind(first)} (line {first.line}) "
                            f"and a {_kind(element)}", "questions, ends and sets share one namespace: "
                            "rename one of them", len(name))
        for field in self.survey.fields:
            if field in self.questions:
                at = self.map.find(span(self.survey, "fields"), field, span=len(" ".join(self.survey.fields)))
                self.report(codes.NAME_CLASH, at, f"field '{field}' has the same name as question '{field}'",
                            "rename the field or the question: expressions could not tell them apart",
                            len(field))

    # -- questions

    def ask(self, index: int, ask: ast.Ask) -> None:
        qtype = ask.type.strip().lower().replace("-", "_").replace(" ", "_")
        at_type = span(ask, "type")
        if ask.type not in QUESTION_TYPES:
            if qtype in QUESTION_TYPES:
                self.report(codes.UNSUPPORTED_TYPE, at_type, f"question type '{ask.type}' must be written '{qtype}'",
                            f"{_SUPPORTED}, in lower case", len(ask.type))
            elif qtype in UNSUPPORTED_TYPES:
                why, instead = UNSUPPORTED_TYPES[qtype]
                self.report(codes.UNSUPPORTED_TYPE, at_type, f"question type '{ask.type}' cannot be asked over 2-way SMS: {why}",
                            f"{_SUPPORTED}; {instead}", len(ask.type))
            else:
                close = suggest(qtype, QUESTION_TYPES)
                self.report(codes.UNSUPPORTED_TYPE, at_type, f"unknown question type '{ask.type}'",
                            f"{close + ' ' if close else ''}({_SUPPORTED})", len(ask.type))
        if not ask.prompt.strip():
            self.report(codes.MALFORMED_VALUE, span(ask, "prompt"), f"question '{ask.id}' has an empty prompt",
                        "write the question the respondent will read")
        if ask.type in QUESTION_TYPES:  # options of an unsupported type would only repeat UNSUPPORTED_TYPE
            self.choices(ask, ask.type)
            self.options(ask, ask.type)
        self.expression(index, ask.show_if, "show_if")

    def choices(self, ask: ast.Ask, qtype: str) -> None:
        if "choices" not in TYPE_OPTIONS[qtype]:
            if ask.choices:
                at = span(ask, "choices")
                if "choices" in ask.spans:
                    at = self.map.key("choices", at, ask.line)
                else:
                    at = (ask.choices[0].line, ask.choices[0].col)
                self.report(codes.OPTION_MISFIT, at, f"question '{ask.id}' has choices but its type is '{ask.type}'",
                            "only choice questions have choices: use type: choice or remove them")
            return
        if len(ask.choices) < 2:
            if "choices" in ask.spans:
                at = self.map.key("choices", span(ask, "choices"), ask.line)
            else:
                at = span(ask, "ask", "id")
            count = "no choices" if not ask.choices else "only one choice"
            self.report(codes.TOO_FEW_CHOICES, at, f"choice question '{ask.id}' has {count}")
        by_code: dict[str, ast.Choice] = {}
        labels: dict[str, ast.Choice] = {}
        for choice in ask.choices:
            code, label = choice.code.strip().lower(), " ".join(choice.label.lower().split())
            if code in by_code:
                self.report(codes.DUPLICATE_CHOICE, (choice.line, choice.col),
                            f"choice code '{choice.code}' is used twice in question '{ask.id}'",
                            f"the first is on line {by_code[code].line}; respondents reply with the code, "
                            "so each must be different")
            elif label in labels:
                self.report(codes.DUPLICATE_CHOICE, (choice.line, choice.col),
                            f"choice label '{choice.label}' is used twice in question '{ask.id}'",
                            f"the first is on line {labels[label].line}; remove or reword one")
            by_code.setdefault(code, choice)
            labels.setdefault(label, choice)

    def options(self, ask: ast.Ask, qtype: str) -> None:
        if ask.max_length is not None:
            at = span(ask, "max_length")
            if "max_length" not in TYPE_OPTIONS[qtype]:
                self.report(codes.OPTION_MISFIT, at, f"max_length applies only to text questions; '{ask.id}' is {qtype}",
                            "remove max_length")
            elif ask.max_length < 1:
                self.report(codes.OPTION_MISFIT, at, "max_length must be at least 1", f"for example max_length: {DEFAULT_MAX_LENGTH}")
        if ask.attempts is not None and ask.attempts < 1:
            self.report(codes.OPTION_MISFIT, span(ask, "attempts"), f"attempts must be at least 1, not {ask.attempts}",
                        "leave attempts out to ask again until the session expires")
        if ask.on_invalid is not None and ask.on_invalid not in ON_INVALID:
            close = suggest(ask.on_invalid, ON_INVALID)
            self.report(codes.OPTION_MISFIT, span(ask, "on_invalid"), f"on_invalid must be skip or end, not '{ask.on_invalid}'",
                        close or "skip moves on to the next question; end closes the survey",
                        len(ask.on_invalid))

    # -- gotos

    def goto(self, index: int, goto: ast.Goto) -> None:
        at = span(goto, "goto", "target")
        name = goto.target
        self.expression(index, goto.cond, "the condition of goto")
        target = self.ids.get(name)
        if target is None:
            close = suggest(name, self.questions | self.ends)
            self.report(codes.UNKNOWN_GOTO, at, f"goto to unknown element '{name}'",
                        close or "a goto jumps to a later question or end, by its id", len(name))
        elif isinstance(self.elements[target], ast.Set):
            self.report(codes.UNKNOWN_GOTO, at, f"goto '{name}' names a set; a goto jumps to a question or an end",
                        "jump to the question or end after the set", len(name))
        elif target < index:
            self.report(codes.GOTO_BACKWARDS, at, f"goto '{name}' jumps back to line {self.elements[target].line}",
                        length=len(name))

    # -- names in expressions

    def expression(self, index: int, expr: ast.Expr | None, context: str) -> None:
        answered = {id(node.target) for node in ast.walk(expr) if isinstance(node, ast.Answered)}
        for node in ast.walk(expr):
            if isinstance(node, ast.Answered) and node.target is not None:
                self.answered_name(index, node.target)
            elif isinstance(node, ast.Name) and id(node) not in answered:
                self.name(index, node, context)
            elif isinstance(node, ast.Compare):
                for name, value in ((node.left, node.right), (node.right, node.left)):
                    if isinstance(name, ast.Name) and isinstance(value, ast.Literal):
                        self.compared(name, value, node.op)
            elif isinstance(node, ast.In) and isinstance(node.item, ast.Name):
                for item in node.options.items:
                    if isinstance(item, ast.Literal):
                        self.compared(node.item, item, "!=" if node.negated else "==")

    def compared(self, name: ast.Name, value: ast.Literal, op: str) -> None:
        """NO_SUCH_CHOICE and NPS_RANGE: a question compared with a value its answers never take."""
        ask = self.asks.get(name.name)
        if ask is None or (value.value == "" and op == "!="):  # `!= ""`: written to mean "is answered"
            return
        at, literal = (value.line, value.col), value.value
        if ask.type == "choice" and ask.choices and op in ("==", "!="):
            if any(equal(ChoiceValue(c.code, c.label), literal) for c in ask.choices):
                return
            written = f"'{literal}'" if isinstance(literal, str) else f"with code {_literal(literal)}"
            spellings = [c.label for c in ask.choices] + [c.code for c in ask.choices]
            listed = ", ".join(f"{c.code} {c.label}" for c in ask.choices)
            close = suggest(str(literal), spellings) if isinstance(literal, str) else ""
            self.report(codes.NO_SUCH_CHOICE, at, f"question '{ask.id}' has no choice {written}",
                        f"{close + ' ' if close else ''}its choices are {listed}", value.length)
        elif ask.type == "nps":
            score = None if isinstance(literal, bool) else number(literal)
            if score is None:
                self.report(codes.NPS_RANGE, at, f"NPS question '{ask.id}' is compared with the text '{_literal(literal)}'",
                            length=value.length, name=ask.id)
            elif not 0 <= score <= 10 and not any(_holds(op, name, value, n) for n in range(11)):
                self.report(codes.NPS_RANGE, at, f"NPS question '{ask.id}' is compared with {_literal(literal)}, "
                            "outside 0-10: the comparison is never true", length=value.length, name=ask.id)
        elif ask.type == "number":
            low, high = ask.min_value, ask.max_value
            given = None if isinstance(literal, bool) else number(literal)
            bounds = f"{_literal(low) if low is not None else ''}-{_literal(high) if high is not None else ''}"
            if given is None:
                self.report(codes.NPS_RANGE, at, f"number question '{ask.id}' is compared with the text "
                            f"'{_literal(literal)}'", f"compare with a number, e.g. {ask.id} >= {low or 1}",
                            value.length)
            elif _never_in_range(op, name, value, low, high, ask.decimal):
                self.report(codes.NPS_RANGE, at, f"number question '{ask.id}' (from {bounds}) is compared with "
                            f"{_literal(literal)}: the comparison is never true",
                            "compare with a number its answers can take", value.length)

    def name(self, index: int, node: ast.Name, context: str) -> None:
        name = node.name
        at = (node.line, node.col)
        if name in self.questions or name in self.sets:
            self.available(index, name, at, len(name))
            return
        if name in self.field_names:
            return
        if name in self.ends:
            self.report(codes.UNKNOWN_NAME, at, f"'{name}' is an end, not a question, set or field, in {context}",
                        "an expression can use questions, sets and fields", len(name))
            return
        noun = "question" if context == "show_if" else "name"
        close = suggest(name, self.questions | self.sets | self.field_names)
        declared = ", ".join([*self.survey.fields, name])
        hint = close or f"if '{name}' is a contact field, declare it: fields: [{declared}]"
        if context.startswith("the value of set") and not close:
            hint = f"to set the text '{name}', quote it: \"{name}\"; {hint}"
        self.report(codes.UNKNOWN_NAME, at, f"unknown {noun} '{name}' in {context}", hint, len(name))

    def answered_name(self, index: int, node: ast.Name) -> None:
        at = (node.line, node.col)
        if node.name in self.ends:
            self.report(codes.UNKNOWN_NAME, at, f"'{node.name}' is an end; only questions are answered",
                        "'is answered' takes a question id (or a field: is it set?)", len(node.name))
        else:  # a field or set "is answered" when it has a value
            self.name(index, node, "'is answered'")

    def available(self, index: int, name: str, at: tuple[int, int], length: int) -> None:
        """NOT_YET_ANSWERED unless `name` (a question, or a set that is not also a field) can have a value here."""
        if not self.reached[index] or self.before.may_have(index, name):
            return
        source = self.ids.get(name)
        if source is None:
            return
        element = self.elements[source]
        if isinstance(element, ast.Set) and name in self.fields:
            return  # a declared field the set overrides: it has the field's value until then
        what = f"question '{name}'" if isinstance(element, ast.Ask) else f"set '{name}'"
        done = "answered" if isinstance(element, ast.Ask) else "set"
        if source == index:
            own = "cannot depend on its own answer" if done == "answered" else "is used in its own value before it has one"
            self.report(codes.NOT_YET_ANSWERED, at, f"{what} {own}", "refer to a question asked before it", length)
        elif source > index:
            self.report(codes.NOT_YET_ANSWERED, at, f"{what} is not {done} yet here: it comes later (line {element.line})",
                        f"move this after {what}, or refer to an earlier question", length)
        else:
            self.report(codes.NOT_YET_ANSWERED, at, f"{what} is never {done} on any path that leads here",
                        "the gotos before this line skip it on every path", length)

    # -- text: markup and piped text

    def markup(self, text: Text) -> None:
        found = [m for m in (_HTML_TAG.search(text.value), _entity(text.value)) if m]
        if not found:
            return
        match = min(found, key=lambda m: m.start())
        piece = match.group(0)
        nth = text.value[: match.start()].count(piece)
        at = self.map.find(text.at, piece, nth, len(text.value))
        if piece.startswith("&"):
            self.report(codes.MARKUP, at, f"HTML entity '{piece}' in {text.where}",
                        f"SMS and WhatsApp show plain text: write the character itself ({html.unescape(piece)!r})",
                        len(piece))
        else:
            self.report(codes.MARKUP, at, f"HTML '{piece}' in {text.where}",
                        "SMS and WhatsApp show plain text: remove the markup (write line breaks as new lines)",
                        len(piece))

    def characters(self, text: Text) -> None:
        """CONTROL_CHARACTER at the first of each forbidden character in a text, where it is written
        (raw, or as a YAML escape such as "\\x01")."""
        found = [m.group(0) for m in characters.FORBIDDEN.finditer(text.value)]
        if not found:
            return
        spellings = [(at, m.group(0)) for at, m in self.map.matches(text.at, characters.SPELLED, len(text.value))
                     if characters.FORBIDDEN.match(characters.spelled(m.group(0)))]
        if len(spellings) != len(found):
            spellings = [(text.at, ch) for ch in found]  # written in a way not followed here: the text's start
        reported = set()
        for ch, (at, written) in zip(found, spellings, strict=True):
            if ch not in reported:
                reported.add(ch)
                self.report(codes.CONTROL_CHARACTER, at, f"{characters.describe(ch)} in {text.where}",
                            length=len(written) if written != ch else 1)

    def yaml_comment(self, text: Text) -> None:
        """YAML_COMMENT when an unquoted one-line text is followed on its line by ` #...`: YAML read
        the rest as a comment, so the respondent would not see it."""
        offset = self.map.offset(text.at)
        if offset is None or "\n" in text.value or not text.value:
            return
        source = self.map.source
        end = source.find("\n", offset)
        line = source[offset: len(source) if end < 0 else end]
        if not line.startswith(text.value) or not re.match(r"\s+#", line[len(text.value):]):
            return
        at = self.map.position(offset + len(text.value) + line[len(text.value):].index("#"))
        self.report(codes.YAML_COMMENT, at, f"'#' starts a YAML comment in {text.where}: the text ends before it",
                    text=line.rstrip())

    def piped(self, text: Text) -> None:
        covered = set()
        for pipe in pipes(text.value):
            covered.add(pipe.start)
            piece = text.value[pipe.start: pipe.end]
            nth = text.value[: pipe.start].count(piece)
            at = self.map.find(text.at, piece, nth, len(text.value))
            self.pipe(text, pipe, at, len(piece))
        for match in re.finditer(r"\$\{", text.value):
            if match.start() not in covered:
                at = self.map.find(text.at, "${", text.value[: match.start()].count("${"), len(text.value))
                self.report(codes.MALFORMED_PIPE, at, f"unterminated piped text in {text.where}",
                            f"close it with '}}': {PIPE_FORMS}", 2)

    def pipe(self, text: Text, pipe, at: tuple[int, int], length: int) -> None:
        if text.where == "the survey's not_in_survey_message" and pipe.kind in ("field", "question"):
            self.report(codes.PIPE_WITHOUT_SESSION, at, f"piped text in {text.where} always renders empty",
                        length=length)
            return
        if pipe.kind == "bad":
            self.report(codes.MALFORMED_PIPE, at, f"malformed piped text '${{{pipe.name}}}' in {text.where}",
                        f"write {PIPE_FORMS}", length)
        elif pipe.kind == "link" and pipe.name == SURVEY_LINK:
            self.report(codes.SURVEY_LINK_IN_FLOW, at, f"${{l://SurveyLink}} in {text.where} cannot render: "
                        "a flow's texts go over 2-way SMS and the web pages, which have no invitation "
                        "link to show", length=length)
        elif pipe.kind == "question":
            if pipe.name not in self.questions:
                if pipe.name in self.sets or pipe.name in self.field_names:
                    hint = f"'{pipe.name}' is not a question: write ${{e://Field/{pipe.name}}}"
                else:
                    hint = suggest(pipe.name, self.questions) or "pipe an earlier question's answer"
                self.report(codes.UNKNOWN_PIPE, at, f"unknown question '{pipe.name}' in piped text in {text.where}",
                            hint, length)
            elif text.element is not None:
                self.available(text.element, pipe.name, at, length)
        elif pipe.kind == "field":
            self.contact_field_on_access_code(pipe.name, at, length)
            if pipe.name in self.sets:
                if text.element is not None:
                    self.available(text.element, pipe.name, at, length)
            elif self.fields and pipe.name not in self.fields and pipe.name not in BUILTIN_FIELDS:
                close = suggest(pipe.name, self.fields | self.sets)
                self.report(codes.UNKNOWN_PIPE, at, f"unknown field '{pipe.name}' in piped text in {text.where}",
                            close or f"add it to the survey's fields: {', '.join(self.survey.fields)}, {pipe.name}",
                            length)

    def contact_field_on_access_code(self, name: str, at: tuple[int, int], length: int) -> None:
        """FIELDS_ON_ACCESS_CODE, once per survey: a respondent who texts the access code brings no contact fields."""
        if not self.survey.access_code or name in self.sets or name in BUILTIN_FIELDS or self.warned_fields:
            return
        contact = sorted(self.field_names - self.sets - set(BUILTIN_FIELDS))
        self.warned_fields.update(contact)
        self.report(codes.FIELDS_ON_ACCESS_CODE, at, f"contact fields ({', '.join(contact)}) are empty for respondents "
                    "who start by access code", length=length)

    # -- reachability, with the answers a respondent can give

    def never_true(self) -> None:
        """NEVER_TRUE for each condition no answers that reach it can satisfy (unless an error inside it,
        such as an impossible value or a question not yet asked, already says why)."""
        self.errors_at = {(d.line, d.col) for d in self.diagnostics if d.is_error}
        for found in self.feasible.never_true:
            if self.flagged_in(found.expr):
                continue
            element = self.elements[found.index]
            if found.kind == "show_if":
                what = f"the show_if of question '{element.id}'"
            else:
                what = f"the condition of goto '{element.target}'"
            self.report(codes.NEVER_TRUE, (found.expr.line, found.expr.col),
                        f"{what} can never be true on any path that reaches it",
                        self.why_never(found.index, found.expr), found.expr.length)

    def why_never(self, index: int, expr: ast.Expr) -> str:
        known = [f"{name} is {text}" for name in dict.fromkeys(n.name for n in ast.walk(expr) if isinstance(n, ast.Name))
                 if (text := self.feasible.describe(index, name))]
        if not known:
            return "it is false whatever the answers: check the comparison"
        return f"on every path that reaches it {' and '.join(known)}: check the comparison, or the conditions before it"

    def flagged_in(self, expr: ast.Expr | None) -> bool:
        return any((node.line, node.col) in self.errors_at for node in ast.walk(expr))

    def unreachable(self) -> None:
        previous_reached = True
        for i, element in enumerate(self.elements):
            reached = self.feasible.reached[i]
            name = ast.element_id(element)
            what = f"{_kind(element)} '{name}'" if name else _kind(element)
            at = (element.line, element.col)
            if not reached and previous_reached:
                if self.reached[i]:
                    self.report(codes.UNREACHABLE, at, f"{what} can never be reached: no answers lead here",
                                "every path to it passes a condition that cannot hold with the answers given "
                                "on that path")
                else:
                    self.report(codes.UNREACHABLE, at, f"{what} can never be reached")
            elif (reached and isinstance(element, ast.Ask) and not self.feasible.shown[i]
                  and not self.flagged_in(element.show_if)):
                self.report(codes.UNREACHABLE, at, f"{what} can never be asked: its show_if is never true here",
                            "no answers that lead here satisfy it: fix the condition, or remove the question")
            previous_reached = reached


    # -- languages and the number type (issue 14)

    def languages(self) -> None:
        """The languages setting; every respondent text in every language and in no other; choice
        words two choices share; the number type's options."""
        survey = self.survey
        declared = survey.languages
        for n, language in enumerate(declared):
            at = self.map.find(span(survey, "languages"), language, span=len(", ".join(declared)))
            if not _LANGUAGE.fullmatch(language):
                self.report(codes.UNKNOWN_LANGUAGE, at, f"'{language}' is not a language code",
                            "write ISO 639-1 codes, optionally with a region: en, es, fr, pt-BR", len(language))
            elif language in declared[:n]:
                self.report(codes.UNKNOWN_LANGUAGE, at, f"language '{language}' is listed twice", length=len(language))
            elif language.split("-")[0] not in vocabulary.BUILTIN_LANGUAGES:
                self.report(codes.NO_BUILTIN_TEXTS, at, f"Canvass has no built-in texts in '{language}'",
                            length=len(language), languages=", ".join(vocabulary.BUILTIN_LANGUAGES))
        if survey.language_field is not None and len(declared) < 2:
            self.report(codes.UNKNOWN_LANGUAGE, span(survey, "language_field"),
                        "language_field names a field, but the survey declares fewer than two languages",
                        "declare them: languages: [en, es] (the first is the default)")
        for node, attr, where, at_text, required in _translatable(survey):
            given = node.translations.get(attr, {})
            for language, _ in given.items():
                if language not in declared[1:]:
                    close = suggest(language, declared)
                    self.report(codes.UNKNOWN_LANGUAGE, node.spans.get(f"{attr}:{language}", at_text),
                                f"{where} is given in '{language}', which the survey does not declare",
                                close or f"add it to the survey's languages: {', '.join([*declared, language])}"
                                if declared else "declare the languages first: languages: [en, es]", len(language))
            base = node.texts.get(attr[6:]) if attr.startswith("texts.") else getattr(node, attr)
            if len(declared) < 2 or attr == "access_code" or not (required or base or given):
                continue  # an access code per language is optional: the default's starts the default language
            missing = [lang for lang in declared[1:] if lang not in given and _LANGUAGE.fullmatch(lang)]
            if not base and given:
                missing.insert(0, declared[0])
            if missing:
                self.report(codes.MISSING_TRANSLATION, at_text,
                            f"{where} has no text in {', '.join(repr(m) for m in missing)}")
        for ask in self.survey.questions:
            self.shared_choice_words(ask)
            self.number_options(ask)

    def shared_choice_words(self, ask: ast.Ask) -> None:
        default = self.survey.default_language
        reported = set()
        for language in self.survey.languages or [default]:
            seen: dict[str, tuple[ast.Choice, bool]] = {}
            for choice in ask.choices:
                words = {fold_answer(w): False for w in choice.match}
                words[fold_answer(choice.text(language))] = language == default  # a default label: E011's
                words.pop("", None)
                for word, label in sorted(words.items()):
                    other, other_label = seen.setdefault(word, (choice, label))
                    if other is not choice and not (label and other_label) \
                            and (word, other.code, choice.code) not in reported:
                        reported.add((word, other.code, choice.code))
                        self.report(codes.AMBIGUOUS_ANSWER, (choice.line, choice.col),
                                    f"'{word}' answers both choice '{other.code}' and choice '{choice.code}' "
                                    f"of question '{ask.id}'" + (f" in '{language}'" if label or other_label else ""))
        codes_of = {fold_answer(c.code): c for c in ask.choices}
        for choice in ask.choices:  # a reply that is one choice's code never reaches another's label
            for language in self.survey.languages or [default]:
                coded = codes_of.get(fold_answer(choice.text(language)))
                if coded is not None and coded is not choice:
                    self.report(codes.AMBIGUOUS_ANSWER, (choice.line, choice.col),
                                f"the label '{choice.text(language)}' of choice '{choice.code}' is the code of "
                                f"choice '{coded.code}' of question '{ask.id}': a reply of it picks '{coded.code}'",
                                "give the label words of its own, or swap the codes")
                    break

    def number_options(self, ask: ast.Ask) -> None:
        options = TYPE_OPTIONS.get(ask.type)
        if options is None:
            return
        for attr, key in (("min_value", "min"), ("max_value", "max"), ("decimal", "decimal")):
            if getattr(ask, attr) not in (None, False) and attr not in options:
                self.report(codes.OPTION_MISFIT, span(ask, attr, key), f"{key} applies only to number questions; "
                            f"'{ask.id}' is {ask.type}", f"remove {key}, or make it type: number")
        low, high = ask.min_value, ask.max_value
        if low is not None and high is not None and low > high:
            self.report(codes.OPTION_MISFIT, span(ask, "max_value", "max"), f"max {high} is below min {low}",
                        "no answer could be valid: swap them")
        if not ask.decimal and any(isinstance(v, float) and not v.is_integer() for v in (low, high)):
            self.report(codes.OPTION_MISFIT, span(ask, "min_value", "min"), f"question '{ask.id}' takes whole "
                        "numbers but its range is not whole", "add decimal: true, or give whole bounds")


_LANGUAGE = re.compile(vocabulary.LANGUAGE)


def _translatable(survey: ast.Survey):
    """(node, attribute, where, position, required) of every text a respondent may read."""
    for key in ("end_message", "remind_message", "not_in_survey_message", "help_message", "access_code"):
        yield survey, key, f"the survey's {key}", span(survey, key), False
    for name in survey.texts:
        yield survey, f"texts.{name}", f"text '{name}'", span(survey, f"texts.{name}"), True
    for element in survey.elements:
        if isinstance(element, ast.Ask):
            yield element, "prompt", f"the prompt of question '{element.id}'", span(element, "prompt"), True
            yield element, "invalid_message", f"the invalid_message of question '{element.id}'", \
                span(element, "invalid_message"), False
            for choice in element.choices:
                yield choice, "label", f"choice '{choice.code}' of question '{element.id}'", \
                    (choice.line, choice.col), True
        elif isinstance(element, ast.End):
            yield element, "message", f"the message of end '{element.id}'", span(element, "message"), False
def _holds(op: str, name: ast.Name, value: ast.Literal, answer) -> bool:
    """Whether `name op value` (or `value op name`, as written) holds when the answer is `answer`."""
    if (name.line, name.col) <= (value.line, value.col):
        return COMPARISONS[op](answer, value.value)
    return COMPARISONS[op](value.value, answer)


def _never_in_range(op: str, name: ast.Name, value: ast.Literal, low, high, decimal: bool) -> bool:
    """Whether `name op value` holds for no answer of a number question taking low..high (None:
    no bound). An ordering holds somewhere in a range iff it holds at one of its ends; equality
    needs the value inside the range (and whole, when the answers are)."""
    given = number(value.value)
    if op == "==":
        whole = decimal or float(given).is_integer()
        return not whole or (low is not None and given < low) or (high is not None and given > high)
    if op not in ("<", "<=", ">", ">="):
        return False
    ends = [end for end in (low, high) if end is not None]
    if len(ends) < 2:  # unbounded on a side: some answer beyond the literal always exists there
        return False
    return not any(_holds(op, name, value, end) for end in ends)


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(element) -> str:
    return {ast.Ask: "question", ast.Set: "set", ast.Goto: "goto", ast.End: "end"}[type(element)]


def _entity(value: str):
    for match in _HTML_ENTITY.finditer(value):
        body = match.group(0)[1:]
        if body.startswith("#") or body in html.entities.html5:
            return match
    return None


def check_survey(survey: ast.Survey, source: str | None = None, paths: Paths | None = None) -> list[Diagnostic]:
    """Every language diagnostic for a survey, sorted by position. With the file's source,
    diagnostics inside a text (markup, piped text) point at the exact character."""
    return in_order(_Checker(survey, source, paths or Paths(survey)).run())
