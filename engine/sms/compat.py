"""The 2-way SMS / WhatsApp compatibility report (`canvass check`): sender rules, opt-out text,
NPS scale, segments and encoding, survey length, and what a complete response costs.

The language checks are dsl/check.py's; every code is defined in dsl/diagnostics.py.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from dsl import ast
from dsl import diagnostics as codes
from dsl.check import check_survey
from dsl.diagnostics import Diagnostic, Reporter, in_order, unreadable
from dsl.errors import FlowError
from dsl.feasible import Feasible
from dsl.flowgraph import Paths
from dsl.folder import clashes, flow_files
from dsl.load import parse_source, read_source
from dsl.pipe import PIPE
from dsl.positions import SourceMap, Text, span, texts
from dsl.vocabulary import DEFAULT_END_MESSAGE
from engine.questions import QUESTION_TYPES
from engine.render import OPT_OUT_TEXT
from engine.sms.phones import InvalidNumber, to_e164
from engine.sms.segments import count, ucs2_culprits

MAX_QUESTIONS = 3
MAX_BODY = 1600  # Twilio's limit on a message body, in characters
MAX_PIPE_LENGTH = MAX_BODY  # more cannot be one piped value
# Twilio's opt-out keywords; END only in capitals, as the plain word is common in a message.
_OPT_OUT = re.compile(r"\b(?:stop|stopall|unsubscribe|cancel|quit|revoke|opt[- ]?out)\b|\$\{l://OptOutURL\}",
                      re.IGNORECASE)
_END_KEYWORD = re.compile(r"\bEND\b")
_NPS_SCALE = re.compile(r"\b(?:0|zero)\b.{0,40}?\b(?:10|ten)\b", re.IGNORECASE | re.DOTALL)
_ALPHANUMERIC_ID = re.compile(r"^[A-Za-z0-9 ]{1,11}$")
_MESSAGING_SERVICE = re.compile(r"^MG[0-9a-fA-F]{32}$")
_SHORT_CODE = re.compile(r"^\d{3,8}$")
ALPHANUMERIC_RULE = "an alphanumeric ID is at most 11 characters of A-Z, a-z, 0-9 and space"


def sender_kind(sender: str) -> str:
    """What a sender is: service (MG...), whatsapp, number (E.164 or a short code), alphanumeric
    (a one-way ID), or bad_whatsapp, bad_number, bad_alphanumeric when it breaks that kind's rules.
    `canvass check` and the distributions API judge a sender by it."""
    value = sender.strip()
    if _MESSAGING_SERVICE.match(value):
        return "service"
    if value.lower().startswith("whatsapp:"):
        return "whatsapp" if _is_phone(value[len("whatsapp:"):]) else "bad_whatsapp"
    if not any(ch.isalpha() for ch in value):
        return "number" if _is_phone(value) or _SHORT_CODE.match(value) else "bad_number"
    return "alphanumeric" if _ALPHANUMERIC_ID.match(value) else "bad_alphanumeric"


# ---------------------------------------------------------------- messages as sent


def render_prompt(ask: ast.Ask) -> str:
    """A question as the respondent receives it (a choice question lists one choice a line)."""
    kind = QUESTION_TYPES.get(ask.type)
    return ask.prompt if kind is None else kind.message(ask, ask.prompt)


def end_message(survey: ast.Survey, end: ast.End | None) -> str:
    """What an end (or falling off the end of the flow, when end is None) sends."""
    if end is not None and end.message is not None:
        return end.message
    return survey.end_message or DEFAULT_END_MESSAGE


def assume_pipes(text: str, length: int) -> str:
    """The text with each piped value taken as `length` characters (the opt-out link is known)."""
    return PIPE.sub(lambda m: OPT_OUT_TEXT if m.group(1) == "l://OptOutURL" else "x" * length, text)


def segments(text: str, pipe_length: int) -> int:
    return count(assume_pipes(text, pipe_length)).segments


# ---------------------------------------------------------------- diagnostics


def costed(survey: ast.Survey, assume_pipe_length: int = 10, paths: Paths | None = None) -> Feasible:
    """The paths a respondent can really take, each message costed in SMS segments."""
    elements = survey.elements

    def cost(index: int) -> int:
        if index == len(elements):
            return segments(end_message(survey, None), assume_pipe_length)
        element = elements[index]
        if isinstance(element, ast.End):
            return segments(end_message(survey, element), assume_pipe_length)
        if isinstance(element, ast.Ask):
            return segments(render_prompt(element), assume_pipe_length)
        return 0

    return Feasible(survey, (paths or Paths(survey)).succ, cost)


class _Compat(Reporter):
    def __init__(self, survey: ast.Survey, source: str | None, pipe_length: int, paths: Paths, feasible: Feasible):
        super().__init__(survey.path)
        self.survey = survey
        self.map = SourceMap(source, survey)
        self.pipe_length = pipe_length
        self.paths = paths
        self.feasible = feasible

    def run(self) -> list[Diagnostic]:
        self.sender()
        self.opt_out()
        questions = self.survey.questions
        for ask in questions:
            if ask.type == "nps" and not _NPS_SCALE.search(ask.prompt):
                self.report(codes.NPS_SCALE, span(ask, "prompt"), f"the NPS prompt of question '{ask.id}' does not state the 0-10 scale")
        self.too_many_questions()
        for text in texts(self.survey):
            self.encoding(text)
        self.lengths()
        return self.diagnostics

    def too_many_questions(self) -> None:
        """TOO_MANY_QUESTIONS at the first question that can be the fourth a respondent is asked."""
        most = self.feasible.most_asked
        if most <= MAX_QUESTIONS:
            return
        index = next(i for i, asked in enumerate(self.feasible.most_asked_at) if asked > MAX_QUESTIONS)
        ask = self.survey.elements[index]
        total = len(self.survey.questions)
        of = "" if total == most else f" (of {total})"
        self.report(codes.TOO_MANY_QUESTIONS, span(ask, "ask", "id"),
                    f"a respondent can be asked {most} questions{of}; SMS surveys work best with two or three",
                    length=len(ask.id))

    def sender(self) -> None:
        sender = self.survey.sender
        if sender is None:
            return
        at, length = span(self.survey, "sender"), len(sender)
        kind = sender_kind(sender)
        if kind == "bad_whatsapp":
            self.report(codes.BAD_SENDER, at, f"'{sender}' is not a WhatsApp sender",
                        "write whatsapp: and the number in E.164 form, e.g. whatsapp:+14155550100", length)
        elif kind == "bad_number":
            self.report(codes.BAD_SENDER, at, f"sender '{sender}' is not a phone number in E.164 form",
                        "write + then the country code and number, no spaces: +14155550100", length)
        elif kind in ("alphanumeric", "bad_alphanumeric"):
            if kind == "bad_alphanumeric":
                self.report(codes.BAD_SENDER, at, f"sender '{sender}' breaks the alphanumeric sender ID rules",
                            ALPHANUMERIC_RULE, length)
            self.report(codes.ONE_WAY_SENDER, at,
                        f"sender '{sender}' is an alphanumeric ID, which can only send one-way", length=length)

    def opt_out(self) -> None:
        """NO_OPT_OUT on every question that can be the first message a respondent receives."""
        succ, reached = self.paths.succ, self.paths.reached
        elements = self.survey.elements
        can_be_first = [False] * (len(elements) + 1)
        can_be_first[0] = True
        for i, element in enumerate(elements):
            if not (can_be_first[i] and reached[i]):
                continue
            if isinstance(element, ast.Ask):
                if not _has_opt_out(element.prompt):
                    self.report(codes.NO_OPT_OUT, span(element, "prompt"),
                                f"the first message (question '{element.id}') does not say how to opt out")
                if element.show_if is None:
                    continue  # the respondent has now received a message
            for j in succ[i]:
                can_be_first[j] = True

    def encoding(self, text: Text) -> None:
        """UCS2 for each character that alone keeps an otherwise GSM-7 text in UCS-2."""
        if text.kind == "title":
            return
        culprits = ucs2_culprits(text.value)
        if not culprits or any(alike is None for _, _, alike in culprits):
            return  # GSM-7 already, or something without a look-alike needs UCS-2 anyway
        value = unicodedata.normalize("NFC", text.value)
        for index, ch, alike in culprits:
            first = value.index(ch)
            if index != first:
                continue
            at = self.map.find(text.at, ch, 0, len(value))
            name = unicodedata.name(ch, "")
            instead = f"write {alike!r} instead" if alike else "remove it (it is invisible)"
            self.report(codes.UCS2, at, f"{ch!r} (U+{ord(ch):04X}{' ' + name if name else ''}) in {text.where} "
                        "forces UCS-2: 70 characters a segment instead of 160", instead=instead)

    def lengths(self) -> None:
        """SEGMENTS for each message that needs more than one segment."""
        for ask in self.survey.questions:
            where = f"the prompt of question '{ask.id}'" + (" with its choices" if ask.choices else "")
            self.segments(render_prompt(ask), span(ask, "prompt"), where)
        for text in texts(self.survey):
            if text.kind == "message":
                self.segments(text.value, text.at, text.where)

    def segments(self, value: str, at, where: str) -> None:
        """TOO_LONG past Twilio's limit on a message body, else SEGMENTS past one segment."""
        sent = assume_pipes(value, self.pipe_length)
        piped = f", piped text counted as {self.pipe_length} characters" if PIPE.search(value) else ""
        if len(sent) > MAX_BODY:
            self.report(codes.TOO_LONG, at, f"{where} is {len(sent)} characters{piped}; Twilio sends at most "
                        f"{MAX_BODY:,}")
            return
        result = count(sent)
        if result.segments > 1:
            limit = 160 if result.encoding == "GSM-7" else 70
            self.report(codes.SEGMENTS, at, f"{where} needs {result.segments} SMS segments "
                        f"({result.encoding}, {result.units} characters{piped})", limit=limit)


def _has_opt_out(text: str) -> bool:
    return bool(_OPT_OUT.search(text) or _END_KEYWORD.search(text))


def _is_phone(text: str) -> bool:
    """Whether the text is a phone number written exactly in E.164 form."""
    try:
        return to_e164(text) == text
    except InvalidNumber:
        return False


def compat_diagnostics(survey: ast.Survey, source: str | None = None, assume_pipe_length: int = 10,
                       paths: Paths | None = None, feasible: Feasible | None = None) -> list[Diagnostic]:
    """The SMS/WhatsApp diagnostics for a survey, sorted by position."""
    paths = paths or Paths(survey)
    feasible = feasible or costed(survey, assume_pipe_length, paths)
    return in_order(_Compat(survey, source, assume_pipe_length, paths, feasible).run())


# ---------------------------------------------------------------- cost


def summary(survey: ast.Survey, assume_pipe_length: int = 10, paths: Paths | None = None,
            feasible: Feasible | None = None) -> dict:
    """Questions, the paths a respondent can take, and the fewest and most SMS segments over a
    complete response.

    A path is one way through the survey from its first message to an end: which questions are
    shown or skipped and which gotos are taken. Only paths some answers can make happen count: a
    follow-up shown when recommend <= 6 and another when recommend >= 9 make three paths (one, the
    other, neither), not four. Paths are counted without being enumerated (dsl/feasible.py).
    """
    feasible = feasible or costed(survey, assume_pipe_length, paths)
    return {"questions": len(survey.questions), "most_questions": feasible.most_asked, "paths": feasible.paths,
            "min_segments": feasible.low or 0, "max_segments": feasible.high or 0,
            "assumed_pipe_length": assume_pipe_length}


# ---------------------------------------------------------------- the command


@dataclass
class FileReport:
    path: str
    diagnostics: list[Diagnostic]
    summary: dict | None  # None when the file could not be parsed
    source: str | None = None
    survey: ast.Survey | None = None

    @property
    def errors(self) -> int:
        return sum(d.is_error for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return len(self.diagnostics) - self.errors

    @property
    def unreadable(self) -> bool:
        return unreadable(self.diagnostics)

    def to_json(self) -> dict:
        return {"path": self.path, "diagnostics": [d.to_json() for d in self.diagnostics], "summary": self.summary}


def check_source(source: str, path: str, assume_pipe_length: int = 10) -> FileReport:
    """Parse and check one flow's text; never raises."""
    try:
        survey = parse_source(source, path)
        paths = Paths(survey)
        feasible = costed(survey, assume_pipe_length, paths)
        diagnostics = (check_survey(survey, source, paths)
                       + compat_diagnostics(survey, source, assume_pipe_length, paths, feasible))
        result = summary(survey, assume_pipe_length, paths, feasible)
    except FlowError as err:
        return FileReport(path, _sorted(err.diagnostics), None, source)
    except RecursionError:
        return FileReport(path, [codes.SYNTAX.diagnostic(path, (1, 1), "the flow is nested too deeply to read",
                                                         "simplify the deepest expression or list")], None, source)
    except Exception as err:  # a bug must still not cost the author a traceback
        return FileReport(path, [codes.INTERNAL.diagnostic(
            path, (0, 0), f"internal error while checking: {type(err).__name__}: {err}")], None, source)
    return FileReport(path, _sorted(diagnostics), result, source, survey)


def check_file(path: str, assume_pipe_length: int = 10) -> FileReport:
    try:
        source = read_source(path)
    except FlowError as err:
        return FileReport(path, _sorted(err.diagnostics), None)
    return check_source(source, path, assume_pipe_length)


def check_files(names: list[str], assume_pipe_length: int = 10) -> list[FileReport]:
    """Each file checked alone (a folder: the flow files in it), then the files together as the
    server would load them: two flows with one survey id, two surveys with one access code."""
    reports = []
    for name in names:
        if not Path(name).is_dir():
            reports.append(check_file(name, assume_pipe_length))
        elif found := flow_files(name):
            reports += [check_file(str(path), assume_pipe_length) for path in found]
        else:
            reports.append(FileReport(name, [codes.UNREADABLE.diagnostic(
                name, (0, 0), "the folder has no flow files", "flows are *.yaml, *.yml or *.survey files")], None))
    loadable = [(r.path, r.survey) for r in reports if r.survey is not None and not r.errors]
    found, _ = clashes(loadable)
    for report in reports:
        mine = [d for d in found if d.path == report.path]
        if mine:
            report.diagnostics = _sorted(report.diagnostics + mine)
    return reports


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return in_order(diagnostics, unique=True)


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def summary_line(report: FileReport) -> str:
    tally = f"{_plural(report.errors, 'error')}, {_plural(report.warnings, 'warning')}"
    s = report.summary
    if s is None:
        return f"{report.path}: {tally}"
    low, high = s["min_segments"], s["max_segments"]
    cost = f"{low}" if low == high else f"{low}-{high}"
    most = "" if s["most_questions"] == s["questions"] else f" (at most {s['most_questions']} on one path)"
    return (f"{report.path}: {_plural(s['questions'], 'question')}{most}, {_plural(s['paths'], 'path')}, "
            f"{cost} SMS segment{'' if high == 1 else 's'} per complete response "
            f"(piped text counted as {s['assumed_pipe_length']} characters); {tally}")


def run_check(files: list[str], as_json: bool = False, assume_pipe_length: int = 10) -> int:
    """`canvass check [--json] [--pipe-length N] FILE|DIR...`: 0 clean or warnings only, 1 errors,
    2 a usage error or an unreadable file."""
    if not 0 <= assume_pipe_length <= MAX_PIPE_LENGTH:
        print(f"canvass check: --pipe-length must be from 0 to {MAX_PIPE_LENGTH}", file=sys.stderr)
        return 2
    reports = check_files(files, assume_pipe_length)
    if as_json:
        print(json.dumps({"files": [r.to_json() for r in reports],
                          "errors": sum(r.errors for r in reports),
                          "warnings": sum(r.warnings for r in reports)}, indent=2))
    else:
        for report in reports:
            for diagnostic in report.diagnostics:
                print(diagnostic.render(report.source))
            print(summary_line(report))
    if any(r.unreadable for r in reports):
        return 2
    return 1 if any(r.errors for r in reports) else 0
