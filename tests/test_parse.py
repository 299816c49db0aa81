"""Parser goldens (flow file -> AST JSON, positions included) and property tests for both parsers.

Regenerate the goldens after a deliberate change with CANVASS_REGEN=1 and review the diff.
"""

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import ast, vocabulary
from dsl.convert import survey_to_json, to_text, to_yaml
from dsl.errors import FlowError
from dsl.grammar import grammar_path
from dsl.load import load_file, parse_source

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
SOURCES = sorted([*(ROOT / "surveys").glob("*.yaml"), *(ROOT / "surveys").glob("*.survey"),
                  *(ROOT / "tests" / "flows" / "good").glob("*.yaml"),
                  *(ROOT / "tests" / "flows" / "good").glob("*.survey")])
REGEN = os.environ.get("CANVASS_REGEN") == "1"


def golden_path(source: Path) -> Path:
    return GOLDEN / f"{source.name}.json"


def test_sources_have_distinct_golden_names():
    names = [golden_path(s).name for s in SOURCES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_golden_ast(source: Path):
    survey, _ = load_file(source)
    actual = json.dumps(survey_to_json(survey), indent=1, ensure_ascii=False) + "\n"
    golden = golden_path(source)
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"no golden for {source.name}: run CANVASS_REGEN=1 pytest tests/test_parse.py"
    assert actual == golden.read_text(encoding="utf-8")


def test_every_golden_has_a_source():
    expected = {golden_path(s).name for s in SOURCES}
    stale = [g for g in GOLDEN.glob("*.json") if g.name not in expected]
    if REGEN:
        for g in stale:
            g.unlink()
        stale = []
    assert stale == []


def test_golden_records_positions():
    survey, _ = load_file(ROOT / "tests" / "flows" / "good" / "lang_comments.survey")
    data = survey_to_json(survey)
    ask = data["elements"][0]
    assert (data["line"], ask["node"], ask["line"], ask["col"]) == (3, "Ask", 9, 1)
    assert ask["choices"][1] == {"node": "Choice", "code": "2", "label": "Blue", "line": 12, "col": 5}
    assert ask["spans"]["prompt"] == [9, 18]


# ---------------------------------------------------------------- any input -> FlowError, never a crash

GOOD_TEXTS = [(p.suffix, p.read_text(encoding="utf-8")) for p in SOURCES]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), suffix=st.sampled_from([".yaml", ".survey"]))
def test_arbitrary_text_raises_only_flow_errors(text, suffix):
    try:
        parse_source(text, "x" + suffix)
    except FlowError as err:
        assert err.diagnostics


@st.composite
def mangled_flow(draw):
    """A good flow file with a slice cut out or random text put in."""
    suffix, text = draw(st.sampled_from(GOOD_TEXTS))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 40)))
    insert = draw(st.text(alphabet=st.sampled_from(" \t\n\"'\\#:-[]{}()=<>!,|&*@`~$0aZ_\u00e9"), max_size=6))
    return suffix, text[:start] + insert + text[end:]


@settings(max_examples=400, deadline=None)
@given(mangled_flow())
def test_mangled_flows_raise_only_flow_errors(case):
    suffix, text = case
    try:
        parse_source(text, "x" + suffix)
    except FlowError as err:
        assert all(d.line >= 0 and d.col >= 0 and d.code for d in err.diagnostics)


# ---------------------------------------------------------------- generated surveys round-trip

KEYWORDS = frozenset(re.findall(r'"([a-z]+)"', grammar_path().read_text(encoding="utf-8")))
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
codes = st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True).filter(lambda c: c not in KEYWORDS)
slugs = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}", fullmatch=True)
# Any text a person could type, plus the characters both forms must quote or escape.
texts = st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from("\n\t\"'\\#:${}[]-"),
                max_size=30)
durations = st.integers(1, 10**7)
counts = st.integers(0, 10_000)


def optional(strategy):
    return st.none() | strategy


literals = st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False),
                     st.booleans(), texts).map(lambda v: ast.Literal(value=v))
name_exprs = names.map(lambda n: ast.Name(name=n))


def compound(children):
    return st.one_of(
        st.builds(ast.Compare, op=st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), left=children, right=children),
        st.builds(ast.In, item=children, options=st.lists(children, max_size=3).map(lambda i: ast.ListExpr(items=i)),
                  negated=st.booleans()),
        st.builds(ast.Contains, text=children, part=children),
        st.builds(ast.Answered, target=name_exprs, negated=st.booleans()),
        st.builds(ast.Not, operand=children),
        st.builds(ast.BoolOp, op=st.sampled_from(["and", "or"]), operands=st.lists(children, min_size=2, max_size=3)),
        st.builds(ast.Conditional, then=children, cond=children, otherwise=children),
        st.lists(children, max_size=3).map(lambda i: ast.ListExpr(items=i)),
    )


expressions = st.recursive(literals | name_exprs, compound, max_leaves=10)
numbered_choices = st.lists(texts, max_size=4).map(
    lambda labels: [ast.Choice(code=str(n), label=label) for n, label in enumerate(labels, start=1)])
coded_choices = st.lists(st.builds(ast.Choice, code=codes, label=texts), max_size=4)
asks = st.builds(ast.Ask, id=names, type=st.sampled_from(vocabulary.QUESTION_TYPES), prompt=texts,
                 show_if=optional(expressions), choices=numbered_choices | coded_choices,
                 invalid_message=optional(texts), attempts=optional(counts),
                 on_invalid=optional(st.sampled_from(["skip", "end"])), max_length=optional(counts))
elements = st.one_of(asks, st.builds(ast.Set, name=names, value=expressions),
                     st.builds(ast.Goto, target=names, cond=optional(expressions)),
                     st.builds(ast.End, id=names, message=optional(texts)))


@st.composite
def surveys(draw):
    remind_after = draw(optional(durations))
    return ast.Survey(
        id=draw(slugs), title=draw(optional(texts)), expires_after=draw(durations),
        access_code=draw(optional(texts)), end_message=draw(optional(texts)), sender=draw(optional(texts)),
        fields=draw(st.lists(names, max_size=3)), remind_after=remind_after,
        remind_message=draw(optional(texts)) if remind_after is not None else None,
        not_in_survey_message=draw(optional(texts)), help_message=draw(optional(texts)),
        content_sid=draw(optional(texts)), elements=draw(st.lists(elements, max_size=6)))


ROUND_TRIP = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROUND_TRIP
@given(surveys())
def test_generated_surveys_round_trip_through_yaml(survey):
    assert parse_source(to_yaml(survey), "x.yaml") == survey


@ROUND_TRIP
@given(surveys())
def test_generated_surveys_round_trip_through_text(survey):
    assert parse_source(to_text(survey), "x.survey") == survey


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_generated_expressions_round_trip(expr):
    survey = ast.Survey(id="s", elements=[ast.Set(name="x", value=expr)])
    assert parse_source(to_text(survey), "x.survey").elements[0].value == expr
    assert parse_source(to_yaml(survey), "x.yaml").elements[0].value == expr
