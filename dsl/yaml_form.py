"""The YAML form (`.yaml`, `.yml`) -> Survey AST, keeping every position and refusing duplicate keys."""

from __future__ import annotations

from dataclasses import replace

import yaml

from dsl import ast, characters
from dsl import diagnostics as codes
from dsl.diagnostics import Code, Reporter
from dsl.durations import parse_duration
from dsl.errors import FlowError, suggest
from dsl.expr_parse import parse_expression
from dsl.vocabulary import (
    BUILTIN_TEXTS,
    ELEMENT_KEYS,
    MATCH_WORD,
    QUESTION_TYPES,
    SETTINGS,
    SURVEY_KEYS,
    TRANSLATED_OPTIONS,
    TRANSLATED_SETTINGS,
)

_ADD_TYPE = "add " + ", ".join(f"`type: {t}`" for t in QUESTION_TYPES[:-1]) + f" or `type: {QUESTION_TYPES[-1]}`"

_STR, _INT, _FLOAT, _BOOL, _NULL = ("tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null"))


class Entries(dict):
    """A mapping's entries by key; `misspelt` holds the known keys its unknown keys resemble,
    so a missing key that was only misspelt is reported once (as the unknown key)."""

    misspelt: frozenset[str] = frozenset()

    def lacks(self, key: str) -> bool:
        return key not in self and key not in self.misspelt


class _Reader(Reporter):
    def __init__(self, path: str, source: str):
        super().__init__(path)
        self.source = source
        self.languages: list[str] = []  # the survey's, once read

    def error(self, code: Code, node, message: str, hint: str | None = None) -> None:
        """Report a problem with a YAML node, underlining the whole of a one-line scalar."""
        length = len(node.value) if isinstance(node, yaml.ScalarNode) and "\n" not in node.value else 1
        self.report(code, at(node), message, hint, length)

    def mapping(self, node, allowed, where: str) -> Entries:
        """A mapping's entries by key, reporting duplicate and unknown keys."""
        entries = Entries()
        if not isinstance(node, yaml.MappingNode):
            self.error(codes.MALFORMED_VALUE, node, f"{where} must be a mapping of keys to values")
            return entries
        misspelt = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.error(codes.MALFORMED_VALUE, key_node, f"a key in {where} must be a plain word")
                continue
            if key in entries:
                first = entries[key][0].start_mark.line + 1
                self.error(codes.DUPLICATE_KEY, key_node, f"duplicate key '{key}' in {where}", f"the first is on line {first}")
                continue
            if key not in allowed:
                close = suggest(key, allowed)
                if close:
                    misspelt.add(close.split("'")[1])
                self.error(codes.UNKNOWN_KEY, key_node, f"unknown key '{key}' in {where}",
                           close or f"allowed keys: {', '.join(allowed)}")
                continue
            entries[key] = (key_node, value_node)
        entries.misspelt = frozenset(misspelt)
        return entries

    def text(self, entries, key: str, where: str, required: bool = False) -> str | None:
        if key not in entries:
            return None
        node = entries[key][1]
        if isinstance(node, yaml.ScalarNode) and node.tag != _NULL:
            return node.value
        if required or not (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            self.error(codes.MALFORMED_VALUE, node, f"'{key}' in {where} must be text")
        return None

    def integer(self, entries, key: str, where: str) -> int | None:
        if key not in entries:
            return None
        node = entries[key][1]
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
            try:
                return int(node.value, 0)
            except ValueError:
                pass
        self.error(codes.MALFORMED_VALUE, node, f"'{key}' in {where} must be a whole number")
        return None

    def number(self, entries, key: str, where: str) -> int | float | None:
        if key not in entries:
            return None
        node = entries[key][1]
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            try:
                return int(node.value, 0) if node.tag == _INT else float(node.value)
            except ValueError:
                pass
        self.error(codes.MALFORMED_VALUE, node, f"'{key}' in {where} must be a number")
        return None

    def flag(self, entries, key: str, where: str) -> bool:
        if key not in entries:
            return False
        node = entries[key][1]
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            return node.value.lower() in ("true", "yes", "on")
        self.error(codes.MALFORMED_VALUE, node, f"'{key}' in {where} must be true or false")
        return False

    def localized(self, entries, key: str, where: str, owner, attr: str | None = None,
                  required: bool = False) -> str | None:
        """A text that may be given in each of the survey's languages ({en: ..., es: ...}): the
        default language's text, the others into owner.translations[attr] (attr: key)."""
        if key not in entries:
            return None
        return self.localized_node(entries[key][1], key, where, owner, attr or key, required)

    def localized_node(self, node, key: str, where: str, owner, attr: str, required: bool = False) -> str | None:
        if not isinstance(node, yaml.MappingNode):
            return self.text({key: (None, node)}, key, where, required)
        if not self.languages:
            self.error(codes.UNKNOWN_LANGUAGE, node, f"'{key}' in {where} is given by language, but the survey "
                       "declares no languages", "declare them first: languages: [en, es] (the first is the default)")
            return None
        texts: dict[str, str] = {}
        for language, (_, value) in self.mapping(node, self.languages, f"'{key}' in {where}").items():
            text = self.text({language: (None, value)}, language, f"'{key}' in {where}", True)
            if text is not None:
                texts[language] = text
                owner.spans[f"{attr}:{language}"] = at(value)
        default = texts.pop(self.languages[0], None)
        if texts:
            owner.translations[attr] = texts
        return default if default is not None or not texts else ""

    def duration(self, entries, key: str) -> int | None:
        value = self.text(entries, key, "the survey")
        if value is None:
            return None
        seconds = parse_duration(value)
        if seconds is None or seconds <= 0:
            self.error(codes.BAD_DURATION, entries[key][1], f"'{value}' is not a duration")
        return seconds

    def expression(self, entries, key: str, where: str):
        if key not in entries:
            return None
        node = entries[key][1]
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.error(codes.EXPRESSION_SYNTAX, node, f"'{key}' in {where} must be an expression")
            return None
        text = node.value.lower() if node.tag == _BOOL else node.value
        where_in_file = ScalarMap(self.source, node, text)
        try:
            expr = parse_expression(text, self.path, 1, 1)
        except FlowError as err:
            for d in err.diagnostics:
                line, col = where_in_file.locate(d.line, d.col)
                self.diagnostics.append(replace(d, line=line, col=col))
            return None
        for item in ast.walk(expr):
            item.line, item.col = where_in_file.locate(item.line, item.col)
        return expr

    def survey(self, root) -> ast.Survey:
        entries = self.mapping(root, SURVEY_KEYS, "the survey")
        if entries.lacks("survey"):
            self.error(codes.MALFORMED_VALUE, root, "the survey has no 'survey' key", "add `survey: my-survey-id` at the top")
        survey = ast.Survey(id=self.text(entries, "survey", "the survey", True) or "", path=self.path,
                            line=at(root)[0], col=at(root)[1])
        if "languages" in entries:
            survey.languages = self.languages = self.names(entries["languages"][1], "languages", "language codes")
        for setting in (s for s in SETTINGS if s.kind in ("text", "name")):
            if setting.attr in TRANSLATED_SETTINGS:
                setattr(survey, setting.attr, self.localized(entries, setting.key, "the survey", survey, setting.attr))
            else:
                setattr(survey, setting.attr, self.text(entries, setting.key, "the survey"))
        if "texts" in entries:
            self.builtin_texts(survey, entries["texts"][1])
        for setting in (s for s in SETTINGS if s.kind == "duration"):
            seconds = self.duration(entries, setting.key)
            if seconds is not None or setting.attr != "expires_after":  # expiry keeps its default
                setattr(survey, setting.attr, seconds)
        if "fields" in entries:
            survey.fields = self.names(entries["fields"][1], "fields", "field names")
        for key, (_, value_node) in entries.items():
            survey.spans[key] = at(value_node)
        if "access_code_countries" in entries:
            node = entries["access_code_countries"][1]
            survey.access_code_countries = self.names(node, "access_code_countries", "country codes (US, GB)")
            for index, item in enumerate(node.value if survey.access_code_countries else ()):
                survey.spans[f"access_code_countries.{index}"] = at(item)  # each country's own place
        if "flow" not in entries:
            if entries.lacks("flow"):
                self.error(codes.MALFORMED_VALUE, root, "the survey has no 'flow'", "add `flow:` with a list of questions")
            return survey
        flow = entries["flow"][1]
        if not isinstance(flow, yaml.SequenceNode):
            self.error(codes.MALFORMED_VALUE, flow, "'flow' must be a list of elements (ask, set, goto, end)")
            return survey
        for item in flow.value:
            element = self.element(item)
            if element is not None:
                survey.elements.append(element)
        return survey

    def names(self, node, key: str, what: str) -> list[str]:
        if isinstance(node, yaml.SequenceNode) and all(isinstance(n, yaml.ScalarNode) for n in node.value):
            return [n.value for n in node.value]
        self.error(codes.MALFORMED_VALUE, node, f"'{key}' must be a list of {what}")
        return []

    def builtin_texts(self, survey: ast.Survey, node) -> None:
        """`texts:`: built-in texts (engine/texts.py) this survey words its own way."""
        for name, (_, value) in self.mapping(node, tuple(BUILTIN_TEXTS), "'texts'").items():
            text = self.localized_node(value, name, "'texts'", survey, f"texts.{name}", True)
            if text is not None:
                survey.texts[name] = text
                survey.spans[f"texts.{name}"] = at(value)

    def element(self, node):
        if not isinstance(node, yaml.MappingNode) or not node.value:
            self.error(codes.MALFORMED_VALUE, node, "each flow element must be a mapping starting with ask, set, goto or end")
            return None
        keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        kinds = [k for k in keys if k in ELEMENT_KEYS]
        if not kinds:
            first = node.value[0][0]
            hint = suggest(str(first.value), ELEMENT_KEYS) or "start the element with ask:, set:, goto: or end:"
            self.error(codes.UNKNOWN_KEY, first, f"unknown flow element '{first.value}'", hint)
            return None
        kind = kinds[0]
        entries = self.mapping(node, ELEMENT_KEYS[kind], f"this '{kind}' element")
        line, col = at(node)
        spans = {key: at(value) for key, (_, value) in entries.items()}
        if kind == "ask":
            return self.ask(entries, line, col, spans)
        if kind == "set":
            name = self.text(entries, "set", "set", True) or ""
            if entries.lacks("value"):
                self.error(codes.MALFORMED_VALUE, node, f"'set: {name}' has no 'value'", "add `value:` with an expression")
            return ast.Set(name=name, value=self.expression(entries, "value", f"set '{name}'"),
                           line=line, col=col, spans=spans)
        if kind == "goto":
            return ast.Goto(target=self.text(entries, "goto", "goto", True) or "",
                            cond=self.expression(entries, "if", "goto"), line=line, col=col, spans=spans)
        end = ast.End(id=self.text(entries, "end", "end", True) or "", line=line, col=col, spans=spans)
        end.message = self.localized(entries, "message", f"end '{end.id}'", end)
        return end

    def ask(self, entries, line, col, spans) -> ast.Ask:
        qid = self.text(entries, "ask", "ask", True) or ""
        where = f"question '{qid}'"
        for key in ("type", "prompt"):
            if entries.lacks(key):
                self.error(codes.MALFORMED_VALUE, entries["ask"][0], f"{where} has no '{key}'",
                           _ADD_TYPE if key == "type" else "add `prompt:`")
        ask = ast.Ask(id=qid, type=self.text(entries, "type", where) or "", prompt="",
                      show_if=self.expression(entries, "show_if", f"show_if of {where}"),
                      attempts=self.integer(entries, "attempts", where),
                      on_invalid=self.text(entries, "on_invalid", where),
                      max_length=self.integer(entries, "max_length", where),
                      min_value=self.number(entries, "min", where), max_value=self.number(entries, "max", where),
                      decimal=self.flag(entries, "decimal", where), line=line, col=col, spans=spans)
        for key in TRANSLATED_OPTIONS:
            setattr(ask, key, self.localized(entries, key, where, ask))
        ask.prompt = ask.prompt or ""
        if "choices" in entries:
            ask.choices = self.choices(entries["choices"][1], where)
        return ask

    def choices(self, node, where: str) -> list[ast.Choice]:
        if isinstance(node, yaml.MappingNode) and self.languages:
            return self.choices_by_language(node, where)
        if not isinstance(node, yaml.SequenceNode):
            self.error(codes.MALFORMED_VALUE, node, f"'choices' of {where} must be a list")
            return []
        out = []
        for number, item in enumerate(node.value, start=1):
            choice = self.choice(item, str(number), where)
            if choice is not None:
                out.append(choice)
        return out

    def choice(self, item, number: str, where: str) -> ast.Choice | None:
        """One choice: a label; {code, label, match} (the label may be given by language); or
        {en: ..., es: ..., match: [...]} (coded by its place in the list)."""
        line, col = at(item)
        if isinstance(item, yaml.ScalarNode) and item.tag != _NULL:
            return ast.Choice(code=number, label=item.value, line=line, col=col)
        keys = ("code", "label", MATCH_WORD, *self.languages)
        entries = self.mapping(item, keys, f"a choice of {where}")
        choice = ast.Choice(code=number, label="", line=line, col=col)
        by_language = [lang for lang in self.languages if lang in entries]
        if "label" in entries or not by_language:
            code = self.text(entries, "code", "a choice", True)
            label = self.localized(entries, "label", "a choice", choice, "label", True)
            if isinstance(item, yaml.MappingNode) and (code is None or label is None):
                self.error(codes.MALFORMED_VALUE, item, f"a choice of {where} needs both 'code' and 'label'")
            if code is None or label is None:
                return None
            choice.code, choice.label = code, label
        else:
            choice.code = self.text(entries, "code", "a choice", True) or number
            texts = {lang: self.text(entries, lang, "a choice", True) for lang in by_language}
            choice.label = texts.pop(self.languages[0], None) or ""
            choice.translations["label"] = {lang: text for lang, text in texts.items() if text is not None}
            for lang in by_language:
                choice.spans[f"label:{lang}"] = at(entries[lang][1])
            if not choice.translations["label"]:
                del choice.translations["label"]
        if MATCH_WORD in entries:
            choice.match = self.names(entries[MATCH_WORD][1], MATCH_WORD, "words a respondent may reply")
            choice.spans[MATCH_WORD] = at(entries[MATCH_WORD][1])
        return choice

    def choices_by_language(self, node, where: str) -> list[ast.Choice]:
        """choices: {en: [Yes, No], es: [Sí, No]}: one list per language, the same codes in each."""
        lists = self.mapping(node, self.languages, f"'choices' of {where}")
        default = self.languages[0]
        if default not in lists:
            self.error(codes.MISSING_TRANSLATION, node, f"the choices of {where} are not given in '{default}'",
                       f"add `{default}:` with the list of choices in the default language")
            return []
        out = self.choices(lists[default][1], where)
        for language, (key_node, value) in lists.items():
            if language == default:
                continue
            others = self.choices(value, where)
            if [c.code for c in others] != [c.code for c in out]:
                self.error(codes.CHOICES_DIFFER, key_node,
                           f"the '{language}' choices of {where} have codes {', '.join(c.code for c in others)}; "
                           f"the '{default}' ones have {', '.join(c.code for c in out)}",
                           "give the same choices, in the same order, in every language")
                continue
            for choice, other in zip(out, others, strict=True):
                choice.translations.setdefault("label", {})[language] = other.label
                choice.spans[f"label:{language}"] = (other.line, other.col)
                choice.match.extend(word for word in other.match if word not in choice.match)
        return out


class ScalarMap:
    """Where each character of a scalar's value stands in the file, so that an expression
    folded over several lines (plain, quoted, `>` or `|`) is reported where it is written.
    Characters are matched in order, skipping the line breaks and indentation YAML folds away."""

    def __init__(self, source: str, node: yaml.ScalarNode, value: str):
        start, end = node.start_mark.index, node.end_mark.index
        if node.style in ("|", ">"):
            start = source.find("\n", start, end) + 1 or end  # the body starts after the header
        elif node.style in ("'", '"'):
            start += 1
        spots, line, col = [], node.start_mark.line + 1, node.start_mark.column + 1
        for index in range(node.start_mark.index, end):
            if index >= start and not source[index].isspace():
                spots.append((source[index], line, col))
            line, col = (line + 1, 1) if source[index] == "\n" else (line, col + 1)
        self.value_lines = value.split("\n")
        self.positions: list[tuple[int, int]] = []
        cursor, last = 0, (node.start_mark.line + 1, node.start_mark.column + 1)
        for char in value:
            if not char.isspace():
                while cursor < len(spots) and spots[cursor][0] != char:
                    cursor += 1
                if cursor < len(spots):
                    last = spots[cursor][1:]
                    cursor += 1
                self.positions.append(last)
            else:
                self.positions.append((last[0], last[1] + 1))

    def locate(self, line: int, col: int) -> tuple[int, int]:
        """The file position of the value's (line, col), both 1-based."""
        index = sum(len(text) + 1 for text in self.value_lines[: max(0, line - 1)]) + col - 1
        if not self.positions:
            return (0, 0)
        return self.positions[min(max(index, 0), len(self.positions) - 1)]


def at(node) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def parse_yaml(source: str, path: str = "<yaml>") -> ast.Survey:
    """Parse a survey in the YAML form; raise FlowError with positioned diagnostics."""
    if not source.strip():
        raise FlowError([codes.UNREADABLE.diagnostic(path, (1, 1), "the file is empty", "start with: survey: my-survey")])
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as err:  # a character YAML does not allow, written as itself
        line = source.count("\n", 0, err.position) + 1
        col = err.position - (source.rfind("\n", 0, err.position) + 1) + 1
        raise FlowError([codes.CONTROL_CHARACTER.diagnostic(
            path, (line, col), f"{characters.describe(chr(err.character))} in the file")]) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = err.problem or err.context or "malformed YAML"
        hint = "check the indentation and quoting on this line"
        if "'\\t'" in problem:
            problem, hint = "a tab, which YAML does not allow in indentation", "use spaces to indent, not tabs"
        raise FlowError([codes.SYNTAX.diagnostic(path, (line, col), f"YAML syntax error: {problem}", hint)]) from None
    except yaml.YAMLError as err:
        raise FlowError([codes.SYNTAX.diagnostic(path, (1, 1), f"YAML syntax error: {err}")]) from None
    except RecursionError:
        raise FlowError([codes.SYNTAX.diagnostic(path, (1, 1), "the YAML is nested too deeply to read")]) from None
    if root is None:
        raise FlowError([codes.UNREADABLE.diagnostic(path, (1, 1), "the file has no survey in it")])
    reader = _Reader(path, source)
    survey = reader.survey(root)
    if reader.diagnostics:
        raise FlowError(reader.diagnostics)
    return survey
