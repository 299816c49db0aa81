"""The built-in texts: every shipped language has every text with the same placeholders, a
survey's `texts` override them per language, and a flow compiles them once per language."""

import re

import pytest

from dsl import vocabulary
from dsl.load import parse_source
from engine import texts
from engine.flow import compile_flow
from engine.questions import QUESTION_TYPES

KEYS = set(vocabulary.BUILTIN_TEXTS) | set(vocabulary.SETTING_TEXTS)


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{[a-z_]+\}", text))


def test_the_shipped_languages_are_the_vocabularys():
    assert tuple(texts.BUILTIN) == vocabulary.BUILTIN_LANGUAGES


@pytest.mark.parametrize("language", vocabulary.BUILTIN_LANGUAGES)
def test_every_language_has_every_text_with_the_same_placeholders(language):
    own = texts.BUILTIN[language]
    assert set(own) == KEYS
    for key, text in own.items():
        assert placeholders(text) == placeholders(texts.BUILTIN["en"][key]), key
        assert placeholders(text) <= set(vocabulary.BUILTIN_TEXTS.get(key, ())), key
        assert text == text.strip() or key == "reminder_prefix", key


def test_stop_stays_stop_in_every_language():
    for language, own in texts.BUILTIN.items():
        assert "STOP" in own["help"] and "STOP" in own["opt_out_link"], language


def test_a_region_falls_back_to_its_language_and_an_unknown_one_to_english():
    assert texts.builtin("pt-BR")["help"] == texts.BUILTIN["pt"]["help"]
    assert texts.builtin("it")["help"] == texts.BUILTIN["en"]["help"]
    assert texts.builtin(None) is texts.builtin("en")


def test_numbers_are_written_as_the_language_writes_them():
    assert [texts.format_number(v, lang) for v, lang in ((7.5, "en"), (7.5, "es"), (7.0, "fr"), (12, "de"))] == \
        ["7.5", "7,5", "7", "12"]


def test_fill_replaces_only_its_placeholders():
    assert texts.fill("{codes} and {other} ${e://Field/x}", codes="1, 2") == "1, 2 and {other} ${e://Field/x}"


SURVEY = """\
survey: languages
languages: [en, pt, de]
texts:
  invalid_choice: {en: "Choose {codes}.", pt: "Escolha {codes}.", de: "Wählen Sie {codes}."}
flow:
  - ask: pick
    type: choice
    prompt: {en: "Pick one", pt: "Escolha um", de: "Wählen Sie"}
    choices:
      - {en: "Red", pt: "Vermelho", de: "Rot"}
      - {en: "Blue", pt: "Azul", de: "Blau"}
  - ask: count
    type: number
    prompt: {en: "How many?", pt: "Quantos?", de: "Wie viele?"}
    max: 10
"""


def test_a_flow_compiles_each_languages_texts_once():
    flow = compile_flow(parse_source(SURVEY, "x.yaml"), SURVEY, "yaml")
    assert set(flow.languages) == {"en", "pt", "de"}
    pick, count = flow.questions["pick"], flow.questions["count"]
    assert pick.message["de"](None) == "Wählen Sie\n1. Rot\n2. Blau"
    assert [pick.invalid[lang](None) for lang in ("en", "pt", "de")] == \
        ["Choose 1, 2.", "Escolha 1, 2.", "Wählen Sie 1, 2."]
    assert count.invalid["pt"](None) == "Responda com um número de no máximo 10."
    assert count.invalid["de"](None) == "Bitte antworten Sie mit einer Zahl bis 10."
    assert flow.language("de").texts["reminder_prefix"] == "Erinnerung: "
    assert flow.language("").code == "en" and flow.language("xx").code == "en"
    assert pick.read["pt"]("azul") == "2" and pick.read["de"]("ROT") == "1"


def test_the_expected_message_of_every_type_exists_in_every_language():
    survey = parse_source(SURVEY, "x.yaml")
    for language in vocabulary.BUILTIN_LANGUAGES:
        for ask in survey.questions:
            assert QUESTION_TYPES[ask.type].expected(ask, texts.builtin(language), language)


NAMED = """\
survey: named
languages: [en, es, pt-BR]
language_field: Idioma
flow:
  - ask: n
    type: number
    prompt: {en: "How many?", es: "¿Cuántos?", pt-BR: "Quantos?"}
"""


@pytest.mark.parametrize(("source", "fields", "language"), [
    (NAMED, {"Idioma": "ES"}, "es"), (NAMED, {"Idioma": " es-MX "}, "es"), (NAMED, {"Idioma": "Español"}, "es"),
    (NAMED, {"Idioma": "pt"}, "pt-BR"), (NAMED, {"Idioma": "Deutsch"}, "en"), (NAMED, {"Idioma": ""}, "en"),
    (NAMED, {"Language": "es"}, "en"),  # the survey names another field
    (SURVEY, {"LANGUAGE": "Deutsch"}, "de"), (SURVEY, {"Language": "pt-BR"}, "pt"), (SURVEY, {}, "en"),
])
def test_the_contact_field_picks_the_language(source, fields, language):
    flow = compile_flow(parse_source(source, "x.yaml"), source, "yaml")
    assert flow.language_of(fields) == language


def test_a_survey_in_one_language_other_than_english_speaks_it_throughout():
    source = 'survey: solo\nlanguages: [es]\nflow:\n  - ask: n\n    type: nps\n    prompt: "¿Nos recomendaría? Responda 0-10."\n'
    flow = compile_flow(parse_source(source, "x.yaml"), source, "yaml")
    assert flow.questions["n"].invalid["es"](None) == "Responda con un número del 0 al 10."
    assert flow.endings["(end)"].message["es"](None) == texts.BUILTIN["es"]["end"]
    assert flow.language("").help(None) == texts.BUILTIN["es"]["help"]
