"""Phone numbers: contact files' lenient reading (contact_number) beside the strict E.164 that
webhooks and the admin start take (to_e164)."""

from __future__ import annotations

import pytest

from engine.sms.phones import InvalidNumber, contact_number, country, region_of, to_e164


@pytest.mark.parametrize("written, default, e164, warning", [
    # the US as the seed writes it: country code, any spaces, dashes and brackets
    ("1(202)-555-0123", None, "+12025550123", None),
    ("1-202-555-0123", None, "+12025550123", None),
    ("1 (202) 555-0123", None, "+12025550123", None),
    ("12025550123", None, "+12025550123", None),
    ("+1 202 555 0123", None, "+12025550123", None),
    ("1.202.555.0123", None, "+12025550123", None),
    # the UK: 44 then the number, its trunk 0 dropped when written
    ("447911123456", None, "+447911123456", None),
    ("4407911123456", None, "+447911123456", None),
    ("+44 (0)7911 123456", None, "+447911123456", None),
    ("0044 7911 123456", None, "+447911123456", None),
    ("442071234567", None, "+442071234567", "fixed_line"),
    # other countries: country code then number
    ("33612345678", None, "+33612345678", None),
    ("+33 (0)6 12 34 56 78", None, "+33612345678", None),
    ("919876543210", None, "+919876543210", None),
    ("4930 1234567", None, "+49301234567", "fixed_line"),
    # without a country code: only with a default country
    ("2025550123", "US", "+12025550123", None),
    ("(202) 555-0123", "US", "+12025550123", None),
    ("07911 123456", "GB", "+447911123456", None),
    ("447911123456", "US", "+447911123456", None),  # a country code still wins over the default
    ("+33612345678", "US", "+33612345678", None),
    ("\u00a012025550123 ", None, "+12025550123", None),  # a spreadsheet's non-breaking space
    # what spreadsheets and phones add, taken off
    ("12025550123.0", None, "+12025550123", None),  # a number stored as one, written as a decimal
    ("7911123456.0", "GB", "+447911123456", None),  # (its trunk 0 lost with it)
    ("'12025550123", None, "+12025550123", None),  # Excel's text apostrophe
    ("\u200e+1 202 555 0123\u202c", None, "+12025550123", None),  # direction marks, copied from a phone
    ("+1\u202f202\u2009555\u00a00123", None, "+12025550123", None),  # narrow, thin, no-break spaces
    # a country code, or the international prefix, in brackets
    ("(44) 7911 123456", None, "+447911123456", None),
    ("(0044) 7911 123456", None, "+447911123456", None),
    ("(1) 202 555 0123", None, "+12025550123", None),
    ("(020) 7946 0958", "GB", "+442079460958", "fixed_line"),
    # Mexico's mobiles as written before 2019, with a 1 after 52
    ("+52 1 55 1234 5678", None, "+525512345678", None),
    ("5215512345678", None, "+525512345678", None),
])
def test_contact_numbers_are_read_as_people_write_them(written, default, e164, warning):
    number = contact_number(written, default)
    assert (number.e164, number.line_warning, number.also) == (e164, warning, None)


def test_ten_digits_that_are_also_a_us_number_say_so():
    """The seed reads digits without + as country code then number; when ten of them are also a
    valid US or Canadian number without its 1, the import says so (a warning, not a guess)."""
    number = contact_number("3612345678")
    assert (number.e164, number.also) == ("+3612345678", "+13612345678")  # Hungary, or Texas
    assert contact_number("3612345678", "US").e164 == "+13612345678"  # the default says which
    assert contact_number("+3612345678").also is None  # a + says it has its country code


@pytest.mark.parametrize("written, default, says", [
    ("", None, "no phone number"),
    ("   ", None, "no phone number"),
    ("1-800-FLOWERS", None, "not a phone number"),
    ("tel:+12025550123", None, "not a phone number"),
    ("12025550123 ext 4", None, "has an extension ('ext 4')"),
    ("+1 202 555 0123 x12", None, "has an extension ('x12')"),
    ("(231) 555-0143", None, "starts with a bracketed area code"),  # not Liberia's +231 5550143
    ("(020) 7946 0958", None, "starts with a bracketed area code"),  # the UK's trunk 0
    ("(231) 555-0143", "FR", "not a valid FR number (it starts with a bracket"),
    ("2025550123", None, "--default-country"),
    ("999123456", None, "no known country code"),
    ("1202555012", None, "too few digits for country code +1 (US)"),
    ("+1202555012345", None, "the wrong number of digits for country code +1 (US)"),
    ("15551234567", None, "not a number in use for country code +1 (US)"),
    ("1.2025550123E+10", None, "scientific notation"),
    ("12345", "GB", "not a valid GB number"),
])
def test_numbers_that_are_no_numbers_are_refused_with_the_reason(written, default, says):
    with pytest.raises(InvalidNumber, match=says.replace("+", r"\+").replace("(", r"\(").replace(")", r"\)")):
        contact_number(written, default)


def test_country_codes_as_people_write_them():
    assert [country(code) for code in ("US", "gb", " UK ", "fr")] == ["US", "GB", "GB", "FR"]
    for bad in ("", "XX", "USA", "1"):
        with pytest.raises(InvalidNumber, match="not a country code"):
            country(bad)


def test_to_e164_stays_strict():
    """Webhooks and the admin start still want + and the country code: no guessing there."""
    assert to_e164("+1 202 555 0123") == "+12025550123"
    for lenient_only in ("12025550123", "0044 7911 123456", "1(202)-555-0123"):
        with pytest.raises(InvalidNumber):
            to_e164(lenient_only)


@pytest.mark.parametrize("e164, region", [
    ("+12025550123", "US"),
    ("+14165550123", "CA"),  # +1 is shared: the area code says which country
    ("+447400123456", "GB"),
    ("+447911123456", "GG"),  # a Guernsey range of +44
    ("+15555550100", None),  # an unassigned range is in no country
    ("not a number", None),
])
def test_a_number_is_placed_in_the_region_phonenumbers_gives(e164, region):
    assert region_of(e164) == region
