"""Survey -> Flow: one shared transitions.Machine per flow version, named by a content hash.

The machine's states are the flow's elements; it has no models. Two events move the step
cursor (engine.step.Cursor) along:
- `answer`: from a question, once it is answered or skipped, to the element after it;
- `pass`: through an element that sends nothing - a `set` (before: store the value), a `goto`
  (to its target if its condition holds, else onward), a question whose show_if is false
  (before: record it as not shown). A shown question or an end has no `pass` that fires.
Conditions are compiled expression closures, so a step costs the same on any size of flow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from transitions import Machine

from dsl import ast
from dsl.check import check_survey
from dsl.errors import FlowError
from dsl.expr import ChoiceValue, Getter, compile_expr, truthy
from dsl.load import form_of, load_file, parse_source
from dsl.vocabulary import DEFAULT_END_MESSAGE, DEFAULT_ON_INVALID
from engine.questions import QUESTION_TYPES, QuestionType
from engine.render import Template, compile_text, outgoing

END_OF_FLOW = "(end)"  # where a flow that runs past its last element stops; not a valid id


@dataclass(frozen=True, eq=False)
class Question:
    ask: ast.Ask
    kind: QuestionType
    message: Template  # the prompt as sent, choices and all
    invalid: Template  # the explanation sent after an invalid reply
    attempts: int | None  # None: no limit
    on_invalid: str  # skip | end

    @property
    def id(self) -> str:
        return self.ask.id


@dataclass(frozen=True, eq=False)
class Ending:
    id: str
    message: Template


@dataclass(eq=False, repr=False)
class Flow:
    id: str
    version: str
    survey: ast.Survey
    source: str
    form: str
    machine: Machine
    first: str  # the state a new session starts in, before it settles
    questions: dict[str, Question]
    endings: dict[str, Ending]
    passing: frozenset[str]  # states with a `pass` event
    end_message: Template  # the survey's default end message
    reminder: Template | None  # the survey's remind_message, if it has one
    help: Template | None  # the survey's help_message, if it has one
    not_in_survey: Template | None  # the survey's not_in_survey_message, if it has one

    def __repr__(self) -> str:
        return f"<Flow {self.id}@{self.version}>"


def version_of(survey: ast.Survey) -> str:
    """12 hex digits of the sha256 of the survey's repr: equal surveys share a version, whatever
    their form. A dataclass repr lists exactly the fields that take part in equality (positions
    are compare=False, repr=False in dsl.ast; tests/test_engine_flow.py holds that to be so)."""
    return hashlib.sha256(repr(survey).encode("utf-8")).hexdigest()[:12]


def _state_name(index: int, element: ast.Element) -> str:
    if isinstance(element, ast.Ask | ast.End):
        return element.id
    return f"{type(element).__name__.lower()}#{index}"  # set#3, goto#4: ids are NAMEs, these are not


class _Builder:
    def __init__(self, survey: ast.Survey):
        self.survey = survey
        self.asks = {q.id: q for q in survey.questions}
        self.transitions: list[dict] = []

    def resolve(self, name: str) -> Getter:
        """A getter for a name in an expression: a question's answer, else a field."""
        if name in self.asks:
            ask = self.asks[name]
            kind = QUESTION_TYPES[ask.type]

            def answer(values):
                stored = values.answers.get(name)
                return None if stored is None else kind.value(ask, stored)

            return answer

        def field_value(values):
            value = values.fields.get(name)
            return None if value == "" else value

        return field_value

    def optional_text(self, text: str | None) -> Template | None:
        return compile_text(text, self.asks) if text else None

    def condition(self, expr: ast.Expr):
        test = compile_expr(expr, self.resolve)
        return lambda event: truthy(test(event.model))

    def add(self, trigger: str, source: str, dest: str, **callbacks) -> None:
        self.transitions.append({"trigger": trigger, "source": source, "dest": dest, **callbacks})

    def question(self, ask: ast.Ask) -> Question:
        kind = QUESTION_TYPES[ask.type]
        prompt = compile_text(ask.prompt, self.asks)
        invalid = compile_text(ask.invalid_message or kind.expected(ask), self.asks)
        return Question(ask, kind, lambda values: outgoing(kind.message(ask, prompt(values))), invalid,
                        ask.attempts, ask.on_invalid or DEFAULT_ON_INVALID)

    def element(self, state: str, element: ast.Element, after: str) -> None:
        match element:
            case ast.Ask(show_if=show_if):
                self.add("answer", state, after)
                if show_if is not None:
                    qid = element.id
                    self.add("pass", state, after, unless=[self.condition(show_if)],
                             before=[lambda event: _not_shown(event.model, qid)])
            case ast.Set(name=name, value=value):
                compute = compile_expr(value, self.resolve)
                self.add("pass", state, after, before=[lambda event: _store(event.model, name, compute)])
            case ast.Goto(target=target, cond=cond):
                if cond is not None:
                    self.add("pass", state, target, conditions=[self.condition(cond)])
                self.add("pass", state, target if cond is None else after)


def _not_shown(cursor, qid: str) -> None:
    if qid not in cursor.not_shown:
        cursor.not_shown.append(qid)


def _store(cursor, name: str, compute: Getter) -> None:
    value = compute(cursor)
    cursor.fields[name] = value.label if isinstance(value, ChoiceValue) else value


def compile_flow(survey: ast.Survey, source: str, form: str) -> Flow:
    """Check the survey and build its Flow; FlowError when the check finds any error."""
    errors = [d for d in check_survey(survey, source) if d.is_error]
    if errors:
        raise FlowError(errors)
    builder = _Builder(survey)
    names = [_state_name(i, e) for i, e in enumerate(survey.elements)] + [END_OF_FLOW]
    for index, element in enumerate(survey.elements):
        builder.element(names[index], element, names[index + 1])
    machine = Machine(model=None, states=names, transitions=builder.transitions, initial=names[0],
                      auto_transitions=False, send_event=True)
    end_message = compile_text(survey.end_message or DEFAULT_END_MESSAGE, builder.asks)
    endings = {e.id: Ending(e.id, end_message if e.message is None else compile_text(e.message, builder.asks))
               for e in survey.elements if isinstance(e, ast.End)}
    endings[END_OF_FLOW] = Ending(END_OF_FLOW, end_message)
    passing = frozenset(t["source"] for t in builder.transitions if t["trigger"] == "pass")
    return Flow(
        id=survey.id, version=version_of(survey), survey=survey, source=source, form=form,
        machine=machine, first=names[0],
        questions={ask.id: builder.question(ask) for ask in survey.questions},
        endings=endings, passing=passing, end_message=end_message,
        reminder=builder.optional_text(survey.remind_message), help=builder.optional_text(survey.help_message),
        not_in_survey=builder.optional_text(survey.not_in_survey_message),
    )


def flow_from_source(source: str, form: str, path: str = "<stored>") -> Flow:
    """Rebuild a flow from its stored text (any worker can rebuild any version this way)."""
    return compile_flow(parse_source(source, path, form), source, form)


def load_flow(path: str | Path) -> Flow:
    survey, source = load_file(path)
    return compile_flow(survey, source, form_of(path))
