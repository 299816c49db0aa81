"""Every diagnostic code an author can see, defined once: its severity, the summary the README's
table shows, and the hint a report gets when its call site gives none. One reporter turns a code,
a position and a message into a Diagnostic for the language checks, the readers and the SMS checks.

To add a diagnostic: add an entry here, a row to the README's table (tests/test_diagnostics.py
holds the two equal) and a broken flow showing it to tests/flows/broken/.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dsl.characters import FORBIDDEN
from dsl.vocabulary import QUESTION_TYPES

_TYPES = ", ".join(QUESTION_TYPES)
_TYPES_OR = f"{', '.join(QUESTION_TYPES[:-1])} or {QUESTION_TYPES[-1]}"


@dataclass(frozen=True)
class Diagnostic:
    path: str
    line: int  # 1-based; 0 when the problem belongs to the whole file
    col: int  # 1-based
    code: str  # E### for errors, W### for warnings
    message: str
    hint: str = ""
    length: int = 1  # how many characters the caret underlines
    severity: str = field(default="")

    def __post_init__(self) -> None:
        if not self.severity:
            object.__setattr__(self, "severity", severity_of(self.code))

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_json(self) -> dict:
        return asdict(self)

    def render(self, source: str | None = None) -> str:
        where = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        out = [f"{where}: {self.severity}[{self.code}]: {self.message}"]
        if source is not None and self.line:
            lines = source.split("\n")  # as the readers count lines (splitlines also breaks at \x0b, \x1c...)
            if 0 < self.line <= len(lines):
                # A control character would garble the terminal: show a replacement character instead.
                text = FORBIDDEN.sub("\ufffd", lines[self.line - 1].rstrip("\r")).expandtabs(1)
                if len(text) <= 300:
                    out.append(f"      {text}")
                    out.append("      " + " " * (self.col - 1) + "^" * max(1, self.length))
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


@dataclass(frozen=True)
class Code:
    code: str  # E### for errors, W### for warnings
    severity: str  # error | warning
    summary: str  # what the code means, as the README's table says it
    hint: str = ""  # the hint template, filled with a report's values

    def diagnostic(self, path: str, at: tuple[int, int], message: str, hint: str | None = None,
                   length: int = 1, **values) -> Diagnostic:
        text = self.hint.format(**values) if hint is None else hint
        return Diagnostic(path, at[0], at[1], self.code, message, text, max(1, length), self.severity)


REGISTRY: dict[str, Code] = {}


def _code(code: str, summary: str, hint: str = "") -> Code:
    entry = Code(code, "error" if code.startswith("E") else "warning", summary, hint)
    assert code not in REGISTRY, code
    REGISTRY[code] = entry
    return entry


INTERNAL = _code("E000", "an internal error while checking (a bug in Canvass)",
                 "please report this with the flow file")
SYNTAX = _code("E001", "syntax error (YAML or text form), or nesting too deep to read")
UNREADABLE = _code("E002", "unreadable file: missing, a directory, binary, not UTF-8, over 1 MiB, empty, "
                   "unknown extension")
UNKNOWN_KEY = _code("E003", 'unknown key or element (with "did you mean")')
DUPLICATE_KEY = _code("E004", "duplicate key or setting")
MALFORMED_VALUE = _code("E005", "missing or malformed value")
DUPLICATE_ID = _code("E006", "duplicate id (questions and ends)")
UNSUPPORTED_TYPE = _code("E007", f"a question type 2-way SMS cannot carry (supported: {_TYPES})")
MARKUP = _code("E008", "HTML in a text")
BAD_DURATION = _code("E009", "invalid duration, or a reminder not before expiry",
                     "write a number and a unit: 30m, 48h, 2d")
TOO_FEW_CHOICES = _code("E010", "a choice question with fewer than 2 choices", "give it at least two choices")
DUPLICATE_CHOICE = _code("E011", "duplicate choice code or label")
UNKNOWN_NAME = _code("E012", "unknown name in an expression")
UNKNOWN_PIPE = _code("E013", "unknown question or field in piped text")
NOT_YET_ANSWERED = _code("E014", "a question that cannot have been answered yet on that path (or a `set` not yet run)")
UNKNOWN_GOTO = _code("E015", "goto to an unknown element (gotos target a later question or end)")
GOTO_BACKWARDS = _code("E016", "goto backwards (no loops)",
                       "gotos only jump forward (no loops): move the target after this goto")
BAD_ACCESS_CODE = _code("E017", "access code without the leading `@`, or with spaces")
BAD_SENDER = _code("E018", "sender breaks the rules (alphanumeric IDs: at most 11 of A-Z a-z 0-9 and space, "
                   "not digits only; numbers in E.164)")
ONE_WAY_SENDER = _code("E019", "alphanumeric sender on a 2-way survey (alphanumeric IDs are one-way)",
                       "respondents cannot reply to it: send from a phone number, short code or "
                       "messaging service (MG...); a link distribution (one-way) may send from the ID "
                       "(canvass distribute --mode link --sender ID)")
NAME_CLASH = _code("E020", "name clash: questions, ends, sets and fields share one namespace")
EXPRESSION_SYNTAX = _code("E021", "expression syntax error")
NO_QUESTIONS = _code("E022", "no questions", f"add at least one question (type {_TYPES_OR})")
OPTION_MISFIT = _code("E023", "an option that does not fit the question (`choices` on text, `max_length` on nps, "
                      "`attempts` < 1, ...)")
MALFORMED_PIPE = _code("E024", "malformed or unterminated piped text")
BAD_ID = _code("E025", "an id that cannot be named: survey ids take letters, digits, `-`, `_`, `.`; question ids "
               "and set names letters, digits and `_` (not a word of the expression language); end ids also `-`")
CONTROL_CHARACTER = _code("E026", "a control character, or another character XML cannot carry, in a text",
                          "delete it: a text message cannot carry it, and most editors do not show it")
NO_SUCH_CHOICE = _code("E027", 'a choice question compared with a label or code it does not have (with "did you mean")')
NPS_RANGE = _code("E028", "an NPS or number question compared with a number outside its range (0-10, or "
                  "min-max) where the comparison can never hold, or with text",
                  "an NPS answer is a whole number from 0 to 10: compare with one, e.g. {name} >= 9")
TOO_LONG = _code("E029", "a message over Twilio's limit of 1,600 characters",
                 "Twilio refuses a longer message: shorten it, or split it over two questions")
UNKNOWN_COUNTRY = _code("E030", "a country in `access_code_countries` that is not an ISO 3166 code of a "
                        'numbering plan Canvass knows (with "did you mean")',
                        "write two capital letters, e.g. US, CA, GB (not UK), DE")
SURVEY_LINK_IN_FLOW = _code("E031", "${l://SurveyLink} in a flow's text, where it cannot render (it is the "
                            "respondent's own link, which only a link distribution's invitation carries)",
                            "put it in the invitation message of a link distribution: canvass distribute "
                            "--mode link --message '... ${{l://SurveyLink}}'")
MISSING_TRANSLATION = _code("E040", "a text missing in one of the survey's languages",
                            "give it in every language the survey declares: {{en: ..., es: ...}} in YAML, "
                            "an indented `es: \"...\"` line in the text form")
CHOICES_DIFFER = _code("E041", "a choice list whose codes differ between languages")
UNKNOWN_LANGUAGE = _code("E042", "a text in a language the survey does not declare, or a `languages` or "
                         "`language_field` setting that is not right (codes like en, es, pt-BR, each once)")
DUPLICATE_SURVEY = _code("E801", "two different flows with one survey id (the same survey in both forms is fine)")
DUPLICATE_ACCESS_CODE = _code("E802", "two surveys with one access code")
NO_FLOWS = _code("E803", "no flows to load")
MISSING_SOURCE = _code("E804", "a version announced by another server whose source is not stored in Redis",
                        "reload again from a server that has the flow files")
OTHER_VERSION = _code("E805", "a version announced by another server that compiles differently here",
                      "run the same Canvass release on every server")
NO_OPT_OUT = _code("W001", 'the first message does not say how to opt out ("Text STOP to opt out")',
                   'add "Text STOP to opt out." (carriers expect it in the first message)')
NPS_SCALE = _code("W002", "an NPS prompt that does not state the 0-10 scale", 'say how to answer, e.g. "Reply 0-10"')
SEGMENTS = _code("W003", "a message that needs more than one SMS segment",
                 "each segment is billed: keep a message to {limit} characters to send it as one")
UCS2 = _code("W004", "a character forces UCS-2 although it has a GSM-7 look-alike (named, with its position)",
             "{instead}, or turn on Twilio Smart Encoding")
UNREACHABLE = _code("W005", "an element that can never be reached, or a question that can never be asked",
                    "it follows an end or an unconditional goto, and no goto jumps to it")
TOO_MANY_QUESTIONS = _code("W006", "a respondent can be asked more than three questions (SMS surveys work best "
                           "with two or three)",
                           "every extra text loses respondents: cut or merge questions")
PIPE_WITHOUT_SESSION = _code("W007", "piped text in the not-in-survey message, which has no session to pipe from",
                             "it is sent when no survey is open, so there are no fields or answers to pipe")
FIELDS_ON_ACCESS_CODE = _code("W008", "contact fields piped in a survey that can start by access code "
                              "(respondents who text in have none)",
                              "they text in unknown to Canvass: word the texts so they read well without them, "
                              "or start those respondents by invitation")
NEVER_TRUE = _code("W009", "a condition that cannot be true on any path that reaches it")
YAML_COMMENT = _code("W010", "a `#` after a space in an unquoted YAML text starts a comment: the rest of the line "
                     "is left out of the text", "quote the whole text: \"{text}\"")
COUNTRIES_WITHOUT_ACCESS_CODE = _code("W011", "`access_code_countries` on a survey without an access code: "
                                      "it limits nothing",
                                      "add an access_code, or remove access_code_countries")
AMBIGUOUS_ANSWER = _code("W020", "a label or synonym that two choices of a question share in one language "
                         "(a reply of it is refused as ambiguous), or a label that is another choice's code",
                         "give each choice words of its own")
NO_BUILTIN_TEXTS = _code("W021", "a language Canvass ships no built-in texts for (help, not-in-survey, "
                         "invalid-answer messages go in English unless `texts` gives them)",
                         "give them under texts: (help, not_in_survey, invalid_choice...), or use one of "
                         "{languages}")


def severity_of(code: str) -> str:
    return REGISTRY[code].severity


def position(diagnostic: Diagnostic) -> tuple[int, int, str]:
    """The order diagnostics are shown in: by place in the file, then by code."""
    return diagnostic.line, diagnostic.col, diagnostic.code


def in_order(diagnostics, unique: bool = False) -> list[Diagnostic]:
    """Diagnostics sorted by position; with unique, each one once."""
    return sorted(dict.fromkeys(diagnostics) if unique else diagnostics, key=position)


def unreadable(diagnostics) -> bool:
    """Whether the file itself could not be read (exit status 2 rather than 1)."""
    return any(d.code == UNREADABLE.code for d in diagnostics)


class Reporter:
    """Collects the diagnostics of one file."""

    def __init__(self, path: str):
        self.path = path
        self.diagnostics: list[Diagnostic] = []

    def report(self, code: Code, at: tuple[int, int], message: str, hint: str | None = None,
               length: int = 1, **values) -> None:
        self.diagnostics.append(code.diagnostic(self.path, at, message, hint, length, **values))
