"""Phone numbers in E.164, the one form Canvass stores and keys conversations by."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

# A + then digits, with the spaces, dots, dashes and brackets people write between them.
# Nothing else: phonenumbers would also read tel:/sms: URIs, extensions (;ext=, x123),
# letters (1-800-FLOWERS) and other scripts' digits, each silently equal to another number.
WRITTEN_NUMBER = re.compile(r"\+[0-9 ().\-]+", re.ASCII)


class InvalidNumber(ValueError):
    """A phone number that cannot be read; the message says why, for the person who typed it."""


@lru_cache(maxsize=16384)  # every webhook parses its From; parsing cost a twentieth of one (bench/run)
def to_e164(number: str) -> str:
    """`number` as E.164 (+15551234567). Accepts spaces, dashes and brackets, but the number
    must start with + and its country code: Canvass serves many countries and guesses none.
    Numbers are checked for a possible length, not for being assigned: test ranges
    such as +1 555 01xx are possible numbers and must keep working.
    """
    text = (number or "").strip()
    if not text:
        raise InvalidNumber("the phone number is empty")
    if not WRITTEN_NUMBER.fullmatch(text):
        raise InvalidNumber(
            f"'{text}' is not a phone number; give it in E.164 form, e.g. +15551234567 "
            "(a + and digits, spaces, dots, dashes or brackets between them: no tel: or sms: prefix, "
            "no extension, no letters)")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise InvalidNumber(
            f"'{text}' is not a phone number; give it in E.164 form, e.g. +15551234567"
        ) from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber(f"'{text}' has the wrong number of digits for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
