"""The paths a respondent can really take (dsl/feasible.py): path counts, conditions that never
hold and elements no answers reach, held against brute force over every combination of answers."""

from __future__ import annotations

import random
from itertools import product

import pytest

from dsl import ast
from dsl.expr import ChoiceValue, compile_expr, truthy
from dsl.feasible import Feasible
from dsl.flowgraph import Paths
from dsl.load import parse_source


def analyse(source: str) -> Feasible:
    survey = parse_source(source, "x.survey")
    return Feasible(survey, Paths(survey).succ)


def brute_force(survey: ast.Survey) -> tuple[set[tuple], set[int]]:
    """Every decision sequence some answers produce, and every element index some answers reach,
    by running the flow on each combination of NPS and choice answers (no question may go unanswered)."""
    asks = [e for e in survey.elements if isinstance(e, ast.Ask) and e.type in ("nps", "choice")]
    domains = [list(range(11)) if a.type == "nps" else [ChoiceValue(c.code, c.label) for c in a.choices]
               for a in asks]
    succ = Paths(survey).succ
    decisions, reached = set(), set()

    def test(expr: ast.Expr, answers: dict) -> bool:
        return truthy(compile_expr(expr, lambda name: lambda values: values.get(name))(answers))

    for combination in product(*domains):
        answers, given = {}, dict(zip((a.id for a in asks), combination, strict=True))
        i, path = 0, []
        while i < len(survey.elements):
            reached.add(i)
            element = survey.elements[i]
            if isinstance(element, ast.End):
                break
            if isinstance(element, ast.Ask):
                shown = element.show_if is None or test(element.show_if, answers)
                path.append((i, shown))
                if shown:
                    answers[element.id] = given.get(element.id, "text")
                i += 1
            elif isinstance(element, ast.Goto):
                taken = element.cond is None or test(element.cond, answers)
                path.append((i, taken))
                i = succ[i][-1] if taken else i + 1
            else:
                if isinstance(element, ast.Set):
                    answers[element.name] = compile_expr(element.value, lambda name: lambda values: values.get(name))(answers)
                i += 1
        decisions.add(tuple(path))
    return decisions, reached


EXCLUSIVE = """\
survey x
ask n nps "Reply 0-10"
ask low text "Why?" if n <= 6
ask mid text "Why?" if n in [7, 8]
ask high text "Why?" if n >= 9
"""


def test_a_set_some_paths_skip_is_not_assumed():
    """On the path that jumps over the set it has no value: its condition tells nothing there."""
    found = analyse('survey x\nask n nps "0-10"\ngoto b if n >= 5\nset s = "p" if n >= 9 else "o"\n'
                    'ask b text "?" if s == "p"\n')
    assert (found._sets_at("s", 4), found.never_true) == (False, [])


def test_a_number_question_in_a_small_range_is_followed_like_nps():
    found = analyse('survey x\nask k number "1-5"\n    min 1\n    max 5\ngoto done if k >= 3\n'
                    'ask a text "?" if k >= 4\nend done\n')
    assert (found.paths, [c.index for c in found.never_true], found.describe(2, "k")) == (2, [2], "1-2")


def test_exclusive_follow_ups_make_one_path_each():
    # Counted as independent they made 8 paths; a respondent takes one of 3.
    found = analyse(EXCLUSIVE)
    assert (found.paths, found.most_asked, found.never_true) == (3, 2, [])


CASES = [
    # (flow body after an nps `n` and a choice `c` with codes 1-3, paths, conditions that never hold)
    ('goto done if n >= 9\nask a text "?" if n <= 6\nend done\n', 3, []),
    ('goto done if n >= 9\nask a text "?" if n >= 9\nend done\n', 2, ["a"]),
    ('ask a text "?" if n <= 6 and n >= 9\n', 1, ["a"]),
    ('ask a text "?" if not (n <= 6 or n >= 7)\n', 1, ["a"]),
    ('ask a text "?" if c == "Red" and n > 5\nask b text "?" if c == 1 or c == "Blue"\n', 3, []),
    ('goto done if c in ["Red", "Blue"]\nask a text "?" if c != 3\nend done\n', 2, ["a"]),
    ('ask a text "?" if n > 10\n', 1, ["a"]),
    ('ask a text "?"\nask b text "?" if a contains "x" and n == 3\n', 2, []),  # text answers: no information
    ('goto done if true\nask a text "?"\nend done\n', 1, []),
    ('goto done if 1 == 2\nask a text "?"\nend done\n', 1, ["done"]),
    ('ask a text "?" if n is not answered\n', 1, ["a"]),
    # a set worked out from answers alone stands for them where every path has set it
    ('set seg = "p" if n >= 9 else "o"\ngoto done if seg == "p"\nask a text "?" if n >= 9\nend done\n', 2, ["a"]),
    ('set big = n > 5 and c == 1\nask a text "?" if big\nask b text "?" if big and n < 3\n', 2, ["b"]),
]


@pytest.mark.parametrize(("body", "paths", "never"), CASES, ids=[c[0].split("\n")[0] for c in CASES])
def test_paths_and_conditions_that_never_hold(body, paths, never):
    source = 'survey x\nask n nps "0-10"\nask c choice "?"\n    1 "Red"\n    2 "Blue"\n    3 "Green"\n' + body
    found = analyse(source)
    survey = parse_source(source, "x.survey")
    names = [ast.element_id(survey.elements[c.index]) or survey.elements[c.index].target for c in found.never_true]
    assert (found.paths, names) == (paths, never)
    decisions, reached = brute_force(survey)
    assert found.paths == len(decisions)
    assert [i for i, r in enumerate(found.reached) if r] == sorted(reached)


def test_a_question_that_may_go_unanswered_keeps_both_ways_open():
    kept = analyse('survey x\nask n nps "0-10"\n    attempts 2\nask a text "?" if n is not answered\n')
    assert (kept.paths, kept.never_true) == (2, [])
    asked = analyse('survey x\nask n nps "0-10"\nask a text "?" if n is not answered\n')
    assert (asked.paths, len(asked.never_true)) == (1, 1)


def test_the_hint_says_what_answers_reach_a_condition():
    found = analyse('survey x\nask n nps "0-10"\nask c choice "?"\n    1 "Red"\n    2 "Blue"\n'
                    'goto done if n >= 9 or c == 1\nask a text "?" if n == 10 or c == "Red"\nend done\n')
    assert [c.index for c in found.never_true] == [3]
    assert (found.describe(3, "n"), found.describe(3, "c")) == ("0-8", "'Blue'")


def random_flow(rng: random.Random) -> str:
    """A flow of two NPS and one choice question and up to six conditional elements, each
    condition on one question (so the analysis is exact and brute force can check it)."""
    lines = ["survey x", 'ask n nps "0-10"', 'ask m nps "0-10"', 'ask c choice "?"', '    1 "Red"', '    2 "Blue"',
             '    3 "Green"']
    ends = []

    def atom(name: str) -> str:
        if name == "c":
            return rng.choice(['c == "Red"', "c == 2", 'c != "Green"', "c in [1, 3]", "c is answered"])
        op = rng.choice(["<=", ">=", "<", ">", "==", "!="])
        return f"{name} {op} {rng.randint(0, 10)}"

    def condition() -> str:
        name = rng.choice("nmc")
        parts = [atom(name) for _ in range(rng.randint(1, 3))]
        text = f" {rng.choice(['and', 'or'])} ".join(parts)
        return f"not ({text})" if rng.random() < 0.2 else text

    for i in range(rng.randint(2, 6)):
        if rng.random() < 0.4:
            ends.append(f"e{i}")
            lines.append(f"goto e{i} if {condition()}")
        else:
            lines.append(f'ask q{i} text "?" if {condition()}')
    lines += ['end stop "."'] + [f'end {e} "."' for e in ends]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(40))
def test_the_analysis_agrees_with_brute_force_on_random_flows(seed):
    source = random_flow(random.Random(seed))
    survey = parse_source(source, "x.survey")
    found = Feasible(survey, Paths(survey).succ)
    decisions, reached = brute_force(survey)
    assert found.paths == len(decisions), source
    assert [i for i, r in enumerate(found.reached) if r] == sorted(reached), source
    shown = {i for path in decisions for i, yes in path if yes and isinstance(survey.elements[i], ast.Ask)}
    assert {i for i, s in enumerate(found.shown) if s} == shown, source


def test_past_the_state_limit_it_stays_sound(monkeypatch):
    monkeypatch.setattr("dsl.feasible.MAX_STATES", 2)
    for seed in range(40):
        source = random_flow(random.Random(seed))
        survey = parse_source(source, "x.survey")
        found = Feasible(survey, Paths(survey).succ)
        decisions, reached = brute_force(survey)
        assert found.paths >= len(decisions), source
        assert set(reached) <= {i for i, r in enumerate(found.reached) if r}, source
        assert all(found.reached[c.index] for c in found.never_true)
        assert not {c.index for c in found.never_true} & {i for path in decisions for i, yes in path if yes}
