"""Request data nobody vouches for: charsets, admin JSON and what reaches the logs.

Everything here turns hostile input into a clear refusal (UntrustedInput, a 4xx) or into
text that cannot forge a log line; none of it may raise anything else.
"""

from __future__ import annotations

import json
import logging
import math
import re

from engine.render import first_unsendable

LOG_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\\ud800-\udfff]")


class UntrustedInput(ValueError):
    """A request Canvass refuses; `status` and `reason` go into the error answer."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def loggable(value: object) -> str:
    """`value` as text for one log line: control characters, line separators, backslashes and
    lone surrogates escaped as repr() writes them, so a percent-decoded %0A in a path is
    logged as \\n and never starts a forged line."""
    text = str(value)
    return LOG_UNSAFE.sub(lambda found: repr(found.group())[1:-1], text) if LOG_UNSAFE.search(text) else text


def readable_charset(charset: str | None) -> bool:
    """True when bytes in this charset can be decoded to text (rot13, base64 and unknown
    names cannot)."""
    if charset is None:
        return True
    try:
        b"x".decode(charset)  # (b"" would be decoded without looking the codec up)
    except UnicodeDecodeError:  # a real text codec, e.g. utf-16 wanting a second byte
        return True
    except (LookupError, ValueError):  # ValueError: a name with a NUL in it
        return False
    return True


def _constant(name: str):
    raise UntrustedInput(400, "bad_json", f"{name} is not a JSON number; give numbers as digits")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise UntrustedInput(400, "bad_json", f"the number {text[:20]}... is too large to read"
                             if len(text) > 20 else f"the number {text} is too large to read")
    return number


def parse_json(raw: bytes, charset: str | None) -> object:
    """The document in `raw`; UntrustedInput for anything json.loads would take that is not
    plain JSON text (NaN, Infinity, 1e999, numbers too long to read, lone surrogates)."""
    try:
        text = raw.decode(charset or "utf-8")
        document = json.loads(text, parse_constant=_constant, parse_float=_finite)
    except UntrustedInput:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # RecursionError: nested too deep
        detail = "a number has too many digits" if "digits" in str(err) else "it is not valid JSON"
        raise UntrustedInput(400, "bad_json", f"the body must be a JSON object; {detail}") from None
    if _has_surrogate(document):
        raise UntrustedInput(400, "bad_json", "the body has a lone surrogate (a \\ud800-\\udfff escape "
                                              "without its pair), which is not Unicode text")
    return document


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value) if not value.isascii() else False
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


def contact_fields(fields: object) -> dict[str, str]:
    """A start's `fields` as names to text: values are text or numbers; no true/false, null,
    lists or objects, and no control characters in names or values (they cannot be sent)."""
    if not isinstance(fields, dict):
        raise UntrustedInput(400, "bad_fields", "fields must be an object of names to text")
    checked = {}
    for name, value in fields.items():
        if isinstance(value, bool) or value is None:
            raise UntrustedInput(400, "bad_fields", f"field '{loggable(name)}' is {json.dumps(value)}: "
                                                    "give text (in quotes) or a number")
        if isinstance(value, dict | list):
            kind = "an object" if isinstance(value, dict) else "a list"
            raise UntrustedInput(400, "bad_fields", f"field '{loggable(name)}' is {kind}: fields hold text")
        text = str(value)
        for what, checked_text in (("name", name), ("value", text)):
            bad = first_unsendable(checked_text)
            if bad is not None:
                raise UntrustedInput(400, "bad_fields", f"field {what} '{loggable(checked_text)}' has U+{ord(bad):04X}, "
                                                        "a control character or non-character no message can carry")
        checked[name] = text
    return checked


class ParseErrorsInOneLine(logging.Filter):
    """aiohttp logs each malformed HTTP request (a 400 it answers itself) with a traceback;
    that is the client's mistake, not the server's, so it becomes one escaped warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and getattr(error, "code", None) == 400 and record.msg.startswith("Error handling"):
            record.msg, record.args = "malformed HTTP request from %s: %s", (
                loggable(record.args[0] if record.args else "?"), loggable(getattr(error, "message", error)))
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class EscapedAccessLines(logging.Filter):
    """The access log writes header values (User-Agent, Referer) as they came: escaped here, so
    an ESC sequence or a byte that is not UTF-8 can neither reach a terminal nor break the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and not record.args:
            record.msg = loggable(record.msg)
        return True


def escape_server_logs() -> None:
    """Install the filters above on aiohttp's loggers (once, however many apps are built)."""
    for name, kind in (("aiohttp.server", ParseErrorsInOneLine), ("aiohttp.access", EscapedAccessLines)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
