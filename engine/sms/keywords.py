"""Carrier-style keywords, matched on the whole message (case, spaces and punctuation around ignored)."""

from __future__ import annotations

import string

OPT_OUT, OPT_IN, HELP = "opt_out", "opt_in", "help"

_WORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), OPT_OUT),
    **dict.fromkeys(("START", "UNSTOP"), OPT_IN),
    **dict.fromkeys(("HELP", "INFO"), HELP),
}
_OPT_IN_WHEN_OPTED_OUT = "YES"  # an everyday answer otherwise
_AROUND = string.whitespace + string.punctuation

OPTED_IN_TEXT = "You have been resubscribed. Reply STOP to opt out."
DEFAULT_HELP_TEXT = "This is an automated survey. Reply to a question to answer it. Reply STOP to opt out."


def keyword(text: str, opted_out: bool = False) -> str | None:
    """OPT_OUT, OPT_IN or HELP when the message is that keyword, else None."""
    word = text.strip(_AROUND).upper()
    if opted_out and word == _OPT_IN_WHEN_OPTED_OUT:
        return OPT_IN
    return _WORDS.get(word)
