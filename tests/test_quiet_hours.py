"""Quiet hours: the window read from what operators write, the zones of a number, and the next
moment the window holds in every one of them (DST, midnight, many zones, never)."""

from __future__ import annotations

import time as clock
import zoneinfo
from datetime import datetime, time

import pytest
from phonenumbers import timezone as phone_zones

from engine.sms.quiet_hours import (
    NEVER,
    InvalidQuietHours,
    QuietHours,
    holds,
    next_allowed,
    reminder_at,
    time_zones,
)


def at(local: str, zone: str = "UTC") -> float:
    """A moment written as a wall-clock time in a zone: "2024-07-01 09:00" in New York."""
    return datetime.fromisoformat(local).replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


NY, LA, LONDON = "America/New_York", "America/Los_Angeles", "Europe/London"


# ------------------------------------------------------------------ reading the window

@pytest.mark.parametrize("spec, start, end, crosses", [
    ({"from": "09:00", "to": "20:00"}, time(9), time(20), False),
    ("09:00-20:00", time(9), time(20), False),
    (" 9:00 - 20:30 ", time(9), time(20, 30), False),
    ("21:00-06:00", time(21), time(6), True),
    ({"from": "08:00", "to": "00:00"}, time(8), time(0), True),  # until midnight
    ("00:00-23:59", time(0), time(23, 59), False),
])
def test_windows_are_read_from_both_forms(spec, start, end, crosses):
    window = QuietHours.parse(spec)
    assert (window.start, window.end, window.crosses_midnight) == (start, end, crosses)
    assert QuietHours.parse(str(window)) == window == QuietHours.parse(window.as_dict())


@pytest.mark.parametrize("spec, says", [
    ("09:00-09:00", "empty or the whole day"),
    ({"from": "9:00", "to": "09:00"}, "two different times"),
    ("09:00", "write FROM-TO"),
    ("9am-8pm", "24-hour time HH:MM"),
    ("09:00-24:00", "midnight is 00:00"),
    ("09:60-20:00", "'from' must be"),
    ("09:00-25:00", "'to' must be"),
    ({"from": "09:00"}, "need 'to'"),
    ({"from": "09:00", "to": "20:00", "zone": "UTC"}, "only 'from' and 'to'"),
    ({"from": 9, "to": 20}, "not 9"),
    (["09:00", "20:00"], "quiet hours are"),
    ("", "no window of quiet hours"),
])
def test_bad_windows_say_why(spec, says):
    with pytest.raises(InvalidQuietHours, match=says):
        QuietHours.parse(spec)
    assert issubclass(InvalidQuietHours, ValueError)


# ------------------------------------------------------------------ the zones of a number

@pytest.mark.parametrize("phone, zones", [
    ("+12125551234", (NY,)),
    ("+14155551234", (LA,)),
    ("+16055551234", ("America/Denver", "America/North_Dakota/Center")),  # South Dakota: two zones
    ("+447911123456", ("Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey", LONDON)),
    ("+61412345678", ("Australia/Adelaide", "Australia/Brisbane", "Australia/Eucla",
                      "Australia/Lord_Howe", "Australia/Perth", "Australia/Sydney",
                      "Indian/Christmas", "Indian/Cocos")),  # a mobile: anywhere in Australia
    ("+61212345678", ("Australia/Sydney",)),  # a Sydney fixed line
    ("+883510012345", ("UTC",)),  # a global service: no country, no local time
])
def test_a_number_has_the_zones_phonenumbers_gives(phone, zones):
    assert time_zones(phone) == zones


def test_a_number_phonenumbers_cannot_place_gets_its_whole_country_code():
    zones = time_zones("+15555550100")  # a test range: no area, so every zone of +1
    assert {NY, LA, "Pacific/Honolulu", "Pacific/Guam", "America/St_Johns"} <= set(zones)
    assert next_allowed(QuietHours.parse("09:00-20:00"), zones, at("2024-07-01 12:00", NY)) is None


def test_a_russian_mobile_has_all_of_russias_zones():
    zones = time_zones("+79161234567")
    assert {"Europe/Moscow", "Asia/Vladivostok", "Asia/Kamchatka"} <= set(zones) and len(zones) > 10


def test_every_zone_phonenumbers_names_loads_from_the_shipped_database():
    """tzdata (a dependency) must hold every zone, also on a machine without /usr/share/zoneinfo."""
    names = {zone for zones in phone_zones.TIMEZONE_DATA.values() for zone in zones}
    names -= {phone_zones.UNKNOWN_TIMEZONE}
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    try:
        for name in sorted(names):
            zoneinfo.ZoneInfo(name)
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


# ------------------------------------------------------------------ when the window holds

DAY = "09:00-20:00"
CASES = [
    # (window, number or zones, now, the next allowed moment or None)
    # one zone, and its edges: from is in, to is out
    (DAY, "+12125551234", at("2024-07-01 08:59", NY), at("2024-07-01 09:00", NY)),
    (DAY, "+12125551234", at("2024-07-01 09:00", NY), at("2024-07-01 09:00", NY)),
    (DAY, "+12125551234", at("2024-07-01 19:59:59", NY), at("2024-07-01 19:59:59", NY)),
    (DAY, "+12125551234", at("2024-07-01 20:00", NY), at("2024-07-02 09:00", NY)),
    (DAY, "+12125551234", at("2024-07-01 23:30", NY), at("2024-07-02 09:00", NY)),
    # the recipient's time, not the sender's: 09:00 in New York is 06:00 in Los Angeles
    (DAY, "+14155551234", at("2024-07-01 09:00", NY), at("2024-07-01 09:00", LA)),
    # two zones: the window must hold in both (New York's 12:00 is Los Angeles' 09:00)
    (DAY, (NY, LA), at("2024-07-01 10:00", NY), at("2024-07-01 09:00", LA)),
    (DAY, (NY, LA), at("2024-07-01 19:59", NY), at("2024-07-01 19:59", NY)),
    (DAY, (NY, LA), at("2024-07-01 20:00", NY), at("2024-07-02 09:00", LA)),
    # an area code across two zones (Mountain and Central)
    (DAY, "+16055551234", at("2024-07-01 09:30", "America/Chicago"), at("2024-07-01 09:00", "America/Denver")),
    (DAY, "+16055551234", at("2024-07-01 19:00", "America/Denver"), at("2024-07-02 09:00", "America/Denver")),
    # a window across midnight
    ("21:00-06:00", (LONDON,), at("2024-07-01 23:00", LONDON), at("2024-07-01 23:00", LONDON)),
    ("21:00-06:00", (LONDON,), at("2024-07-02 05:59", LONDON), at("2024-07-02 05:59", LONDON)),
    ("21:00-06:00", (LONDON,), at("2024-07-02 06:00", LONDON), at("2024-07-02 21:00", LONDON)),
    ("21:00-06:00", (LONDON,), at("2024-07-02 00:00", LONDON), at("2024-07-02 00:00", LONDON)),
    ("21:00-06:00", (NY, LA), at("2024-07-01 23:00", NY), at("2024-07-01 21:00", LA)),
    # spring forward in New York (2024-03-10, 02:00 -> 03:00): 09:00 is 09:00 on the wall
    (DAY, (NY,), at("2024-03-10 01:00", NY), at("2024-03-10 13:00")),
    (DAY, (NY,), at("2024-03-09 21:00", NY), at("2024-03-10 13:00")),
    ("02:30-05:00", (NY,), at("2024-03-10 01:00", NY), at("2024-03-10 07:30")),  # 02:30 skipped: 03:30 EDT
    # fall back in New York (2024-11-03, 02:00 -> 01:00): 09:00 is then EST
    (DAY, (NY,), at("2024-11-02 22:00", NY), at("2024-11-03 14:00")),
    ("01:30-04:00", (NY,), at("2024-11-03 00:00", NY), at("2024-11-03 05:30")),  # first 01:30 (EDT)
    # London (2024-03-31 01:00 -> 02:00 and 2024-10-27 02:00 -> 01:00)
    (DAY, (LONDON,), at("2024-03-31 00:30", LONDON), at("2024-03-31 08:00")),
    (DAY, (LONDON,), at("2024-10-26 20:00", LONDON), at("2024-10-27 09:00")),
    # New York and London together across the weeks their clocks disagree (5 h apart, then 4)
    (DAY, (NY, LONDON), at("2024-03-11 08:00", NY), at("2024-03-11 09:00", NY)),
    (DAY, (NY, LONDON), at("2024-03-11 16:00", NY), at("2024-03-12 09:00", NY)),
    (DAY, (NY, LONDON), at("2024-04-01 15:30", NY), at("2024-04-02 09:00", NY)),
    # a Russian mobile, Kaliningrad-ish to Kamchatka: only 06:00-08:00 UTC in summer
    (DAY, "+79161234567", at("2024-07-01 05:00"), at("2024-07-01 06:00")),
    (DAY, "+79161234567", at("2024-07-01 07:59"), at("2024-07-01 07:59")),
    (DAY, "+79161234567", at("2024-07-01 08:00"), at("2024-07-02 06:00")),
    (DAY, "+79161234567", at("2024-01-15 06:30"), at("2024-01-15 07:00")),  # Bucharest on winter time
    ("09:00-17:00", "+79161234567", at("2024-07-01 05:00"), None),  # too short for all of Russia
    # an Australian mobile in January (summer time in the south): Cocos opens, Lord Howe closes
    (DAY, "+61412345678", at("2024-01-15 00:00"), at("2024-01-15 02:30")),
    (DAY, "+61412345678", at("2024-01-15 09:00"), at("2024-01-16 02:30")),
    (DAY, "+61412345678", at("2024-07-15 09:00"), at("2024-07-15 09:00")),  # winter: Lord Howe +10:30
    (DAY, "+61412345678", at("2024-07-15 09:30"), at("2024-07-16 02:30")),
    # zones too far apart for the window: never
    ("09:00-18:00", ("Asia/Tokyo", NY), at("2024-07-01 12:00"), None),
    ("09:00-18:00", ("Asia/Kolkata", "America/Chicago"), at("2024-07-01 12:00"), None),
    # 25 hours apart is an hour apart on the wall clock: the window is a time of day, not a date
    ("09:00-21:00", ("Pacific/Kiritimati", "Pacific/Pago_Pago"), at("2024-07-01 12:00"), at("2024-07-01 20:00")),
    # half-hour zones and UTC
    (DAY, "+919876543210", at("2024-07-01 03:00"), at("2024-07-01 03:30")),
    (DAY, "+883510012345", at("2024-07-01 08:00"), at("2024-07-01 09:00")),
    (DAY, (), at("2024-07-01 08:00"), at("2024-07-01 09:00")),
]


@pytest.mark.parametrize("window, who, now, expected", CASES)
def test_the_next_moment_the_window_holds_in_every_zone(window, who, now, expected):
    zones = time_zones(who) if isinstance(who, str) else who
    assert next_allowed(QuietHours.parse(window), zones, now) == expected
    assert holds(QuietHours.parse(window), zones, now) == (expected == now)
    if expected is not None and expected > now:
        # the moment found is the first: a second before it the window does not hold
        assert not holds(QuietHours.parse(window), zones, expected - 1)


def test_a_fractional_now_inside_the_window_is_kept():
    now = at("2024-07-01 10:00", NY) + 0.25
    assert next_allowed(QuietHours.parse(DAY), (NY,), now) == now


# ------------------------------------------------------------------ reminders

@pytest.mark.parametrize("window, due, expires, expected", [
    (None, at("2024-07-01 03:00", NY), at("2024-07-03 00:00", NY), at("2024-07-01 03:00", NY)),
    (DAY, at("2024-07-01 10:00", NY), at("2024-07-03 00:00", NY), at("2024-07-01 10:00", NY)),
    (DAY, at("2024-07-01 03:00", NY), at("2024-07-03 00:00", NY), at("2024-07-01 09:00", NY)),
    # the window opens only once the session has expired: no reminder
    (DAY, at("2024-07-01 21:00", NY), at("2024-07-02 08:00", NY), None),
    (DAY, at("2024-07-01 21:00", NY), at("2024-07-02 09:00", NY), None),
    (DAY, at("2024-07-01 21:00", NY), at("2024-07-02 09:00:01", NY), at("2024-07-02 09:00", NY)),
    ("09:00-17:00", at("2024-07-01 12:00", NY), at("2024-07-03 00:00", NY), None),  # never
])
def test_a_reminder_waits_for_the_window_but_not_past_the_sessions_expiry(window, due, expires, expected):
    quiet = QuietHours.parse(window) if window else None
    zones = ("Asia/Tokyo", NY) if window == "09:00-17:00" else (NY,)
    assert reminder_at(quiet, zones, due, expires) == expected


def test_the_skip_reason_is_stable():
    assert NEVER == "quiet_hours_never"


def test_next_allowed_is_cheap_enough_for_a_distribution():
    """A distribution asks once per recipient: the worst zone list (every zone of +1, 42 of
    them) must stay well under a millisecond or two."""
    window, zones = QuietHours.parse(DAY), time_zones("+15555550100")
    started = clock.perf_counter()
    for minute in range(200):
        next_allowed(window, zones, at("2024-07-01 00:00") + 60 * minute)
    assert (clock.perf_counter() - started) / 200 < 0.01
