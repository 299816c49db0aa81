"""The element graph of a survey: which element can follow which (gotos only jump forward, so
the graph is acyclic and one pass in order answers every question about it)."""

from __future__ import annotations

from dsl import ast


def first_index(survey: ast.Survey) -> dict[str, int]:
    """Each id's first element index (asks, ends and sets share one namespace)."""
    index: dict[str, int] = {}
    for i, element in enumerate(survey.elements):
        name = ast.element_id(element)
        if name:
            index.setdefault(name, i)
    return index


def goto_target(survey: ast.Survey, position: int, ids: dict[str, int]) -> int | None:
    """Where the goto at `position` may jump: a later question or end; None if the target is invalid."""
    target = ids.get(survey.elements[position].target)
    if target is None or target <= position or isinstance(survey.elements[target], ast.Set):
        return None
    return target


def successors(survey: ast.Survey) -> list[list[int]]:
    """For each element, the elements that can follow it; len(elements) stands for falling off the end.
    An invalid goto falls through, so one bad target does not make the rest of the flow look dead."""
    ids = first_index(survey)
    out = []
    for i, element in enumerate(survey.elements):
        if isinstance(element, ast.End):
            out.append([])
        elif isinstance(element, ast.Goto):
            target = goto_target(survey, i, ids)
            if target is None:
                out.append([i + 1])
            else:
                out.append([target] if element.cond is None else sorted({i + 1, target}))
        else:
            out.append([i + 1])
    return out


def reachable(survey: ast.Survey, succ: list[list[int]] | None = None) -> list[bool]:
    succ = successors(survey) if succ is None else succ
    seen = [False] * (len(survey.elements) + 1)
    seen[0] = True
    for i in range(len(survey.elements)):  # edges only go forward: one pass in order suffices
        if seen[i]:
            for j in succ[i]:
                seen[j] = True
    return seen[: len(survey.elements)]


class Paths:
    """What the checks ask of the element graph, worked out once per survey: each id's element,
    each element's successors, and which elements some path from the start reaches."""

    def __init__(self, survey: ast.Survey):
        self.ids = first_index(survey)
        self.succ = successors(survey)
        self.reached = reachable(survey, self.succ)


class KnownBefore:
    """For each element, the questions that may have been answered and the sets that may have run
    on some path reaching it: a forward may-analysis over the acyclic element graph, one bit per
    name, so a flow of thousands of elements costs milliseconds, not a set per element."""

    def __init__(self, survey: ast.Survey, succ: list[list[int]]):
        self.bits: dict[str, int] = {}
        for element in survey.elements:
            if isinstance(element, ast.Ask | ast.Set):
                self.bits.setdefault(ast.element_id(element), 1 << len(self.bits))
        self.masks = [0] * (len(survey.elements) + 1)
        for i, element in enumerate(survey.elements):
            after = self.masks[i]
            if isinstance(element, ast.Ask | ast.Set):
                after |= self.bits[ast.element_id(element)]
            for j in succ[i]:
                self.masks[j] |= after

    def may_have(self, index: int, name: str) -> bool:
        return bool(self.masks[index] & self.bits.get(name, 0))
