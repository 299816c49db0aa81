"""Survey AST -> either flow form, and the `canvass convert` command.

Both printers write what a person would: settings first, then one element per
entry, defaults left out. Parsing the output gives back an equal Survey.
"""

from __future__ import annotations

import dataclasses
import re
import sys

import yaml

from dsl import ast
from dsl.comments import Comments, read_comments, yaml_anchors
from dsl.diagnostics import unreadable
from dsl.durations import WRITTEN, format_duration, parse_duration
from dsl.errors import FlowError
from dsl.expr_parse import quote, to_source
from dsl.load import form_of, parse_source, read_source
from dsl.vocabulary import (
    CHOICE_CODE,
    DEFAULT_EXPIRES_AFTER,
    END_ID,
    LANGUAGE,
    MATCH_WORD,
    NAME,
    ON_INVALID,
    QUESTION_TYPE_WORD,
    SETTING,
    SETTINGS,
    STATEMENT_WORDS,
    SURVEY_ID,
    TRANSLATED_SETTINGS,
)

_STR, _INT, _FLOAT, _BOOL, _SEQ, _MAP = (
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "seq", "map"))
_FLOW_LIST_WIDTH = 60  # choices and fields fit on one line up to this many characters


class ConversionError(ValueError):
    """The survey holds something the text form has no way to write."""


# ---------------------------------------------------------------- YAML form


class _Expression(str):
    """An expression scalar: YAML reads plain true/false as booleans, which the parser accepts."""


class _FlowList(list):
    """A short list written on one line: [a, b, c]."""


class _FlowMap(dict):
    """A small mapping written on one line: {code: A, label: Apple}."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)  # indent list items under their key


def _number_written_plainly(text: str, tag: str) -> bool:
    try:
        return str(int(text)) == text if tag == _INT else repr(float(text)) == text
    except ValueError:
        return False


def _scalar(dumper: yaml.SafeDumper, text: str, plain_tags: tuple[str, ...]):
    if any(c in text for c in "\x85\u2028\u2029"):  # PyYAML mangles these outside double quotes
        return dumper.represent_scalar(_STR, text, style='"')
    if text.strip("\n") and "\n" in text and not text.endswith("\n\n"):
        # A literal block; not for text ending in blank lines, whose "keep" style ends the document.
        return dumper.represent_scalar(_STR, text, style="|")
    tag = dumper.resolve(yaml.ScalarNode, text, (True, False))
    # Numbers written the usual way stay plain (the flow readers take a value's characters as
    # written); look-alikes such as +15555550100 or 0x1F are quoted so no YAML tool changes them.
    plain = tag in plain_tags and (tag not in (_INT, _FLOAT) or _number_written_plainly(text, tag))
    return dumper.represent_scalar(tag if plain else _STR, text)


_Dumper.add_representer(str, lambda d, v: _scalar(d, v, (_INT, _FLOAT)))
_Dumper.add_representer(
    _Expression,
    lambda d, v: _scalar(d, str(v), (_INT, _FLOAT, _BOOL) if v in ("true", "false") else (_INT, _FLOAT)))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence(_SEQ, v, flow_style=True))
_Dumper.add_representer(_FlowMap, lambda d, v: d.represent_mapping(_MAP, v, flow_style=True))


def _dump(data: dict) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=float("inf"))


def _short_list(items: list[str]):
    fits = all("\n" not in i for i in items) and sum(len(i) + 2 for i in items) <= _FLOW_LIST_WIDTH
    return _FlowList(items) if fits else list(items)


def _localized(node, attr: str, value: str | None, languages: list[str]):
    """A text as YAML writes it: itself, or {en: ..., es: ...} when it has translations."""
    translations = node.translations.get(attr)
    if not translations:
        return value
    texts = {} if value is None else {languages[0] if languages else "en": value}
    texts.update(translations)
    fits = all("\n" not in t for t in texts.values()) and sum(len(t) + 6 for t in texts.values()) <= _FLOW_LIST_WIDTH
    return _FlowMap(texts) if fits else dict(texts)


def _choices_yaml(choices: list[ast.Choice], languages: list[str]):
    numbered = [c.code for c in choices] == [str(n) for n in range(1, len(choices) + 1)]
    if numbered and not any(c.match or c.translations for c in choices):
        return _short_list([c.label for c in choices])
    out = []
    for c in choices:
        label = _localized(c, "label", c.label, languages)
        if numbered and not c.match and not isinstance(label, str):
            out.append(_FlowMap(label))
            continue
        item = _FlowMap(code=c.code, label=label if isinstance(label, str) else _FlowMap(label))
        if c.match:
            item[MATCH_WORD] = _FlowList(c.match)
        out.append(item)
    return out


def _element_yaml(element: ast.Element, languages: list[str]) -> dict:
    match element:
        case ast.Ask():
            out = {"ask": element.id, "type": element.type,
                   "prompt": _localized(element, "prompt", element.prompt, languages)}
            if element.show_if is not None:
                out["show_if"] = _Expression(to_source(element.show_if))
            if element.choices:
                out["choices"] = _choices_yaml(element.choices, languages)
            for key in ("invalid_message", "attempts", "on_invalid", "max_length"):
                if getattr(element, key) is not None or element.translations.get(key):
                    out[key] = _localized(element, key, getattr(element, key), languages)
            for attr, key in (("min_value", "min"), ("max_value", "max")):
                if getattr(element, attr) is not None:
                    out[key] = getattr(element, attr)
            if element.decimal:
                out["decimal"] = True
            return out
        case ast.Set():
            return {"set": element.name, "value": _Expression(to_source(element.value))}
        case ast.Goto():
            out = {"goto": element.target}
            if element.cond is not None:
                out["if"] = _Expression(to_source(element.cond))
            return out
        case ast.End():
            out = {"end": element.id}
            if element.message is not None or element.translations.get("message"):
                out["message"] = _localized(element, "message", element.message, languages)
            return out
    raise TypeError(f"not a flow element: {element!r}")


def written_durations(survey: ast.Survey, source: str | None) -> dict[str, str]:
    """Each duration setting as the source spells it ("24h" stays "24h", not "1d"), by attribute.
    The AST keeps seconds; the spelling is read back at the setting's position in the source."""
    if not source:
        return {}
    lines = source.split("\n")
    out = {}
    for setting in (s for s in SETTINGS if s.kind == "duration"):
        line, col = survey.spans.get(setting.key) or survey.spans.get(setting.rule) or (0, 0)
        if not 0 < line <= len(lines):
            continue
        match = WRITTEN.match(lines[line - 1], col - 1)
        seconds = getattr(survey, setting.attr)
        if match and seconds and parse_duration(match.group(1)) == seconds:
            out[setting.attr] = match.group(1)
    return out


def _spelled(survey: ast.Survey, attr: str, written: dict[str, str]) -> str:
    return written.get(attr) or format_duration(getattr(survey, attr))


def to_yaml(survey: ast.Survey, source: str | None = None, comments: Comments | None = None) -> str:
    """The survey in the YAML form; with the file's source, durations keep their spelling, and
    with its comments (dsl.comments), each is written at its anchor."""
    written = written_durations(survey, source)
    settings: dict = {"survey": survey.id}
    for setting in SETTINGS:
        value = getattr(survey, setting.attr)
        if setting.attr == "expires_after":
            if value != DEFAULT_EXPIRES_AFTER:
                settings[setting.key] = _spelled(survey, setting.attr, written)
        elif setting.kind == "duration":
            if value is not None:
                settings[setting.key] = _spelled(survey, setting.attr, written)
        elif setting.kind == "names":
            if value:
                settings[setting.key] = _short_list(value)
        elif setting.kind == "texts":
            if value:
                settings[setting.key] = {name: _localized(survey, f"texts.{name}", text, survey.languages)
                                         for name, text in value.items()}
        elif setting.attr in TRANSLATED_SETTINGS and survey.translations.get(setting.attr):
            settings[setting.key] = _localized(survey, setting.attr, value, survey.languages)
        elif value is not None:
            settings[setting.key] = value
    flow = {"flow": [_element_yaml(e, survey.languages) for e in survey.elements]}
    out = _dump(settings) + "\n" + _dump(flow)
    return out if comments is None else _yaml_commented(out, comments)


def _yaml_commented(out: str, comments: Comments) -> str:
    """The printed YAML with the comments put back: each above (or at the end of) the line that
    opens its setting or element, found by reading the printed text again."""
    lines = out.split("\n")  # the last is the empty one after the final newline
    for line, anchor in sorted(yaml_anchors(out).items(), reverse=True):
        above, beside = comments.take(anchor)
        opening = lines[line - 1]
        if beside:
            lines[line - 1] = f"{opening}  {beside}"
        indent = opening[: len(opening) - len(opening.lstrip())]
        lines[line - 1:line - 1] = [indent + text for text in above]
    lines[-1:-1] = [c.text for c in comments.bottom]
    return "\n".join([c.text for c in comments.top] + lines)


# ---------------------------------------------------------------- text form

_SLUG = re.compile(SURVEY_ID)
_NAME = re.compile(NAME)
_END_ID = re.compile(END_ID)
_QTYPE = re.compile(QUESTION_TYPE_WORD)
_CODE = re.compile(CHOICE_CODE)
_LANGUAGE = re.compile(LANGUAGE)
_INDENT = "    "


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise ConversionError(problem)


def _name(value: str, what: str, pattern: re.Pattern = _NAME) -> str:
    allowed = "letters, digits, _" if pattern is _NAME else "letters, digits, _, -"
    _require(bool(pattern.fullmatch(value)), f"{what} '{value}' is not a name ({allowed})")
    return value


def _count(value: int, what: str) -> str:
    _require(value >= 0, f"{what} {value} is negative")
    return str(value)


def _duration(survey: ast.Survey, attr: str, written: dict[str, str]) -> str:
    _require(getattr(survey, attr) > 0, f"{attr} must be longer than zero")
    return _spelled(survey, attr, written)


def _translations_text(node, attr: str, indent: str) -> list[str]:
    """The `xx: "..."` lines giving a text in the survey's other languages, under its line."""
    lines = []
    for language, text in node.translations.get(attr, {}).items():
        _require(bool(_LANGUAGE.fullmatch(language)), f"'{language}' is not a language code")
        lines.append(f"{indent}{language}: {quote(text)}")
    return lines


def _with_translations(node, attr: str, line: str, indent: str = _INDENT) -> list[str]:
    if getattr(node, attr, None) is None and node.translations.get(attr):
        raise ConversionError(f"{attr} is given in some languages but not in the default one; "
                              "the text form writes the default first")
    return [line, *_translations_text(node, attr, indent)]


Chunk = tuple[tuple, list[str]]  # (the anchors of dsl.comments a statement's lines hold, the lines)


def _settings_text(survey: ast.Survey, written: dict[str, str]) -> list[Chunk]:
    chunks: list[Chunk] = []
    if survey.languages:
        for language in survey.languages:
            _require(bool(_LANGUAGE.fullmatch(language)), f"'{language}' is not a language code")
        chunks.append((("languages",), [f"{SETTING['languages'].words} " + ", ".join(survey.languages)]))
    if survey.language_field is not None:
        chunks.append((("language_field",), [
            f"{SETTING['language_field'].words} {_name(survey.language_field, 'language_field')}"]))
    if survey.expires_after != DEFAULT_EXPIRES_AFTER:
        chunks.append((("expires_after",), [
            f"{SETTING['expires_after'].words} {_duration(survey, 'expires_after', written)}"]))
    if survey.remind_after is not None:
        message = f" {quote(survey.remind_message)}" if survey.remind_message is not None else ""
        chunks.append((("remind_after", "remind_message"), _with_translations(
            survey, "remind_message",
            f"{SETTING['remind_after'].words} {_duration(survey, 'remind_after', written)}{message}")))
    else:
        _require(survey.remind_message is None,
                 "remind_message is given without remind_after; the text form writes both on one "
                 "line: remind after 1d \"message\"")
    for key in ("access_code", "sender", "end_message"):
        if getattr(survey, key) is not None or survey.translations.get(key):
            chunks.append(((key,), _with_translations(survey, key, f"{SETTING[key].words} {quote(getattr(survey, key))}")))
        if key == "access_code" and survey.access_code_countries:
            chunks.append((("access_code_countries",), [
                f"{SETTING['access_code_countries'].words} "
                + ", ".join(_name(c, "country code") for c in survey.access_code_countries)]))
    if survey.fields:
        chunks.append((("fields",), [f"{SETTING['fields'].words} " + ", ".join(_name(f, "field") for f in survey.fields)]))
    for key in ("not_in_survey_message", "help_message", "content_sid"):
        if getattr(survey, key) is not None or survey.translations.get(key):
            chunks.append(((key,), _with_translations(survey, key, f"{SETTING[key].words} {quote(getattr(survey, key))}")))
    for number, (name, text) in enumerate(survey.texts.items()):
        anchors = ("texts", f"texts.{name}") if number == 0 else (f"texts.{name}",)  # YAML's `texts:` line
        chunks.append((anchors, [f"{SETTING['texts'].words} {_name(name, 'text key')} {quote(text)}",
                                 *_translations_text(survey, f"texts.{name}", _INDENT)]))
    return chunks


def _ask_text(ask: ast.Ask) -> list[str]:
    _require(bool(_QTYPE.fullmatch(ask.type)), f"question '{ask.id}' has type '{ask.type}', not a lowercase word")
    head = f"ask {_name(ask.id, 'question id')} {ask.type} {quote(ask.prompt)}"
    if ask.show_if is not None:
        head += f" if {to_source(ask.show_if)}"
    lines = [head, *_translations_text(ask, "prompt", _INDENT)]
    for choice in ask.choices:
        _require(bool(_CODE.fullmatch(choice.code)) and choice.code not in STATEMENT_WORDS,
                 f"choice code '{choice.code}' of question '{ask.id}' cannot be written in the text form "
                 "(use 1 to 8 letters or digits that are not a keyword)")
        lines.append(f"{_INDENT}{choice.code} {quote(choice.label)}")
        lines += _translations_text(choice, "label", _INDENT * 2)
        if choice.match:
            lines.append(f"{_INDENT * 2}{MATCH_WORD} " + ", ".join(quote(word) for word in choice.match))
    if ask.invalid_message is not None or ask.translations.get("invalid_message"):
        lines += _with_translations(ask, "invalid_message", f"{_INDENT}invalid {quote(ask.invalid_message)}",
                                    _INDENT * 2)
    if ask.attempts is not None:
        lines.append(f"{_INDENT}attempts {_count(ask.attempts, 'attempts')}")
    if ask.on_invalid is not None:
        _require(ask.on_invalid in ON_INVALID, f"on_invalid of question '{ask.id}' must be skip or end")
        lines.append(f"{_INDENT}then {ask.on_invalid}")
    if ask.max_length is not None:
        lines.append(f"{_INDENT}max length {_count(ask.max_length, 'max_length')}")
    for attr, word in (("min_value", "min"), ("max_value", "max")):
        if getattr(ask, attr) is not None:
            lines.append(f"{_INDENT}{word} {getattr(ask, attr)!r}")
    if ask.decimal:
        lines.append(f"{_INDENT}decimal")
    return lines


def _element_text(element: ast.Element) -> list[str]:
    match element:
        case ast.Ask():
            return _ask_text(element)
        case ast.Set():
            return [f"set {_name(element.name, 'set name')} = {to_source(element.value)}"]
        case ast.Goto():
            cond = f" if {to_source(element.cond)}" if element.cond is not None else ""
            return [f"goto {_name(element.target, 'goto target', _END_ID)}{cond}"]
        case ast.End():
            _require(element.id != "message", "an end named 'message' would read as the end message setting")
            message = f" {quote(element.message)}" if element.message is not None else ""
            return _with_translations(element, "message", f"end {_name(element.id, 'end id', _END_ID)}{message}")
    raise TypeError(f"not a flow element: {element!r}")


def _commented(chunk: Chunk, comments: Comments | None) -> list[str]:
    """A statement's lines with its comments: those above it, then the one beside its first line
    (a second, when two anchors share the line, goes above)."""
    anchors, lines = chunk
    if comments is None:
        return lines
    above, beside = [], []
    for anchor in anchors:
        texts, text = comments.take(anchor)
        above += texts
        beside += [text] if text else []
    if not lines:  # an anchor with no line of its own in this form
        return [*above, *beside]
    first = f"{lines[0]}  {beside[0]}" if beside else lines[0]
    return [*above, *beside[1:], first, *lines[1:]]


def to_text(survey: ast.Survey, source: str | None = None, comments: Comments | None = None) -> str:
    """The survey in the text form; ConversionError when it holds something that form cannot write.
    With the file's source, durations keep their spelling, and with its comments (dsl.comments),
    each is written at its anchor."""
    _require(bool(_SLUG.fullmatch(survey.id)), f"survey id '{survey.id}' has characters the text form cannot hold")
    head = f"survey {survey.id}" + (f" {quote(survey.title)}" if survey.title is not None else "")
    chunks = [(("survey", "title"), _with_translations(survey, "title", head)),
              *_settings_text(survey, written_durations(survey, source))]
    lines = [c.text for c in comments.top] if comments else []
    for chunk in chunks:
        lines += _commented(chunk, comments)
    lines.append("")
    if comments is not None:  # YAML's `flow:` line: its comments go above the first element
        lines += _commented((("flow",), []), comments)
    for index, element in enumerate(survey.elements):
        lines += _commented(((index,), _element_text(element)), comments)
    lines += [c.text for c in comments.bottom] if comments else []
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- JSON (golden tests)


def survey_to_json(survey: ast.Survey) -> dict:
    """The whole AST as JSON-able data, positions included (not the file path)."""
    return _plain(survey)


def _plain(value):
    if dataclasses.is_dataclass(value):
        out = {"node": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.name != "path" and not ast.late_and_default(value, f):
                out[f.name] = _plain(getattr(value, f.name))
        return out
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- command


def read_for_command(path: str) -> tuple[ast.Survey | None, str, int]:
    """(survey, source, 0) or, after printing the diagnostics to stderr, (None, source, exit status):
    2 when the file cannot be read (or is empty, as `canvass check` says), 1 when it does not parse."""
    try:
        source = read_source(path)
    except FlowError as err:
        print("\n".join(d.render() for d in err.diagnostics), file=sys.stderr)
        return None, "", 2
    try:
        return parse_source(source, str(path)), source, 0
    except FlowError as err:
        print("\n".join(d.render(source) for d in err.diagnostics), file=sys.stderr)
        return None, source, 2 if unreadable(err.diagnostics) else 1


def run_convert(path: str, to: str) -> int:
    """`canvass convert FILE --to yaml|text`: print the flow in the asked-for form."""
    survey, source, status = read_for_command(path)
    if survey is None:
        return status
    comments = read_comments(survey, source, form_of(path))
    try:
        out = to_yaml(survey, source, comments) if to == "yaml" else to_text(survey, source, comments)
    except ConversionError as err:
        print(f"{path}: error: cannot write this survey in the text form: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    for comment, why in comments.not_kept():
        print(f"{path}:{comment.line}: comment not kept: {comment.text} ({why})", file=sys.stderr)
    return 0
