"""dsl/vocabulary.py is the one place the language's words are written: grammar.lark, read here
with lark itself, and the engine's question types must say the same."""

from __future__ import annotations

import dataclasses
import re

import pytest
from lark import Lark

from dsl import ast, vocabulary
from dsl.grammar import grammar_path
from engine.questions import QUESTION_TYPES


@pytest.fixture(scope="module")
def grammar() -> Lark:
    return Lark(grammar_path().read_text(encoding="utf-8"), start=["file", "expression"], parser="lalr")


def _patterns(grammar: Lark) -> dict:
    return {t.name: t.pattern for t in grammar.terminals}


def _words(grammar: Lark, symbols) -> list[str]:
    """The keyword terminals at the start of a rule's expansion, as written ("expires after")."""
    patterns = _patterns(grammar)
    words = []
    for symbol in symbols:
        pattern = patterns.get(symbol.name)
        if not (getattr(symbol, "filter_out", False) and pattern is not None and pattern.type == "str"
                and pattern.value.isalpha()):
            break
        words.append(pattern.value)
    return words


def _rules(grammar: Lark, origin: str) -> dict[str, list[str]]:
    """alias -> leading keywords, for every alternative of a rule (longest spelling kept)."""
    out: dict[str, list[str]] = {}
    for rule in grammar.rules:
        if rule.origin.name == origin and rule.alias:
            words = _words(grammar, rule.expansion)
            if len(words) >= len(out.get(rule.alias, [])):
                out[rule.alias] = words
    return out


def _alternatives(pattern_value: str) -> set[str]:
    body = pattern_value[3:-1] if pattern_value.startswith("(?:") else pattern_value
    return set(body.split("|"))


def test_id_terminals_are_the_vocabulary_patterns(grammar):
    patterns = _patterns(grammar)
    assert patterns["NAME"].value == vocabulary.NAME
    assert patterns["END_ID"].value == vocabulary.END_ID
    assert patterns["SLUG"].value == vocabulary.SURVEY_ID
    assert patterns["CODE"].value.startswith(vocabulary.CHOICE_CODE + "(?=")


def test_question_types_and_on_invalid_values_match(grammar):
    patterns = _patterns(grammar)
    assert _alternatives(patterns["QTYPE"].value) == {vocabulary.QUESTION_TYPE_WORD, *vocabulary.QUESTION_TYPES}
    assert _alternatives(patterns["ON_INVALID"].value) == set(vocabulary.ON_INVALID)


def test_settings_are_spelt_as_the_grammar_reads_them(grammar):
    rules = _rules(grammar, "setting")
    written = {s.rule: s.words.split() for s in vocabulary.SETTINGS if s.rule}
    assert rules == written


def test_options_and_elements_are_spelt_as_the_grammar_reads_them(grammar):
    options = _rules(grammar, "option")
    assert options == {**{o.rule: o.words.split() if o.words else [] for o in vocabulary.OPTIONS},
                       vocabulary.MATCH_WORD: [vocabulary.MATCH_WORD]}
    elements = _rules(grammar, "element")
    assert elements == {word: [word] for word in vocabulary.ELEMENTS}


def test_statement_words_are_the_words_that_open_a_line(grammar):
    opening = {"survey"} | {words[0] for origin in ("setting", "element", "option")
                            for words in _rules(grammar, origin).values() if words}
    assert set(vocabulary.STATEMENT_WORDS) == opening
    assert len(vocabulary.STATEMENT_WORDS) == len(set(vocabulary.STATEMENT_WORDS))


def test_reserved_words_are_the_expression_keywords(grammar):
    patterns = _patterns(grammar)
    by_origin: dict[str, list] = {}
    for rule in grammar.rules:
        by_origin.setdefault(rule.origin.name, []).append(rule)
    seen, todo, words = set(), ["expression"], set()
    while todo:
        origin = todo.pop()
        if origin in seen:
            continue
        seen.add(origin)
        for rule in by_origin.get(origin, []):
            for symbol in rule.expansion:
                if symbol.name in by_origin:
                    todo.append(symbol.name)
                elif (pattern := patterns.get(symbol.name)) is not None and pattern.type == "str" \
                        and pattern.value.isalpha():
                    words.add(pattern.value)
    assert words == vocabulary.RESERVED


def test_yaml_keys_follow_the_settings():
    assert len(set(vocabulary.SURVEY_KEYS)) == len(vocabulary.SURVEY_KEYS)
    assert {s.attr for s in vocabulary.SETTINGS} <= {f.name for f in dataclasses.fields(ast.Survey)}


def test_every_option_is_an_ask_field_and_every_type_has_its_options():
    ask_fields = {f.name for f in dataclasses.fields(ast.Ask)}
    assert {o.attr for o in vocabulary.OPTIONS} <= ask_fields
    assert set(vocabulary.TYPE_OPTIONS) == set(vocabulary.QUESTION_TYPES)
    assert {o for options in vocabulary.TYPE_OPTIONS.values() for o in options} <= {o.attr for o in vocabulary.OPTIONS}


def test_the_engine_implements_exactly_the_vocabulary_question_types():
    assert tuple(QUESTION_TYPES) == vocabulary.QUESTION_TYPES
    assert all(name == kind.name for name, kind in QUESTION_TYPES.items())


def test_the_id_patterns_compile_and_reject_what_they_should():
    assert re.fullmatch(vocabulary.NAME, "recommend") and not re.fullmatch(vocabulary.NAME, "a-b")
    assert re.fullmatch(vocabulary.END_ID, "thank-you") and not re.fullmatch(vocabulary.END_ID, "1st")
    assert re.fullmatch(vocabulary.SURVEY_ID, "store.feedback-2") and not re.fullmatch(vocabulary.SURVEY_ID, "a b")
