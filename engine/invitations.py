"""A link distribution's invitation: the message its sender wrote (not a flow's text), with the
contact's fields, the respondent's own link (${l://SurveyLink}) and opt-out URL
(${l://OptOutURL}) piped in.

Two recipients' messages always differ by their links; what duplicate suppression compares is
the rest (`digest`): the message with the contact's fields in and the link pipes as written.
"""

from __future__ import annotations

import hashlib

from dsl.characters import FORBIDDEN
from dsl.expr import display
from dsl.pipe import SURVEY_LINK, pipes
from engine.render import outgoing, sendable
from engine.step import segment_count

MAX_MESSAGE = 1600  # Twilio's limit, before the fields and links are piped in
LINK_PATH, OPT_OUT_PATH = "/l/", "/o/"  # the web pages' routes (engine.runtime.web.handlers)
TOKEN_LENGTH = 22  # characters of a token: secrets.token_urlsafe(16) (engine.records.links)
WRITTEN_SURVEY_LINK, WRITTEN_OPT_OUT_URL = "${l://SurveyLink}", "${l://OptOutURL}"


def problem(message: object) -> str | None:
    """What is wrong with an invitation message, as a sentence; None when it can be sent."""
    if not isinstance(message, str) or not message.strip():
        return f"'message' must be the invitation's text, with {WRITTEN_SURVEY_LINK} where the link goes"
    if len(message) > MAX_MESSAGE:
        return f"'message' is {len(message)} characters: Twilio takes at most {MAX_MESSAGE}"
    if FORBIDDEN.search(message):
        return "'message' holds a control character, which no text message can carry"
    found = pipes(message)
    for pipe in found:
        written = message[pipe.start:pipe.end]
        if pipe.kind == "question":
            return (f"'message' pipes {written}, an answer, but an invitation goes before any answer: "
                    "pipe contact fields (${e://Field/NAME}) and links only")
        if pipe.kind == "bad":
            return (f"'message' has {written}, which is not piped text: write ${{e://Field/NAME}}, "
                    f"{WRITTEN_SURVEY_LINK} or {WRITTEN_OPT_OUT_URL}")
    if message.count("${") != len(found):
        return "'message' has an unterminated ${: close it with '}'"
    if not any(pipe.kind == "link" and pipe.name == SURVEY_LINK for pipe in found):
        return (f"'message' must carry {WRITTEN_SURVEY_LINK}, where each recipient's own link goes "
                f"(e.g. \"Tell us how we did: {WRITTEN_SURVEY_LINK}\")")
    return None


def render(message: str, fields: dict, link_url: str, opt_out_url: str) -> str:
    """The message one recipient gets."""
    out, at = [], 0
    for pipe in pipes(message):
        out.append(message[at:pipe.start])
        if pipe.kind == "field":
            out.append(sendable(display(fields.get(pipe.name))))
        elif pipe.kind == "link":
            out.append(link_url if pipe.name == SURVEY_LINK else opt_out_url)
        else:
            out.append(message[pipe.start:pipe.end])
        at = pipe.end
    out.append(message[at:])
    return outgoing("".join(out))


def digest(message: str, fields: dict) -> str:
    """What makes two invitations the same message: the text with the contact's fields piped in,
    the link pipes as written (each recipient's links differ by construction)."""
    text = render(message, fields, WRITTEN_SURVEY_LINK, WRITTEN_OPT_OUT_URL)
    return hashlib.sha256(text.encode()).hexdigest()


def urls(base: str, token: str, opt_out_token: str) -> tuple[str, str]:
    """The respondent's link and opt-out URL under the public base URL."""
    base = base.rstrip("/")
    return f"{base}{LINK_PATH}{token}", f"{base}{OPT_OUT_PATH}{opt_out_token}"


def segments(message: str, fields: dict, base: str) -> int:
    """SMS segments of a recipient's invitation, its links as long as real ones (tokens are
    URL-safe Base64, GSM-7 characters: only their length counts)."""
    link, opt_out = urls(base, "A" * TOKEN_LENGTH, "A" * TOKEN_LENGTH)
    return segment_count("sms", render(message, fields, link, opt_out))

