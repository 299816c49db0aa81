"""Piped text, as Qualtrics writes it: ${e://Field/NAME}, ${q://ID/ChoiceGroup/SelectedChoices},
${q://ID/ChoiceTextEntryValue}, ${l://OptOutURL}, and ${l://SurveyLink}, which only a link
distribution's invitation message can carry (the respondent's own link to the web survey)."""

from __future__ import annotations

import re
from dataclasses import dataclass

PIPE = re.compile(r"\$\{([^{}]*)\}")
_FIELD = re.compile(r"^e://Field/([A-Za-z_][A-Za-z0-9_]*)$")
_QUESTION = re.compile(r"^q://([A-Za-z_][A-Za-z0-9_]*)/(ChoiceGroup/SelectedChoices|ChoiceTextEntryValue)$")
_LINK = re.compile(r"^l://(OptOutURL|SurveyLink)$")
SURVEY_LINK, OPT_OUT_URL = "SurveyLink", "OptOutURL"  # the link pipes' names


@dataclass(frozen=True)
class Pipe:
    kind: str  # field | question | link | bad
    name: str  # field name, question id, link name, or the bad text
    part: str  # for questions: SelectedChoices | ChoiceTextEntryValue
    start: int  # offset of '$' in the text
    end: int


def pipes(text: str) -> list[Pipe]:
    """Every ${...} in a text, classified."""
    out = []
    for match in PIPE.finditer(text or ""):
        body = match.group(1)
        if m := _FIELD.match(body):
            out.append(Pipe("field", m.group(1), "", match.start(), match.end()))
        elif m := _QUESTION.match(body):
            out.append(Pipe("question", m.group(1), m.group(2).split("/")[-1], match.start(), match.end()))
        elif m := _LINK.match(body):
            out.append(Pipe("link", m.group(1), "", match.start(), match.end()))
        else:
            out.append(Pipe("bad", body, "", match.start(), match.end()))
    return out


def has_pipes(text: str) -> bool:
    return "${" in (text or "")
