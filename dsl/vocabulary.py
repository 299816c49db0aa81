"""The flow language's words, written once: id patterns, the text form's statement words, each
setting's spelling in both forms, question types and the options each allows, on_invalid values,
the expression language's reserved words, and the defaults.

The checker, the converter, both readers and the engine read these; tests/test_vocabulary.py
fails when grammar.lark says otherwise. To add a setting: a Setting here, a rule in grammar.lark
(if the text form writes it), an attribute on ast.Survey, and a row in the README.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

# ---------------------------------------------------------------- ids (grammar.lark: SLUG, NAME, END_ID)

SURVEY_ID = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
NAME = r"[A-Za-z_][A-Za-z0-9_]*"  # questions, sets, fields: what expressions and piped text name
END_ID = r"[A-Za-z_][A-Za-z0-9_-]*"  # ends are never named in expressions, so they may hold '-'
QUESTION_TYPE_WORD = r"[a-z_]+"  # what the text form reads as a type (the checker says which exist)
CHOICE_CODE = r"[A-Za-z0-9]{1,8}"  # a choice code the text form can write
LANGUAGE = r"[a-z]{2}(?:-[A-Z]{2})?"  # an ISO 639-1 language code, optionally with a region: es, pt-BR

# Words of the expression language: a question named `not` could never be referred to.
RESERVED = frozenset({"and", "or", "not", "in", "is", "answered", "contains", "if", "else", "true", "false"})

# ---------------------------------------------------------------- questions

QUESTION_TYPES = ("nps", "choice", "text", "number")
# The options only some types take; every type takes invalid_message, attempts and on_invalid.
TYPE_OPTIONS = {"nps": (), "choice": ("choices",), "text": ("max_length",),
                "number": ("min_value", "max_value", "decimal")}
ON_INVALID = ("skip", "end")  # what happens after the last attempt
BUILTIN_FIELDS = ("Q_RecipientPhoneNumber",)  # fields every session has, declared or not

# ---------------------------------------------------------------- defaults

DEFAULT_EXPIRES_AFTER = 48 * 3600  # seconds
DEFAULT_END_MESSAGE = "Thank you for your time. Your response has been recorded."
DEFAULT_MAX_LENGTH = 1600  # characters of a text answer
DEFAULT_ON_INVALID = "skip"
DEFAULT_LANGUAGE = "en"  # a survey that declares no languages speaks English
DEFAULT_LANGUAGE_FIELD = "Language"  # the contact field naming the language when language_field is not set

# ---------------------------------------------------------------- languages

# The languages engine/texts.py ships the built-in texts in (tests/test_texts.py holds the two equal).
BUILTIN_LANGUAGES = ("en", "es", "fr", "pt", "de")
# Built-in texts a survey overrides with a setting of its own: the text's key -> the setting.
SETTING_TEXTS = {"not_in_survey": "not_in_survey_message", "help": "help_message", "end": "end_message"}
# The other built-in texts a survey may override (`texts:`), each with the placeholders it may hold.
BUILTIN_TEXTS = {
    "resubscribed": (), "reminder_prefix": (),
    "invalid_nps": (), "invalid_choice": ("{codes}",), "invalid_text": ("{max_length}",),
    "invalid_number": (), "invalid_number_range": ("{min}", "{max}"), "invalid_number_min": ("{min}",),
    "invalid_number_max": ("{max}",), "invalid_whole_number": (), "ambiguous": ("{reply}", "{choices}"),
    "opt_out_link": (),
    # a survey that is not active (engine.policy), over SMS and on its web pages
    "survey_paused": (), "survey_closed": (),
    # the labels of the survey's web pages (engine.pages)
    "web_next": (), "web_start": (), "web_description": (), "web_max_length": ("{max_length}",), "web_answered": (),
    "web_blank": (),
    "web_not_found_title": (), "web_not_found": (), "web_paused_title": (), "web_closed_title": (),
    # a link invitation's opt-out page (engine.runtime.web)
    "web_optout_title": (), "web_optout_question": ("{number}",), "web_optout_confirm": (),
    "web_optout_unknown_title": (), "web_optout_unknown": (), "web_optout_done_title": (), "web_optout_done": (),
}

# ---------------------------------------------------------------- countries

# The ISO 3166 regions `access_code_countries` may name: those phonenumbers has a numbering plan
# for, as it names the region of a respondent's number.
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)
COUNTRY_ALIASES = {"UK": "GB"}  # what people write for the United Kingdom's ISO code

# ---------------------------------------------------------------- settings and elements


@dataclass(frozen=True)
class Setting:
    """A survey setting: its ast.Survey attribute, its YAML key, and in the text form the words
    that open its line and the grammar rule that reads it (None: written on another setting's line)."""

    attr: str
    key: str
    words: str | None
    rule: str | None
    kind: str = "text"  # text | duration | names | name | texts


# In the YAML form's order (the order `canvass convert` writes them).
SETTINGS = (
    Setting("languages", "languages", "languages", "languages", "names"),  # first: the default
    Setting("language_field", "language_field", "language field", "language_field", "name"),
    Setting("title", "title", "title", "title"),
    Setting("expires_after", "expires_after", "expires after", "expires_after", "duration"),
    Setting("access_code", "access_code", "access code", "access_code"),
    Setting("access_code_countries", "access_code_countries", "access code countries",
            "access_code_countries", "names"),
    Setting("end_message", "end_message", "end message", "end_message"),
    Setting("sender", "sender", "sender", "sender"),
    Setting("fields", "fields", "fields", "fields", "names"),
    Setting("remind_after", "remind_after", "remind after", "remind_after", "duration"),
    Setting("remind_message", "remind_message", None, None),  # text form: remind after 1d "message"
    Setting("not_in_survey_message", "not_in_survey_message", "not in survey message", "not_in_survey_message"),
    Setting("help_message", "help_message", "help message", "help_message"),
    Setting("content_sid", "whatsapp_template", "whatsapp template", "content_sid"),
    Setting("texts", "texts", "text", "texts", "texts"),  # text form: one `text KEY "..."` line each
)
# The settings whose value is a text a respondent may read, so it may be given in every language.
TRANSLATED_SETTINGS = ("title", "access_code", "end_message", "remind_message", "not_in_survey_message",
                       "help_message")
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
    Option("min_value", "min", "min", "min_value"),
    Option("max_value", "max", "max", "max_value"),
    Option("decimal", "decimal", "decimal", "decimal"),
)
# Lines under a choice in the text form (YAML: keys of a choice's mapping).
MATCH_WORD = "match"  # synonyms: match "si", "claro"
TRANSLATED_OPTIONS = ("prompt", "invalid_message")  # an ask's texts besides its choices' labels

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
    *(o.words.split()[0] for o in OPTIONS if o.words), MATCH_WORD]))


def keyword(rule: str) -> str:
    """How the text form spells the setting or option a grammar rule reads."""
    for entry in (*SETTINGS, *OPTIONS):
        if entry.rule == rule and entry.words:
            return entry.words
    return rule
