"""Quiet hours: the daily window, in the recipient's local time, in which Canvass may send a
message it starts itself (an invitation, a reminder). Pure: the time is always given.

- The window is `from`-`to` in local wall-clock time, `from` included and `to` excluded
  ("09:00-20:00" allows 09:00:00 up to 19:59:59). `from` later than `to` crosses midnight
  ("21:00-06:00"); `from` equal to `to` is refused: it reads as both "always" and "never".
- A number's local time is that of every time zone phonenumbers gives for it (time_zones).
  Where it gives several (a mobile range used across a country), the window must hold in
  all of them at once, so nobody is woken in any of them.
- DST-correct through zoneinfo (the `tzdata` package ships the IANA database): on the day
  clocks change, "09:00" is 09:00 on the wall clock. A bound that falls in the hour skipped
  in spring is read an hour later (02:30 -> 03:30 new time); one that falls in the hour
  repeated in autumn is its first occurrence.
- When the zones share no moment of the window within the next SEARCH_DAYS (zones 12 hours
  apart and a 9-hour window), next_allowed gives None: the message is skipped with the
  reason NEVER (`quiet_hours_never`), never sent at a "best" time that wakes someone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_zones

NEVER = "quiet_hours_never"  # the skip reason of a message whose window never opens
SEARCH_DAYS = 3  # how far ahead next_allowed looks for the window to open in every zone
UTC = "UTC"

CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", re.ASCII)
RANGE = re.compile(r"\s*(\S+?)\s*-\s*(\S+)\s*", re.ASCII)


class InvalidQuietHours(ValueError):
    """Quiet hours that cannot be read; the message says why, for the person who wrote them."""


@dataclass(frozen=True)
class QuietHours:
    """The window in which messages may go: from `start` (included) to `end` (excluded)."""

    start: time
    end: time

    @classmethod
    def parse(cls, spec: str | Mapping[str, object]) -> QuietHours:
        """From {"from": "09:00", "to": "20:00"} (the admin API) or "09:00-20:00" (the CLI)."""
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - {"from", "to"})
            if unknown:
                raise InvalidQuietHours(f"quiet hours take only 'from' and 'to', not {', '.join(map(repr, unknown))}")
            missing = [key for key in ("from", "to") if key not in spec]
            if missing:
                raise InvalidQuietHours(f"quiet hours need '{missing[0]}', e.g. "
                                        '{"from": "09:00", "to": "20:00"}')
            start, end = spec["from"], spec["to"]
        elif isinstance(spec, str):
            found = RANGE.fullmatch(spec)
            if found is None:
                raise InvalidQuietHours(f"'{spec}' is no window of quiet hours: write FROM-TO, "
                                        "e.g. 09:00-20:00")
            start, end = found.groups()
        else:
            raise InvalidQuietHours('quiet hours are "09:00-20:00" or {"from": "09:00", "to": "20:00"}')
        window = cls(_clock(start, "from"), _clock(end, "to"))
        if window.start == window.end:
            raise InvalidQuietHours(
                f"quiet hours from {start} to {end} are empty or the whole day: give two different "
                "times (for no quiet hours, leave them out)")
        return window

    @property
    def crosses_midnight(self) -> bool:
        return self.start > self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def as_dict(self) -> dict[str, str]:
        return {"from": f"{self.start:%H:%M}", "to": f"{self.end:%H:%M}"}


def _clock(value: object, key: str) -> time:
    if not isinstance(value, str) or not CLOCK.fullmatch(value.strip()):
        hint = " (midnight is 00:00)" if value in ("24:00", "24:00:00") else ""
        raise InvalidQuietHours(f"quiet hours '{key}' must be a 24-hour time HH:MM, e.g. 09:00, "
                                f"not {value!r}{hint}")
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


@lru_cache(maxsize=16384)  # a distribution asks for every recipient; a lookup costs ~40 µs
def time_zones(phone_e164: str) -> tuple[str, ...]:
    """The IANA time zones of an E.164 number, as phonenumbers knows them, sorted.

    A number whose own range phonenumbers does not place (an unassigned or test range such as
    +1 555 01xx) gets every zone of its country code: the safe reading, since the window must
    then hold in all of them (for +1, from Guam to Newfoundland, it never does, so such a
    number is skipped). A number of no country at all (+800, +870, +882, +883: global
    services, satellite phones) has no local time to respect: UTC.
    """
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return (UTC,)
    zones = phone_zones.time_zones_for_number(number)
    if _unknown(zones):
        zones = phone_zones.time_zones_for_geographical_number(number)
    if _unknown(zones):
        return (UTC,)
    return tuple(sorted(set(zones)))


def _unknown(zones: Iterable[str] | None) -> bool:
    return not zones or set(zones) <= {phone_zones.UNKNOWN_TIMEZONE}


def next_allowed(window: QuietHours, zones: Iterable[str], now: float) -> float | None:
    """`now` when the window holds now in every zone; else the earliest moment after it that
    it does; None when it does not open in all zones at once within SEARCH_DAYS."""
    names = tuple(zones) or (UTC,)
    horizon = now + (SEARCH_DAYS - 1) * 86400  # every zone's openings are complete up to here
    common = None
    for name in names:
        zone = _zone(name)
        openings = _openings(window, zone, datetime.fromtimestamp(now, zone).date())
        common = openings if common is None else _intersect(common, openings)
        if not common:
            return None
    for start, end in common:
        if end > now and start <= horizon:
            return max(start, now)
    return None


def holds(window: QuietHours, zones: Iterable[str], now: float) -> bool:
    return next_allowed(window, zones, now) == now


def reminder_at(window: QuietHours | None, zones: Iterable[str], due: float,
                expires_at: float) -> float | None:
    """When a reminder due at `due` may go: `due` without quiet hours or inside the window,
    else when the window next opens in every zone. None (skip it, reason NEVER) when the
    window never opens, or opens only once the session has expired: a reminder then would
    invite the respondent back to a survey that is already closed."""
    if window is None:
        return due
    at = next_allowed(window, zones, due)
    if at is None or at >= expires_at:
        return None
    return at


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    # ZoneInfo's own cache keeps only a few zones strongly: +1's 42 would be read from the
    # database again on every call.
    return ZoneInfo(name)


@lru_cache(maxsize=4096)  # a distribution asks for the same zones on the same day again and again
def _openings(window: QuietHours, zone: ZoneInfo, today: date) -> tuple[tuple[float, float], ...]:
    """The window's occurrences in one zone, as [start, end) UTC timestamps, from the day
    before `today` (a local date) to SEARCH_DAYS after it, merged where they touch."""
    spans = []
    for offset in range(-1, SEARCH_DAYS + 1):
        day = today + timedelta(days=offset)
        start = _instant(day, window.start, zone)
        end = _instant(day + timedelta(days=1) if window.crosses_midnight else day, window.end, zone)
        if end > start:
            spans.append((start, end))
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _instant(day: date, clock: time, zone: ZoneInfo) -> float:
    # fold=0: a skipped wall time reads with the offset before the change (an hour later on
    # the new clock), a repeated one is its first occurrence.
    return datetime.combine(day, clock, tzinfo=zone).timestamp()


def _intersect(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The moments in both sorted lists of disjoint spans."""
    found, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            found.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return found
