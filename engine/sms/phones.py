"""Phone numbers in E.164, the one form Canvass stores and keys conversations by."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

import phonenumbers

from dsl.vocabulary import COUNTRY_ALIASES

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


@lru_cache(maxsize=16384)  # every access code texted asks, when its survey limits the countries
def region_of(e164: str) -> str | None:
    """The ISO 3166 region phonenumbers places a number in (US, CA, GB, and GG, JE, IM for the
    islands' ranges of +44), or None when it places it nowhere (an unassigned range)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None


# ---------------------------------------------------------------- numbers in contact files

# What contact files hold: digits with the separators people and spreadsheets write, an optional
# leading + (or 00, the international prefix dialled from most countries).
FILE_NUMBER = re.compile(r"\+?\(?[0-9][0-9 ().\-/]*", re.ASCII)
EXCEL_SCIENTIFIC = re.compile(r"[0-9]\.[0-9]+E\+?[0-9]+", re.IGNORECASE)
# A number a spreadsheet stored as a number and wrote as a decimal: its digits are whole
EXCEL_DECIMAL = re.compile(r"(\+?[0-9]{7,})\.0", re.ASCII)
EXTENSION = re.compile(r"(?:;\s*ext=|\s*(?:ext\.?|extension|x|#)\s*)[0-9]+", re.IGNORECASE)
# What copies from phones and web pages put around and inside numbers, unseen: no-break and
# narrow spaces (read as spaces), direction marks and zero-width characters (dropped)
UNSEEN_SPACES = re.compile("[\u00a0\u2007\u2009\u202f]")
UNSEEN_MARKS = re.compile("[\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")
NOT_DIGITS = re.compile(r"[^0-9]")
NANP_LENGTH = 10  # digits of a US or Canadian number without its country code
BRACKETED = re.compile(r"\(([0-9]+)\)", re.ASCII)
# Line types that may not receive text messages, yet are charged for them.
NO_SMS_LINES = {
    phonenumbers.PhoneNumberType.FIXED_LINE: "fixed_line",
    phonenumbers.PhoneNumberType.TOLL_FREE: "toll_free",
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium_rate",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared_cost",
    phonenumbers.PhoneNumberType.UAN: "uan",
    phonenumbers.PhoneNumberType.VOICEMAIL: "voicemail",
}


class ContactNumber(NamedTuple):
    e164: str
    line_warning: str | None  # a NO_SMS_LINES value when the number may not receive SMS
    also: str | None = None  # another valid reading of the digits (E.164), when they had no +


def country(code: str) -> str:
    """An ISO 3166 country code as `--default-country` takes it (US, gb, UK), as phonenumbers
    names regions; InvalidNumber when phonenumbers has no numbering plan for it."""
    region = (code or "").strip().upper()
    region = COUNTRY_ALIASES.get(region, region)
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidNumber(f"'{code}' is not a country code: give two letters (ISO 3166), "
                            "e.g. US, GB, FR, IN")
    return region


def contact_number(text: str, default_country: str | None = None) -> ContactNumber:
    """A number from a contact file, as E.164, more lenient than to_e164 (which webhooks and
    the admin API use): the country code may come without + or after 00 (15551234567,
    1 (555) 123-4567, 447911123456, 0044 7911 123456), a national trunk 0 written after the
    country code is dropped (440 7911 123456, +33 (0)6...), Mexico's former mobile 1 after
    52 too, and a number without its country code is read as `default_country`'s (a region
    from country()) when given. A number that starts with a bracketed area code ((202)
    555-0143, (020) 7946 0958) is written without its country code. What spreadsheets and
    phones add is taken off: Excel's leading apostrophe, a decimal .0, unseen spaces and
    marks. The number must be valid (assigned in its country's plan), not merely of a
    possible length. InvalidNumber says why not, for the person who wrote the file."""
    written = (text or "").strip()
    if not written.isascii():
        written = UNSEEN_MARKS.sub("", UNSEEN_SPACES.sub(" ", written)).strip()
    if written[:1] == "'":
        written = written[1:].strip()
    if not written:
        raise InvalidNumber("no phone number")
    if written.endswith("0") and (decimal := EXCEL_DECIMAL.fullmatch(written)):
        written = decimal[1]
    if not FILE_NUMBER.fullmatch(written):
        if EXCEL_SCIENTIFIC.fullmatch(written):
            raise InvalidNumber("the number is in scientific notation (a spreadsheet turned it into "
                                "a number and lost digits): format the column as text and export again")
        extension = EXTENSION.search(written)
        if extension and FILE_NUMBER.fullmatch(written[:extension.start()].strip() or "-"):
            raise InvalidNumber(f"the number has an extension ('{extension[0].strip()}'): a text message "
                                "cannot reach one; give the number alone, or a mobile number")
        raise InvalidNumber("not a phone number: only digits, an optional leading +, and spaces, "
                            "dots, dashes, slashes or brackets between them")
    digits = NOT_DIGITS.sub("", written)
    international = written.startswith("+") or digits.startswith("00")
    # an area code in brackets ((202) 555-0143, (020) 7946 0958): no country code before it;
    # but (44) 7911 123456 and (0044) ... bracket one
    bracketed = BRACKETED.match(written) if written[0] == "(" else None
    national_only = not international and bracketed is not None and (
        bracketed[1].startswith("0") or (len(bracketed[1]) == 3 and len(digits) == NANP_LENGTH))
    digits = digits[2:] if digits.startswith("00") and not written.startswith("+") else digits
    if default_country and not international:
        national = _parsed(digits, default_country)
        if national is not None:
            return national
    if national_only:
        if default_country:
            raise InvalidNumber(f"not a valid {default_country} number (it starts with a bracket, so it "
                                "has no country code)")
        raise InvalidNumber("no country code: the number starts with a bracketed area code; write it "
                            "with its country code (1 for the US), or import with --default-country")
    found = _parsed("+" + digits, None)
    if found is None and digits.startswith("521") and len(digits) == 13:
        found = _parsed("+52" + digits[3:], None)  # Mexico's mobiles, as written before 2019
    if found is not None:
        if not international and not default_country and len(digits) == NANP_LENGTH:
            nanp = _parsed("+1" + digits, None)
            if nanp is not None and nanp.e164 != found.e164:
                return found._replace(also=nanp.e164)
        return found
    return _explain(digits, international, default_country)


def _parsed(digits: str, region: str | None) -> ContactNumber | None:
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    kind = phonenumbers.number_type(number)  # UNKNOWN: the number is not valid in its country
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        return None
    return ContactNumber(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
                         NO_SMS_LINES.get(kind))


def _explain(digits: str, international: bool, default_country: str | None) -> ContactNumber:
    """Raise InvalidNumber saying why `digits` is no number (the slow path: invalid rows only)."""
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        number = None
    region = phonenumbers.region_code_for_country_code(number.country_code) if number else "ZZ"
    if region == phonenumbers.UNKNOWN_REGION:
        if default_country and not international:
            raise InvalidNumber(f"not a valid number, with or without a country code "
                                f"(read as {default_country} and as international)")
        raise InvalidNumber("no known country code at the start: write the number with its country "
                            "code (1 for the US, 44 for the UK), or import with --default-country")
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.TOO_SHORT:
        problem = "too few digits"
    elif reason in (phonenumbers.ValidationResult.TOO_LONG, phonenumbers.ValidationResult.INVALID_LENGTH):
        problem = "the wrong number of digits"
    else:
        problem = "not a number in use"
    said = f"{problem} for country code +{number.country_code} ({region})"
    if default_country and not international:
        raise InvalidNumber(f"not a valid {default_country} number, nor one with its country code "
                            f"({said})")
    hint = "" if international else " (or, if it has no country code, import with --default-country)"
    raise InvalidNumber(said + hint)
