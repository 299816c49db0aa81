"""Characters no flow text may hold: control characters (every C0 control but tab and line feed,
DEL, the C1 controls) and what XML 1.0 cannot carry at all (lone surrogates, U+FFFE, U+FFFF).
A message holding one is invisible to its author and breaks the TwiML or SVG it is written into.

YAML's double-quoted strings can spell them as escapes ("\\x01", "\\u0000", "\\e"); `SPELLED`
finds either spelling in a file so a diagnostic can point at what the author wrote."""

from __future__ import annotations

import re

_FORBIDDEN_CLASS = "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
FORBIDDEN = re.compile(f"[{_FORBIDDEN_CLASS}]")
# A raw forbidden character, a YAML escape, or an escaped backslash (matched so "\\x01" is skipped).
SPELLED = re.compile(rf"[{_FORBIDDEN_CLASS}]|\\(?:x[0-9A-Fa-f]{{2}}|u[0-9A-Fa-f]{{4}}|U[0-9A-Fa-f]{{8}}|[0abtnvfreN\\])")
_SHORT_ESCAPES = {"0": "\x00", "a": "\x07", "b": "\x08", "t": "\t", "n": "\n", "v": "\x0b", "f": "\x0c",
                  "r": "\r", "e": "\x1b", "N": "\x85", "\\": "\\"}


def spelled(text: str) -> str:
    """The character a SPELLED match stands for."""
    if not text.startswith("\\"):
        return text
    if text[1] in "xuU":
        return chr(int(text[2:], 16))
    return _SHORT_ESCAPES[text[1]]


def describe(ch: str) -> str:
    code = f"U+{ord(ch):04X}"
    if "\ud800" <= ch <= "\udfff":
        return f"lone surrogate {code}"
    if ch in "\ufffe\uffff":
        return f"noncharacter {code}"
    return f"control character {code}"
