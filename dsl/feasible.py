"""The paths a respondent can really take: which elements some answers reach, which conditions
can never hold, and the count and cost of the paths that can happen.

A small abstract interpretation over the acyclic element graph (dsl/flowgraph.py). Along each
path it keeps, for every NPS, choice and small whole-number question, the set of answers still
possible there (NPS 0-10, a choice's codes, min..max, and "unanswered" when the question may
have been skipped), narrowed by
each show_if shown or skipped and each goto taken or not. A condition is judged by evaluating it
with the real expression semantics (dsl/expr.py) on every answer still possible, so the analysis
agrees with the engine. It is conservative: a condition naming anything else (a text answer, a
field, a set) narrows nothing, and several questions in one comparison narrow each one only as
far as the possible combinations allow; so what it reports impossible is impossible.

Paths that lead to the same element with the same possible answers are merged (their counts
added), keeping only the questions a later condition names; past MAX_STATES at one element the
sets are joined into one, which loses precision but never soundness.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

from dsl import ast
from dsl.expr import ChoiceValue, compile_expr, truthy
from dsl.vocabulary import DEFAULT_ON_INVALID

UNANSWERED = -1  # the index standing for "no answer" in a question's set of possible answers
_NOT_ASKED = frozenset({UNANSWERED})
MAX_STATES = 256  # distinct sets of possible answers kept at one element before they are joined
MAX_NUMBER_RANGE = 100  # a number question with at most this many answers is followed like NPS
MAX_COMBINATIONS = 4096  # answer combinations one condition is evaluated on before it is given up on

# The answers still possible: (question number, frozenset of answer indexes) for each tracked
# question asked on the path so far that a condition at or after this point names, in question
# order. A tracked question missing from it has not been asked: its only possibility is no answer.
State = tuple


@dataclass
class Tally:
    """What the paths arriving somewhere with one state have in common."""

    paths: int
    low: int  # the least cost so far
    high: int  # the most cost so far
    asked: int  # the most questions asked so far

    def merge(self, other: Tally) -> None:
        self.paths += other.paths
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.asked = max(self.asked, other.asked)


@dataclass(frozen=True)
class Condition:
    """A condition that is false on every path reaching it."""

    index: int  # its element
    expr: ast.Expr
    kind: str  # show_if | goto


def _answers(ask: ast.Ask) -> list | None:
    """What the expression language sees for each possible answer, or None when not tracked."""
    if ask.type == "nps":
        return list(range(11))
    if ask.type == "choice" and ask.choices:
        return [ChoiceValue(c.code, c.label) for c in ask.choices]
    if ask.type == "number" and not ask.decimal and ask.min_value is not None and ask.max_value is not None:
        low, high = int(ask.min_value), int(ask.max_value)
        if 0 <= high - low <= MAX_NUMBER_RANGE:  # a whole number in a small range: like NPS
            return list(range(low, high + 1))
    return None


def _may_go_unanswered(ask: ast.Ask) -> bool:
    """Whether a shown question can be passed without an answer (attempts run out, then skip)."""
    return ask.attempts is not None and (ask.on_invalid or DEFAULT_ON_INVALID) == "skip"


class Feasible:
    """The analysis of one survey. `cost(i)` is what reaching element i costs (a question when
    it is shown, an end when reached; i == len(elements) is falling off the end)."""

    def __init__(self, survey: ast.Survey, succ: list[list[int]], cost: Callable[[int], int] | None = None):
        elements = survey.elements
        self.elements = elements
        self.cost = cost or (lambda index: 0)
        ids = Counter(e.id for e in elements if isinstance(e, ast.Ask))
        self.tracked: dict[str, int] = {}
        self.answers: list[list] = []
        for element in elements:
            if isinstance(element, ast.Ask) and ids[element.id] == 1:
                values = _answers(element)
                if values is not None:
                    self.tracked[element.id] = len(self.answers)
                    self.answers.append(values)
        self._compiled: dict[int, Callable] = {}
        self._succ = succ
        self._dominance: dict[str, frozenset[int]] = {}
        self.derived = self._derived(succ)
        self.live = self._live()
        n = len(elements)
        self.reached = [False] * n
        self.shown = [False] * n  # a question asked on some path
        self.most_asked_at = [0] * n  # the most questions a respondent has been asked once this one is
        self.never_true: list[Condition] = []
        self.possible: dict[int, State] = {}  # at each condition that never holds, the answers that reach it
        self.paths = 0
        self.low: int | None = None
        self.high: int | None = None
        self.most_asked = 0
        self._walk(succ)

    # -- the analysis

    def _derived(self, succ: list[list[int]]) -> dict[str, tuple[int, ast.Expr]]:
        """The `set` names whose value follows from tracked answers alone: set once in the flow,
        from an expression naming only tracked questions. name -> (its element, its expression).
        A condition naming one where every path has run it (_sets_at) is judged on the answers
        its value comes from."""
        counts = Counter(e.name for e in self.elements if isinstance(e, ast.Set))
        derived = {}
        for i, element in enumerate(self.elements):
            if not isinstance(element, ast.Set) or counts[element.name] != 1 or element.name in self.tracked:
                continue
            named = {n.name for n in ast.walk(element.value) if isinstance(n, ast.Name)}
            if named and named <= self.tracked.keys():
                derived[element.name] = (i, element.value)
        return derived

    def _sets_at(self, name: str, at: int) -> bool:
        """Whether the derived set `name` has its value at element `at` (every path there runs it).
        Worked out the first time a condition names it, so flows whose conditions name no set
        pay nothing for it."""
        if name not in self._dominance:
            self._dominance[name] = self._dominated(self.derived[name][0], self._succ)
        return at in self._dominance[name]

    def _dominated(self, s: int, succ: list[list[int]]) -> frozenset[int]:
        """The elements after s that every path from the start reaches only through element s
        (len(elements) stands for running off the end)."""
        n = len(self.elements)
        seen: set[int] = set()
        pending = [0] if s != 0 else []
        seen.update(pending)
        while pending:
            k = pending.pop()
            for j in succ[k] if k < n else ():
                if j != s and j not in seen:
                    seen.add(j)
                    pending.append(j)
        return frozenset(j for j in range(s + 1, n + 1) if j not in seen)

    def _names(self, expr: ast.Expr, at: int) -> set[str] | None:
        """The tracked questions a condition at element `at` depends on, a derived set standing for
        the questions its value comes from; None when it names anything the analysis does not follow."""
        found = set()
        for node in ast.walk(expr):
            if not isinstance(node, ast.Name):
                continue
            if node.name in self.tracked:
                found.add(node.name)
            elif node.name in self.derived and self._sets_at(node.name, at):
                found |= {n.name for n in ast.walk(self.derived[node.name][1]) if isinstance(n, ast.Name)}
            else:
                return None
        return found

    def _depends(self, expr: ast.Expr, at: int) -> set[str]:
        """The tracked questions some part of a condition at element `at` can be judged on."""
        found = set()
        for node in ast.walk(expr):
            if isinstance(node, ast.Name) and node.name in self.tracked:
                found.add(node.name)
            elif isinstance(node, ast.Name) and node.name in self.derived and self._sets_at(node.name, at):
                found |= {n.name for n in ast.walk(self.derived[node.name][1]) if isinstance(n, ast.Name)}
        return found

    def _live(self) -> list[frozenset[int]]:
        """For each element, the tracked questions asked before it that a condition at or after it
        names. One backward pass that keeps the answer as it goes: linear in the flow's size."""
        asked_at = {self.tracked[e.id]: i for i, e in enumerate(self.elements)
                    if isinstance(e, ast.Ask) and e.id in self.tracked}
        asked_here = {i: k for k, i in asked_at.items()}
        live = [frozenset()] * (len(self.elements) + 1)
        after: set[int] = set()  # named by a condition at or after i
        current: set[int] = set()  # of those, asked before i
        for i in range(len(self.elements) - 1, -1, -1):
            current.discard(asked_here.get(i))  # asked at i: not before it
            cond = _condition(self.elements[i])
            for name in self._depends(cond, i) if cond is not None else ():
                k = self.tracked[name]
                if k not in after:
                    after.add(k)
                    if asked_at[k] < i:
                        current.add(k)
            live[i] = frozenset(current)
        return live

    def _walk(self, succ: list[list[int]]) -> None:
        n = len(self.elements)
        start: State = ()
        at: list[dict[State, Tally]] = [{} for _ in range(n + 1)]
        at[0][start] = Tally(1, 0, 0, 0)
        for i in range(n):
            arriving, at[i] = at[i], {}
            if arriving:
                self.reached[i] = True
            element = self.elements[i]
            possible = False
            for state, tally in arriving.items():
                if isinstance(element, ast.End):
                    self._finish(tally, self.cost(i))
                elif isinstance(element, ast.Ask):
                    possible |= self._ask(i, element, state, tally, at)
                elif isinstance(element, ast.Goto) and element.cond is not None and len(succ[i]) == 2:
                    taken = self.refine(state, element.cond, True, i)
                    target = succ[i][1]
                    if taken is not None:
                        possible = True
                        self._push(at, target, taken, tally)
                    passed = self.refine(state, element.cond, False, i)
                    if passed is not None:
                        self._push(at, i + 1, passed, tally)
                else:
                    for j in succ[i]:
                        self._push(at, j, state, tally)
            cond = _condition(element)
            if arriving and cond is not None and not possible and (isinstance(element, ast.Ask) or len(succ[i]) == 2):
                self.never_true.append(Condition(i, cond, "show_if" if isinstance(element, ast.Ask) else "goto"))
                self.possible[i] = _join(arriving)
        for tally in at[n].values():
            self._finish(tally, self.cost(n))

    def _ask(self, i: int, ask: ast.Ask, state: State, tally: Tally, at) -> bool:
        shown = state if ask.show_if is None else self.refine(state, ask.show_if, True, i)
        if ask.show_if is not None:
            skipped = self.refine(state, ask.show_if, False, i)
            if skipped is not None:
                self._push(at, i + 1, skipped, tally)
        if shown is None:
            return False
        self.shown[i] = True
        k = self.tracked.get(ask.id)
        if k is not None and k in self.live[i + 1]:
            answers = frozenset(range(len(self.answers[k])))
            if _may_go_unanswered(ask):
                answers |= {UNANSWERED}
            shown = tuple(sorted((*shown, (k, answers))))
        cost = self.cost(i)
        after = Tally(tally.paths, tally.low + cost, tally.high + cost, tally.asked + 1)
        self.most_asked_at[i] = max(self.most_asked_at[i], after.asked)
        self._push(at, i + 1, shown, after)
        return True

    def _push(self, at, j: int, state: State, tally: Tally) -> None:
        live = self.live[j]
        state = tuple(pair for pair in state if pair[0] in live)
        here = at[j]
        if state in here:
            here[state].merge(tally)
            return
        here[state] = Tally(tally.paths, tally.low, tally.high, tally.asked)
        if len(here) > MAX_STATES:
            states, tallies = list(here), list(here.values())
            merged = tallies[0]
            for other in tallies[1:]:
                merged.merge(other)
            here.clear()
            here[_join(states)] = merged

    def _finish(self, tally: Tally, cost: int) -> None:
        self.paths += tally.paths
        self.low = tally.low + cost if self.low is None else min(self.low, tally.low + cost)
        self.high = tally.high + cost if self.high is None else max(self.high, tally.high + cost)
        self.most_asked = max(self.most_asked, tally.asked)

    def describe(self, index: int, name: str) -> str:
        """The answers to `name` that can reach a condition that never holds, as an author reads them
        ("0-8 or no answer"); '' when the analysis does not follow the name there."""
        k = self.tracked.get(name)
        state = self.possible.get(index)
        if k is None or state is None:
            return ""
        possible = dict(state).get(k, _NOT_ASKED)
        indexes = sorted(i for i in possible if i != UNANSWERED)
        answers = self.answers[k]
        if answers and isinstance(answers[0], ChoiceValue):
            parts = [f"'{answers[i].label}'" for i in indexes]
        else:
            parts = _ranges([answers[i] for i in indexes])  # NPS 0-10, or a number question's min..max
        if UNANSWERED in possible:
            parts.append("no answer")
        return " or ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " or " + parts[-1]

    # -- conditions

    def refine(self, state: State, expr: ast.Expr, want: bool, at: int) -> State | None:
        """The state narrowed to the answers for which `expr`, a condition at element `at`, is
        `want`; None when there are none."""
        if isinstance(expr, ast.Not):
            return self.refine(state, expr.operand, not want, at)
        if isinstance(expr, ast.BoolOp):
            if (expr.op == "and") == want:  # every operand must be `want`
                for operand in expr.operands:
                    state = self.refine(state, operand, want, at)
                    if state is None:
                        return None
                return state
            found = [s for s in (self.refine(state, o, want, at) for o in expr.operands) if s is not None]
            return _join(found) if found else None
        return self._atom(state, expr, want, at)

    def _atom(self, state: State, expr: ast.Expr, want: bool, at: int) -> State | None:
        depends = self._names(expr, at)
        if depends is None:
            return state  # it names something the analysis does not follow: no information
        names = sorted(depends)
        known = dict(state)
        ks = [self.tracked[name] for name in names]
        choices = [sorted(known.get(k, _NOT_ASKED)) for k in ks]
        size = 1
        for options in choices:
            size *= len(options)
        if size > MAX_COMBINATIONS:
            return state
        test = self._compile(expr)
        kept: list[set[int]] = [set() for _ in ks]
        possible = False
        for combination in product(*choices):
            values = {name: self._value(k, index) for name, k, index in zip(names, ks, combination, strict=True)}
            if truthy(test(values)) == want:
                possible = True
                for slot, index in zip(kept, combination, strict=True):
                    slot.add(index)
        if not possible:
            return None
        narrowed = {k: frozenset(slot) for k, slot in zip(ks, kept, strict=True)}
        return tuple((k, narrowed.get(k, values)) for k, values in state)  # one not asked stays so

    def _value(self, k: int, index: int):
        return None if index == UNANSWERED else self.answers[k][index]

    def _compile(self, expr: ast.Expr) -> Callable:
        """`expr` as a function of {question id: answer}; a derived set's value is worked out
        from those answers with its own expression, as the engine works it out on the path."""
        key = id(expr)
        if key not in self._compiled:
            self._compiled[key] = compile_expr(expr, self._getter)
        return self._compiled[key]

    def _getter(self, name: str) -> Callable:
        if name in self.derived:
            value = self._compile(self.derived[name][1])
            return lambda values: value(values)
        return lambda values: values[name]


def _condition(element: ast.Element) -> ast.Expr | None:
    if isinstance(element, ast.Ask):
        return element.show_if
    return element.cond if isinstance(element, ast.Goto) else None


def _ranges(numbers: list[int]) -> list[str]:
    """[0, 1, 2, 5] -> ["0-2", "5"]."""
    out: list[list[int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [f"{a}-{b}" if a != b else f"{a}" for a, b in out]


def _join(states) -> State:
    """The per-question union of several states at one point (a question missing from one was not
    asked on its paths: no answer is possible there)."""
    known = [dict(state) for state in states]
    ks = sorted({k for state in known for k in state})
    return tuple((k, frozenset().union(*(state.get(k, _NOT_ASKED) for state in known))) for k in ks)
