"""Credits: what a message costs, by the recipient's country, its segments and its direction.

The prices are a table (credits.csv beside this module, documented in its own comment lines:
a header `country,outbound,inbound`, one row per ISO 3166 country, a `*` row for every other
country; decimals allowed). An operator replaces it with their own file (CANVASS_CREDITS or
`canvass serve --credits PATH`); `none` there turns credits off: the self-service model, where
estimates count segments only and nothing is priced (Rates.load answers None).

A message costs rate x segments: an SMS its segments as Twilio splits it, a WhatsApp message
one segment whatever its length (charged_segments). A number's country is phonenumbers' region
for it; a number phonenumbers cannot place within its country code (a test range, say) is
taken to be in that code's main country (+1 -> US), and one with no country at all (+882,
international networks) is ZZ, priced by the `*` row.

Pure: reading the table file at load is the only I/O, and nothing here reads a clock.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

import phonenumbers

SHIPPED = Path(__file__).resolve().with_name("credits.csv")
OFF = "none"  # what CANVASS_CREDITS / --credits say to turn credits off
DEFAULT = "*"
UNKNOWN_REGION = "ZZ"
COLUMNS = ("country", "outbound", "inbound")
DIRECTIONS = ("out", "in")
REGION_CACHE = 65536  # numbers whose country is remembered: it is asked for every message
COUNTRY_HINTS = {"UK": "GB"}  # what people write for the United Kingdom's ISO code


class CreditsTableError(ValueError):
    """A credits table Canvass refuses: where (file:line) and what is wrong."""

    def __init__(self, source: str, line: int | None, message: str):
        self.source, self.line, self.message = source, line, message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Rate:
    outbound: Decimal
    inbound: Decimal


@dataclass(frozen=True)
class Rates:
    """Credits per segment by country; `source` is the file they came from (None: the shipped one)."""

    by_country: dict[str, Rate]
    source: str | None = None

    @classmethod
    def load(cls, path: str | None) -> Rates | None:
        """The table at `path`; the shipped one for None; None (credits off) for `none`.
        CreditsTableError when the file cannot be read or is not a valid table."""
        if path is not None and path.strip().lower() == OFF:
            return None
        where = str(SHIPPED) if path is None else path
        try:
            text = Path(where).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise CreditsTableError(where, None, "no such file (a credits table is a CSV file; "
                                    f"`{OFF}` turns credits off)") from None
        except IsADirectoryError:
            raise CreditsTableError(where, None, "is a folder, not a credits table") from None
        except UnicodeDecodeError:
            raise CreditsTableError(where, None, "is not UTF-8 text") from None
        except OSError as err:
            raise CreditsTableError(where, None, f"cannot be read: {err.strerror or err}") from None
        return cls(parse(text, where), path)

    @property
    def described(self) -> str:
        """Where the prices come from, as the admin API says it: the file's path, or `shipped`."""
        return self.source if self.source is not None else "shipped"

    def region(self, phone_e164: str) -> str:
        return region(phone_e164)

    def credits(self, region: str, segments: int, direction: str) -> Decimal:
        """What `segments` segments to or from `region` cost ("out": sent, "in": received)."""
        rate = self.by_country.get(region) or self.by_country[DEFAULT]
        if direction == "out":
            return rate.outbound * segments
        if direction == "in":
            return rate.inbound * segments
        raise ValueError(f"direction must be 'out' or 'in', not {direction!r}")


# The country of a North American number (+1: the US, Canada and the Caribbean) follows from its
# area code, for every valid number: learnt from the first valid number of each area, it spares
# the per-message usage count phonenumbers' search of two dozen countries' patterns.
_NANP_AREAS: dict[str, str] = {}


def region(phone_e164: str) -> str:
    """The ISO 3166 country of an E.164 number, or ZZ when it has none (see the module's text)."""
    if len(phone_e164) == 12 and phone_e164.startswith("+1"):
        known = _NANP_AREAS.get(phone_e164[:5])
        if known is not None:
            return known
    return _region(phone_e164)


@lru_cache(maxsize=REGION_CACHE)
def _region(phone_e164: str) -> str:
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return UNKNOWN_REGION
    found = phonenumbers.region_code_for_number(number)
    if found and number.country_code == 1 and len(phone_e164) == 12 and phonenumbers.is_valid_number(number):
        _NANP_AREAS[phone_e164[:5]] = found
    found = found or phonenumbers.region_code_for_country_code(number.country_code)
    return found if found in phonenumbers.SUPPORTED_REGIONS else UNKNOWN_REGION


def charged_segments(channel: str, sms_segments: int) -> int:
    """The segments a message is charged for: an SMS its segments, at least one (an empty
    message is still a message); a WhatsApp message one."""
    return max(1, sms_segments) if channel == "sms" else 1


def json_number(value: Decimal) -> int | float:
    """A credits figure as JSON writes numbers: whole ones as integers."""
    return int(value) if value == value.to_integral_value() else float(value)


def estimate_credits(rates: Rates | None, region: str, segments: int) -> Decimal | None:
    """What sending `segments` segments to `region` costs; None when credits are off."""
    return None if rates is None else rates.credits(region, segments, "out")


def parse(text: str, source: str) -> dict[str, Rate]:
    """A credits table's rows by country; CreditsTableError (with the line) for a bad table."""
    header: dict[str, int] | None = None
    found: dict[str, tuple[int, Rate]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in next(csv.reader([line]))]
        if header is None:
            header = _header(cells, source, number)
            continue
        if len(cells) != len(header):
            raise CreditsTableError(source, number, f"{len(cells)} value(s) where the header names "
                                    f"{len(header)}: write {','.join(COLUMNS)}")
        country = _country(cells[header["country"]], source, number)
        if country in found:
            raise CreditsTableError(source, number, f"{country} appears twice (first on line "
                                    f"{found[country][0]}): give each country one row")
        rate = Rate(*(_figure(cells[header[column]], column, source, number)
                      for column in ("outbound", "inbound")))
        found[country] = (number, rate)
    if header is None:
        raise CreditsTableError(source, None, f"the table is empty: it needs the header "
                                f"{','.join(COLUMNS)} and a row per country")
    if DEFAULT not in found:
        raise CreditsTableError(source, None, f"no `{DEFAULT}` row: add one ({DEFAULT},5,2 say) "
                                "for the countries without a row of their own")
    return {country: rate for country, (_, rate) in found.items()}


def _header(cells: list[str], source: str, line: int) -> dict[str, int]:
    names = [cell.lower() for cell in cells]
    missing = [column for column in COLUMNS if column not in names]
    unknown = [cell for cell, name in zip(cells, names, strict=True) if name not in COLUMNS]
    if missing or unknown or len(set(names)) != len(names):
        said = []
        if missing:
            said.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            said.append(f"unknown column(s) {', '.join(unknown)}")
        if not said:
            said.append("a column named twice")
        raise CreditsTableError(source, line, f"the header must name the columns {','.join(COLUMNS)}: "
                                + "; ".join(said))
    return {name: index for index, name in enumerate(names)}


def _country(cell: str, source: str, line: int) -> str:
    code = cell.upper()
    if code == DEFAULT or code in phonenumbers.SUPPORTED_REGIONS:
        return code
    hint = f" (did you mean {COUNTRY_HINTS[code]}?)" if code in COUNTRY_HINTS else ""
    raise CreditsTableError(source, line, f"'{cell}' is not a country code{hint}: give an ISO 3166 "
                            f"alpha-2 code (US, GB, FR...) or {DEFAULT} for every other country")


def _figure(cell: str, column: str, source: str, line: int) -> Decimal:
    try:
        value = Decimal(cell)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise CreditsTableError(source, line, f"{column} '{cell}' is not a number: write credits "
                                "per segment, e.g. 2 or 0.5")
    if value < 0:
        raise CreditsTableError(source, line, f"{column} {cell} is negative: a price is 0 or more")
    return value
