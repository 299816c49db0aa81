"""Survey -> Flow: one shared transitions.Machine per flow version, named by a content hash.

The machine's states are the flow's elements; it has no models. Two events move the step
cursor (engine.step.Cursor) along:
- `answer`: from a question, once it is answered or skipped, to the element after it;
- `pass`: through an element that sends nothing - a `set` (before: store the value), a `goto`
  (to its target if its condition holds, else onward), a question whose show_if is false
  (before: record it as not shown). A shown question or an end has no `pass` that fires.
Conditions are compiled expression closures, so a step costs the same on any size of flow.

Every text is compiled once per language the survey speaks (Question.message["es"]...): a step
looks its language up, it never builds a text.
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
from dsl.folder import access_key
from dsl.load import form_of, load_file, parse_source
from dsl.matching import fold
from dsl.vocabulary import DEFAULT_LANGUAGE_FIELD, DEFAULT_ON_INVALID
from engine import texts as builtin_texts
from engine.questions import QUESTION_TYPES, QuestionType
from engine.questions.base import Reader
from engine.render import Template, compile_text, outgoing

END_OF_FLOW = "(end)"  # where a flow that runs past its last element stops; not a valid id


@dataclass(frozen=True, eq=False)
class Question:
    ask: ast.Ask
    kind: QuestionType
    message: dict[str, Template]  # by language: the prompt as sent, choices and all
    invalid: dict[str, Template]  # by language: the explanation sent after an invalid reply
    read: dict[str, Reader]  # by language: reply -> answer, Ambiguous or None
    attempts: int | None  # None: no limit
    on_invalid: str  # skip | end
    prompt: dict[str, Template]  # by language: the prompt alone, piped text filled (the web page's)

    @property
    def id(self) -> str:
        return self.ask.id


@dataclass(frozen=True, eq=False)
class Ending:
    id: str
    message: dict[str, Template]  # by language


@dataclass(frozen=True, eq=False)
class Language:
    """What a flow says in one language besides its questions and ends."""

    code: str
    texts: builtin_texts.Texts  # the built-in texts, as the survey words them in this language
    end_message: Template  # the survey's default end message
    reminder: Template | None  # the survey's remind_message, if it has one
    help: Template  # the survey's help_message, else the built-in one
    not_in_survey: Template  # the survey's not_in_survey_message, else the built-in one


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
    default_language: str
    languages: dict[str, Language]
    access_codes: dict[str, str]  # the access code as folded (access_key) -> the language it starts

    def __repr__(self) -> str:
        return f"<Flow {self.id}@{self.version}>"

    def language(self, code: str | None) -> Language:
        """The flow's texts in `code` ("" or a language it does not speak: its default)."""
        return self.languages.get(code) or self.languages[self.default_language]

    def language_of(self, fields: dict) -> str:
        """The language a contact's fields ask for, else the default. The field is the survey's
        language_field, else one named Language (in any case). "es", "ES", "es-MX", " es ",
        "Spanish" and "Español" all pick es; pt picks pt-BR when that is the only pt."""
        name = self.survey.language_field
        if name is None:
            name = next((f for f in fields if f.casefold() == DEFAULT_LANGUAGE_FIELD.casefold()), None)
        value = fields.get(name) if name else None
        if not isinstance(value, str) or not value.strip():
            return self.default_language
        wanted = fold(value)
        wanted = builtin_texts.LANGUAGE_NAMES.get(wanted, wanted)
        for exact in (True, False):
            for code in self.languages:
                mine = code.casefold()
                if mine == wanted if exact else mine.split("-")[0] == wanted.split("-")[0]:
                    return code
        return self.default_language

    def code_language(self, text: str) -> str | None:
        """The language the access code `text` starts, or None when it is not one of the flow's codes."""
        return self.access_codes.get(access_key(text))


def in_language(node, attr: str, language: str, default: str) -> str | None:
    """A node's text in `language`: its translation, else the default language's text."""
    text = getattr(node, attr)
    if language == default:
        return text
    return node.translations.get(attr, {}).get(language) or text


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

    def text(self, text: str, language: str) -> Template:
        opt_out = builtin_texts.builtin(language)["opt_out_link"]
        return compile_text(text, self.asks, language, opt_out)

    def optional_text(self, text: str | None, language: str) -> Template | None:
        return self.text(text, language) if text else None

    def language(self, code: str) -> Language:
        survey, default = self.survey, self.survey.default_language
        texts = builtin_texts.for_survey(survey, code)

        def setting(attr: str, builtin: str) -> Template:
            return self.text(in_language(survey, attr, code, default) or texts[builtin], code)

        return Language(code, texts, setting("end_message", "end"),
                        self.optional_text(in_language(survey, "remind_message", code, default), code),
                        setting("help_message", "help"), setting("not_in_survey_message", "not_in_survey"))

    def condition(self, expr: ast.Expr):
        test = compile_expr(expr, self.resolve)
        return lambda event: truthy(test(event.model))

    def add(self, trigger: str, source: str, dest: str, **callbacks) -> None:
        self.transitions.append({"trigger": trigger, "source": source, "dest": dest, **callbacks})

    def question(self, ask: ast.Ask, languages: dict[str, Language]) -> Question:
        kind = QUESTION_TYPES[ask.type]
        default = self.survey.default_language
        message, invalid, read, prompts = {}, {}, {}, {}
        for code, language in languages.items():
            prompt = prompts[code] = self.text(in_language(ask, "prompt", code, default), code)
            frame = kind.framer(ask, code)
            if frame is None:
                message[code] = lambda values, prompt=prompt: outgoing(prompt(values))
            else:
                message[code] = lambda values, prompt=prompt, frame=frame: outgoing(frame(prompt(values)))
            explanation = in_language(ask, "invalid_message", code, default)
            invalid[code] = self.text(explanation or kind.expected(ask, language.texts, code), code)
            read[code] = kind.reader(ask, code)
        return Question(ask, kind, message, invalid, read, ask.attempts, ask.on_invalid or DEFAULT_ON_INVALID,
                        prompts)

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
    default = survey.default_language
    languages = {code: builder.language(code) for code in survey.languages or [default]}
    endings = {e.id: Ending(e.id, {code: language.end_message if e.message is None
                                   else builder.text(in_language(e, "message", code, default), code)
                                   for code, language in languages.items()})
               for e in survey.elements if isinstance(e, ast.End)}
    endings[END_OF_FLOW] = Ending(END_OF_FLOW, {code: lang.end_message for code, lang in languages.items()})
    passing = frozenset(t["source"] for t in builder.transitions if t["trigger"] == "pass")
    codes = {}
    if survey.access_code:
        for code in languages:
            written = in_language(survey, "access_code", code, default)
            codes.setdefault(access_key(written), code)  # the default's first: a language without its own code
    return Flow(
        id=survey.id, version=version_of(survey), survey=survey, source=source, form=form,
        machine=machine, first=names[0],
        questions={ask.id: builder.question(ask, languages) for ask in survey.questions},
        endings=endings, passing=passing, default_language=default, languages=languages, access_codes=codes,
    )


def flow_from_source(source: str, form: str, path: str = "<stored>") -> Flow:
    """Rebuild a flow from its stored text (any worker can rebuild any version this way)."""
    return compile_flow(parse_source(source, path, form), source, form)


def load_flow(path: str | Path) -> Flow:
    survey, source = load_file(path)
    return compile_flow(survey, source, form_of(path))
