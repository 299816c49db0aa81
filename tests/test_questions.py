"""Each question type against a table of replies: what it stores, or None for an invalid reply."""

import pytest

from dsl import ast, vocabulary
from dsl.expr import ChoiceValue
from engine import texts
from engine.questions import QUESTION_TYPES, Ambiguous

NPS = ast.Ask(id="q", type="nps", prompt="Rate us 0-10")
CHOICE = ast.Ask(id="q", type="choice", prompt="What did you shop for today?",
                 choices=[ast.Choice("1", "Groceries"), ast.Choice("2", "Clothing"),
                          ast.Choice("3", "Home & garden")])
LETTERS = ast.Ask(id="q", type="choice", prompt="Arrived on time?",
                  choices=[ast.Choice("Y", "Yes"), ast.Choice("N", "No"), ast.Choice("2", "1")])
MAYBE = ast.Ask(id="q", type="choice", prompt="Viendrez-vous ?",
                choices=[ast.Choice("1", "Oui"), ast.Choice("2", "Peut-être"), ast.Choice("12", "Jamais")])
SI = ast.Ask(id="q", type="choice", prompt="¿Viene?", choices=[
    ast.Choice("1", "Sí", match=["claro", "yes"]), ast.Choice("2", "No"),
    ast.Choice("3", "Quizás más tarde", match=["tarde"]), ast.Choice("4", "Más tarde", match=["tarde"])])
COUNT = ast.Ask(id="q", type="number", prompt="How many?", min_value=1, max_value=20)
RATING = ast.Ask(id="q", type="number", prompt="Rate 0-10", min_value=0, max_value=10, decimal=True)
ANY = ast.Ask(id="q", type="number", prompt="Any number")
TEXT = ast.Ask(id="q", type="text", prompt="Why?")
SHORT = ast.Ask(id="q", type="text", prompt="Why?", max_length=5)

CASES = [
    (NPS, "0", 0), (NPS, "10", 10), (NPS, "10!", 10), (NPS, " 7 ", 7), (NPS, "8.", 8),
    (NPS, "07", 7), (NPS, "9?!", 9), (NPS, "\t5\n", 5),
    (NPS, "11", None), (NPS, "-1", None), (NPS, "7.5", None), (NPS, "seven", None),
    (NPS, "", None), (NPS, "1 0", None), (NPS, "100", None), (NPS, "!7", None), (NPS, "7 stars", None),
    (CHOICE, "1", "1"), (CHOICE, " 2. ", "2"), (CHOICE, "(3)", "3"), (CHOICE, "clothing", "2"),
    (CHOICE, "GROCERIES!", "1"), (CHOICE, "home  &  garden", "3"), (CHOICE, "Home & Garden.", "3"),
    (CHOICE, "4", None), (CHOICE, "Cloth", None), (CHOICE, "1 2", None), (CHOICE, "", None),
    (CHOICE, "...", None), (CHOICE, "0", None),
    (LETTERS, "y", "Y"), (LETTERS, "N.", "N"), (LETTERS, "yes", "Y"), (LETTERS, "NO", "N"),
    (LETTERS, "1", "2"),  # no code 1: the label "1" matches
    (LETTERS, "2", "2"), (LETTERS, "maybe", None),
    (TEXT, "Because", "Because"), (TEXT, "  padded  ", "padded"), (TEXT, "10", "10"),
    (TEXT, "😀", "😀"), (TEXT, "", None), (TEXT, "   ", None), (TEXT, "x" * 1600, "x" * 1600),
    (TEXT, "x" * 1601, None),
    (SHORT, "12345", "12345"), (SHORT, "123456", None), (SHORT, " 12345 ", "12345"),
    (SI, "si", "1"), (SI, "Sí", "1"), (SI, "SI!", "1"), (SI, " ¡sí! ", "1"), (SI, "CLARO.", "1"),
    (SI, "Yes", "1"), (SI, "no", "2"), (SI, "NO!", "2"), (SI, "quizas mas tarde", "3"), (SI, "MÁS TARDE", "4"),
    (MAYBE, "PEUT ETRE", "2"), (MAYBE, "Peutêtre", "2"), (MAYBE, "peut - être !", "2"), (MAYBE, "1 2", None),
    (MAYBE, "12", "12"),
    (SI, "sip", None), (SI, "tarde", Ambiguous((("3", "Quizás más tarde"), ("4", "Más tarde")))),
    (COUNT, "1", 1), (COUNT, "20", 20), (COUNT, " 7! ", 7), (COUNT, "0", None), (COUNT, "21", None),
    (COUNT, "7.5", None), (COUNT, "7.0", 7), (COUNT, "seven", None), (COUNT, "", None), (COUNT, "1 2", None),
    (RATING, "7.5", 7.5), (RATING, "10", 10), (RATING, "10.5", None), (RATING, "-1", None),
    (RATING, "7,5", None),  # English reads no decimal comma
    (ANY, "-3", -3), (ANY, "+4", 4), (ANY, "123456", 123456), (ANY, "2.5", None),
]


@pytest.mark.parametrize(("ask", "reply", "stored"), CASES,
                         ids=[f"{a.type}{'-' + str(a.max_length) if a.max_length else ''}:{r[:12]!r}"
                              for a, r, _ in CASES])
def test_parse(ask, reply, stored):
    assert QUESTION_TYPES[ask.type].parse(ask, reply) == stored


@pytest.mark.parametrize(("ask", "expected"), [
    (NPS, "Please reply with a number from 0 to 10."),
    (CHOICE, "Please reply with one of: 1, 2, 3."),
    (LETTERS, "Please reply with one of: Y, N, 2."),
    (TEXT, "Please reply with some text (up to 1600 characters)."),
    (SHORT, "Please reply with some text (up to 5 characters)."),
])
def test_default_invalid_message(ask, expected):
    assert QUESTION_TYPES[ask.type].expected(ask) == expected


@pytest.mark.parametrize(("ask", "message"), [
    (NPS, "Rate us 0-10"),
    (CHOICE, "What did you shop for today?\n1. Groceries\n2. Clothing\n3. Home & garden"),
    (LETTERS, "Arrived on time?\nY. Yes\nN. No\n2. 1"),
    (TEXT, "Why?"),
])
def test_message(ask, message):
    assert QUESTION_TYPES[ask.type].message(ask, ask.prompt) == message


@pytest.mark.parametrize(("ask", "stored", "value", "record", "piped"), [
    (NPS, 7, 7, 7, "7"),
    (CHOICE, "2", ChoiceValue("2", "Clothing"), {"code": "2", "label": "Clothing"}, "Clothing"),
    (TEXT, "Because", "Because", "Because", "Because"),
])
def test_stored_answer_views(ask, stored, value, record, piped):
    kind = QUESTION_TYPES[ask.type]
    assert (kind.value(ask, stored), kind.record(ask, stored), kind.piped(ask, stored)) == (value, record, piped)


def test_registry_covers_the_language_types():
    assert set(QUESTION_TYPES) == set(vocabulary.QUESTION_TYPES)
    assert all(name == kind.name for name, kind in QUESTION_TYPES.items())


@pytest.mark.parametrize(("reply", "language", "stored"), [
    ("7,5", "es", 7.5), ("7.5", "es", 7.5), ("7,5", "fr", 7.5), ("7,5", "pt-BR", 7.5), ("7,5", "de", 7.5),
    ("7,5", "en", None), ("7,50", "es", 7.5), ("10,5", "es", None), ("3,0", "es", 3),
])
def test_numbers_are_read_in_the_respondents_format(reply, language, stored):
    assert QUESTION_TYPES["number"].parse(RATING, reply, language) == stored


def test_a_choice_is_matched_in_the_respondents_language_and_the_default():
    ask = ast.Ask(id="q", type="choice", prompt="Come?", choices=[
        ast.Choice("1", "Yes", translations={"label": {"es": "Sí", "fr": "Oui"}}),
        ast.Choice("2", "No", translations={"label": {"es": "No", "fr": "Non"}})])
    kind = QUESTION_TYPES["choice"]
    assert [kind.parse(ask, reply, "fr") for reply in ("oui", "YES", "non", "si")] == ["1", "1", "2", None]
    assert kind.message(ask, "Venez-vous ?", "fr") == "Venez-vous ?\n1. Oui\n2. Non"
    assert kind.record(ask, "1", "fr") == {"code": "1", "label": "Yes", "shown": "Oui"}
    assert kind.record(ask, "1") == {"code": "1", "label": "Yes"}
    assert kind.piped(ask, "2", "es") == "No" and kind.value(ask, "1").label == "Yes"


def test_number_explanations_say_the_range_in_the_language():
    kind = QUESTION_TYPES["number"]
    assert kind.expected(COUNT) == "Please reply with a number from 1 to 20."
    assert kind.expected(ANY) == "Please reply with a whole number."
    assert kind.expected(RATING, texts.builtin("es"), "es") == "Responda con un número del 0 al 10."
    half = ast.Ask(id="q", type="number", prompt="?", min_value=0.5, decimal=True)
    assert kind.expected(half, texts.builtin("fr"), "fr") == "Veuillez répondre par un nombre d'au moins 0,5."
