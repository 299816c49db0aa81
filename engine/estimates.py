"""What a distribution will send, before it sends anything: its recipients, those skipped and
why, and per country the SMS segments and credits of each recipient's invitation.

The invitation is rendered as the server would send it: engine.conversation.start on a fresh
respondent, with the contact's fields piped in, so a long first name makes a longer message.
A WhatsApp invitation outside the 24-hour window goes as the survey's template: no segments.
Credits come from a `price(region, segments)` the caller gives (a credits table); without
one, or where it has no figure for a country, they are null.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from engine import conversation
from engine.conversation import Respondent
from engine.flow import Flow
from engine.sms.credits import json_number
from engine.sms.credits import region as billing_region
from engine.step import segment_count

Price = Callable[[str, int], "float | Decimal | None"]


class NoInvitation(ValueError):
    """The survey cannot invite anyone on this channel (WhatsApp without a template)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def invitation_segments(flow: Flow, channel: str, phone: str, fields: dict, now: float) -> int:
    """SMS segments of the message(s) that open the survey for this contact (0 on WhatsApp).
    NoInvitation when the channel allows no invitation from a fresh respondent."""
    try:
        outcome = conversation.start(flow, Respondent(channel, phone), fields, now)
    except conversation.NotStartable as err:
        raise NoInvitation(err.reason) from None
    if outcome.template is not None:
        return 0
    return sum(segment_count(channel, text) for text in outcome.replies)


@dataclass
class _Country:
    recipients: int = 0
    segments: int = 0
    credits: Decimal | None = Decimal(0)


@dataclass
class Estimate:
    """Recipients and skipped contacts added one by one; to_json() is what the API shows."""

    price: Price | None = None
    skipped: Counter = field(default_factory=Counter)
    countries: dict[str, _Country] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def add(self, phone: str, segments: int) -> None:
        region = billing_region(phone)  # the country credits are priced by
        country = self.countries.setdefault(region, _Country())
        country.recipients += 1
        country.segments += segments
        if self.price is not None and country.credits is not None:
            cost = self.price(region, segments)
            country.credits = None if cost is None else country.credits + Decimal(str(cost))

    def to_json(self) -> dict:
        priced = self.price is not None
        countries = {region: {"recipients": c.recipients, "segments": c.segments,
                              "credits": _number(c.credits) if priced else None}
                     for region, c in sorted(self.countries.items())}
        credits = [c.credits for c in self.countries.values()]
        total = sum(credits, Decimal(0)) if priced and None not in credits else None
        return {"recipients": sum(c.recipients for c in self.countries.values()),
                "skipped": dict(sorted(self.skipped.items())),
                "segments": sum(c.segments for c in self.countries.values()),
                "credits": _number(total), "countries": countries}


def _number(value: Decimal | None) -> float | int | None:
    return None if value is None else json_number(value)
