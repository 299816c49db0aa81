"""Expression semantics (dsl/expr.py): a table of expression -> value over fixed answers and fields."""

from types import SimpleNamespace

import pytest

from dsl.expr import ChoiceValue, compile_expr
from dsl.expr_parse import parse_expression

VALUES = SimpleNamespace(
    answers={"recommend": 4, "promoter": 10, "zero": 0, "visit": ChoiceValue("2", "Clothing"),
             "size": ChoiceValue("M", "Medium"), "reason": "The PRICE is high"},
    fields={"age": "42", "teen": "17", "name": "Ana", "empty": "", "vip": True, "score": 7.5},
)


def resolve(name):
    if name in ("recommend", "promoter", "zero", "visit", "size", "reason", "skipped"):
        return lambda values: values.answers.get(name)
    return lambda values: (None if values.fields.get(name) == "" else values.fields.get(name))


CASES = [
    # numbers, and numeric strings as numbers
    ("recommend <= 6", True), ("recommend >= 9", False), ("promoter >= 9", True), ("recommend == 4", True),
    ("recommend == \"4\"", True), ("recommend != 4", False), ("age >= 18", True), ("teen >= 18", False),
    ("age == 42", True), ("age > teen", True), ("score > 7", True), ("score == 7.5", True),
    ("-1 < zero", True),
    # choice answers: equal to code and label (case-insensitive), ordered by code
    ("visit == \"Clothing\"", True), ("visit == \"clothing\"", True), ("visit == 2", True),
    ("visit == \"2\"", True), ("visit == 1", False), ("visit != \"Groceries\"", True),
    ("visit in [1, \"Clothing\"]", True), ("visit in [1, 3]", False), ("visit not in [\"1\", \"3\"]", True),
    ("visit >= 2", True), ("visit < 2", False), ("size == \"m\"", True), ("size == \"MEDIUM\"", True),
    # text
    ("reason contains \"price\"", True), ("reason contains \"cost\"", False), ("name == \"ana\"", True),
    ("name contains \"AN\"", True), ("name < \"Bob\"", True),
    # missing values: skipped answers, absent and empty fields
    ("skipped is answered", False), ("skipped is not answered", True), ("recommend is answered", True),
    ("skipped == 4", False), ("skipped != 4", True), ("skipped < 4", False), ("skipped >= 4", False),
    ("skipped in [4, 5]", False), ("skipped not in [4, 5]", True), ("skipped contains \"a\"", False),
    ("nothing == \"\"", False), ("empty is answered", False), ("empty == \"\"", False),
    ("nothing > 1", False), ("name == nothing", False),
    # booleans, truthiness, conditionals
    ("vip == true", True), ("vip", True), ("not vip", False), ("zero", 0), ("not zero", True), ("visit and reason", True),
    ("skipped or zero", False), ("skipped or recommend", True), ("not skipped", True),
    ("recommend >= 9 or visit == 2 and not skipped is answered", True),
    ("\"promoter\" if promoter >= 9 else \"other\"", "promoter"),
    ("\"promoter\" if recommend >= 9 else \"passive\" if recommend >= 7 else \"detractor\"", "detractor"),
    ("visit if skipped is answered else name", "Ana"),
    ("true if vip == true and recommend != 10 else false", True),
    ("[1, 2]", [1, 2]), ("name == 42", False), ("name > 3", False),
]


@pytest.mark.parametrize(("source", "expected"), CASES, ids=[c[0] for c in CASES])
def test_expression(source, expected):
    value = compile_expr(parse_expression(source), resolve)(VALUES)
    assert value == expected and type(value) is type(expected)


def test_names_resolve_once_at_compile_time():
    asked = []

    def counting(name):
        asked.append(name)
        return resolve(name)

    test = compile_expr(parse_expression("recommend >= 9 or visit in [1, recommend]"), counting)
    for _ in range(3):
        test(VALUES)
    assert asked == ["recommend", "visit", "recommend"]


def test_choice_value_shows_its_label():
    assert str(ChoiceValue("2", "Clothing")) == "Clothing"
