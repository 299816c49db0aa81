"""The flow language's words, written once: id patterns, the text form's statement words, each
setting's spelling in both forms, question types and the options each allows, on_invalid values,
the expression language's reserved words, and the defaults.

The checker, the converter, both readers and the engine read these; tests/test_vocabulary.py
fails when grammar.lark says otherwise. To add a setting: a Setting here, a rule in grammar.lark
(if the text form writes it), an attribute on ast.Survey, and a row in the README.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------- ids (grammar.lark: SLUG, NAME, END_ID)

SURVEY_ID = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
NAME = r"[A-Za-z_][A-Za-z0-9_]*"  # questions, sets, fields: what expressions and piped text name
END_ID = r"[A-Za-z_][A-Za-z0-9_-]*"  # ends are never named in expressions, so they may hold '-'
QUESTION_TYPE_WORD = r"[a-z_]+"  # what the text form reads as a type (the checker says which exist)
CHOICE_CODE = r"[A-Za-z0-9]{1,8}"  # a choice code the text form can write

# Words of the expression language: a question named `not` could never be referred to.
RESERVED = frozenset({"and", "or", "not", "in", "is", "answered", "contains", "if", "else", "true", "false"})

# ---------------------------------------------------------------- questions

QUESTION_TYPES = ("nps", "choice", "text")
# The options only some types take; every type takes invalid_message, attempts and on_invalid.
TYPE_OPTIONS = {"nps": (), "choice": ("choices",), "text": ("max_length",)}
ON_INVALID = ("skip", "end")  # what happens after the last attempt
BUILTIN_FIELDS = ("Q_RecipientPhoneNumber",)  # fields every session has, declared or not

# ---------------------------------------------------------------- defaults

DEFAULT_EXPIRES_AFTER = 48 * 3600  # seconds
DEFAULT_END_MESSAGE = "Thank you for your time. Your response has been recorded."
DEFAULT_MAX_LENGTH = 1600  # characters of a text answer
DEFAULT_ON_INVALID = "skip"

# ---------------------------------------------------------------- settings and elements


@dataclass(frozen=True)
class Setting:
    """A survey setting: its ast.Survey attribute, its YAML key, and in the text form the words
    that open its line and the grammar rule that reads it (None: written on another setting's line)."""

    attr: str
    key: str
    words: str | None
    rule: str | None
    kind: str = "text"  # text | duration | names


# In the YAML form's order (the order `canvass convert` writes them).
SETTINGS = (
    Setting("title", "title", "title", "title"),
    Setting("expires_after", "expires_after", "expires after", "expires_after", "duration"),
    Setting("access_code", "access_code", "access code", "access_code"),
    Setting("end_message", "end_message", "end message", "end_message"),
    Setting("sender", "sender", "sender", "sender"),
    Setting("fields", "fields", "fields", "fields", "names"),
    Setting("remind_after", "remind_after", "remind after", "remind_after", "duration"),
    Setting("remind_message", "remind_message", None, None),  # text form: remind after 1d "message"
    Setting("not_in_survey_message", "not_in_survey_message", "not in survey message", "not_in_survey_message"),
    Setting("help_message", "help_message", "help message", "help_message"),
    Setting("content_sid", "whatsapp_template", "whatsapp template", "content_sid"),
)
SETTING = {s.attr: s for s in SETTINGS}
SURVEY_KEYS = ("survey", *(s.key for s in SETTINGS), "flow")


@dataclass(frozen=True)
class Option:
    """An option of a question: its ast.Ask attribute, YAML key, text-form words and grammar rule."""

    attr: str
    key: str
    words: str | None  # None: choices are indented CODE "label" lines
    rule: str


OPTIONS = (
    Option("choices", "choices", None, "choice"),
    Option("invalid_message", "invalid_message", "invalid", "invalid_message"),
    Option("attempts", "attempts", "attempts", "attempts"),
    Option("on_invalid", "on_invalid", "then", "on_invalid"),
    Option("max_length", "max_length", "max length", "max_length"),
)

ELEMENTS = ("ask", "set", "goto", "end")  # the YAML key and the text-form word that open each
ELEMENT_KEYS = {
    "ask": ("ask", "type", "prompt", "show_if", *(o.key for o in OPTIONS)),
    "set": ("set", "value"),
    "goto": ("goto", "if"),
    "end": ("end", "message"),
}

# Words that open a line of the text form; a choice code spelt the same would read as that line.
STATEMENT_WORDS = tuple(dict.fromkeys([
    "survey", *(s.words.split()[0] for s in SETTINGS if s.words), *ELEMENTS,
    *(o.words.split()[0] for o in OPTIONS if o.words)]))


def keyword(rule: str) -> str:
    """How the text form spells the setting or option a grammar rule reads."""
    for entry in (*SETTINGS, *OPTIONS):
        if entry.rule == rule and entry.words:
            return entry.words
    return rule
