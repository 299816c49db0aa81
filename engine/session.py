"""One conversation on one flow version, and its compact stored form.

Statuses: `open` while the survey is under way; then one of
- `complete`: the flow reached an end (its message was sent);
- `expired`: expires_after passed since it started (answers so far are kept);
- `opted_out`: the respondent sent STOP or another opt-out keyword;
- `ended_invalid`: a question with `on_invalid: end` ran out of attempts;
- `error`: the flow version the session is pinned to can no longer be loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

OPEN, COMPLETE, EXPIRED, OPTED_OUT, ENDED_INVALID, ERROR = (
    "open", "complete", "expired", "opted_out", "ended_invalid", "error")
STATUSES = (OPEN, COMPLETE, EXPIRED, OPTED_OUT, ENDED_INVALID, ERROR)
WEB = "web"  # the channel of the survey's pages (engine.pages), beside sms and whatsapp
PHONE_FIELD = "Q_RecipientPhoneNumber"  # embedded data every session gets at its start: the phone


@dataclass
class Session:
    survey: str
    version: str
    channel: str  # sms | whatsapp
    phone: str  # E.164
    state: str  # the question waiting for an answer, or the end reached
    status: str = OPEN
    answers: dict[str, int | str] = field(default_factory=dict)  # nps int, choice code, text
    not_shown: list[str] = field(default_factory=list)
    fields: dict[str, object] = field(default_factory=dict)  # contact fields, embedded data, phone
    attempts: int = 0  # invalid replies to the current question
    started_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float = 0.0
    remind_at: float | None = None
    reminded: bool = False
    messages_in: int = 0
    messages_out: int = 0
    segments_in: int = 0
    segments_out: int = 0
    language: str = ""  # the language it speaks ("": the survey's default, as sessions stored before languages)
    # when each question was left: answered, or given up after its invalid replies (then it
    # has a time but no answer), in the order they were left
    answered_at: dict[str, float] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    def due_at(self) -> float | None:
        """When the next timer (reminder or expiry) fires, for an open session."""
        if not self.is_open:
            return None
        if self.remind_at is not None and not self.reminded:
            return min(self.remind_at, self.expires_at)
        return self.expires_at


def evolve(record, /, **changes):
    """dataclasses.replace() for the engine's plain dataclasses (Session, Respondent: no
    __post_init__, no init=False fields), at a third of its cost; a step makes a few."""
    if not changes.keys() <= record.__dataclass_fields__.keys():
        raise TypeError(f"{type(record).__name__} has no field {', '.join(changes.keys() - record.__dataclass_fields__.keys())}")
    new = object.__new__(type(record))
    new.__dict__.update(record.__dict__, **changes)
    return new


# ---------------------------------------------------------------- the packed form
#
# A session packs into a JSON-ready list, without its channel and phone (the key it is stored
# under holds them) and with its trailing items left out where they hold their default:
#
#   [survey, version, state, answers, fields, started_at, updated, expires, counters,
#    remind, not_shown, attempts, reminded, status, language]
#
# Times are whole seconds, rounded down: started_at is Unix seconds; updated and expires are
# seconds after started_at, remind seconds after updated_at (null: no reminder due). Nothing
# needs finer: expiry, the reminder and the WhatsApp window are minutes to days, response
# records show seconds; and rounding down keeps a stored time no later than the one its timer
# was set for, so a timer that fires finds its session due.
# counters are [messages_in, messages_out], followed by [segments_in, segments_out] unless
# those are the default: one segment a message on SMS, none on WhatsApp.
# fields leave out Q_RecipientPhoneNumber when it is the phone (see _pack_fields).
# updated is [updated, *answered] once a question was left (answered_at): answered are the
# times each was left, in seconds after started_at, in the order of answers' keys when those
# are the questions left (the usual case), else one {question: seconds}. A plain number (as
# every record stored before answered_at existed) knows no such times.
# reminded is 0 or 1. language is a language code, "" for the survey's default (records written
# before languages lack it). Defaults: remind null, not_shown [], attempts 0, reminded 0,
# status "open", language "".

_REQUIRED = 9
_DEFAULTS = (None, [], 0, 0, OPEN, "")


def offset(t: float, base: float) -> int:
    """`t` as whole seconds after `base`, both rounded down; at_offset() reverses it."""
    return math.floor(t) - math.floor(base)


def at_offset(value: int, base: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not a whole number of seconds: {value!r}")
    return float(math.floor(base) + value)


def without_defaults(items: list, defaults: tuple) -> list:
    """`items` without the trailing ones equal to their default (`defaults` are the tail's)."""
    end, first_optional = len(items), len(items) - len(defaults)
    while end > first_optional and items[end - 1] == defaults[end - 1 - first_optional]:
        end -= 1
    return items[:end]


def with_defaults(items: list, required: int, defaults: tuple) -> list:
    """`items` completed with the defaults left out; ValueError when it is too short or too long."""
    if not required <= len(items) <= required + len(defaults):
        raise ValueError
    return [*items, *defaults[len(items) - required:]]


def _pack_fields(fields: dict, phone: str) -> dict | list:
    """The fields without the Q_RecipientPhoneNumber that holds the phone: {before} when it is
    the last field (as a session starts), [{before}, {after}] when the flow set fields after it,
    [{fields}] (as they are) when no field holds the phone."""
    if fields.get(PHONE_FIELD) != phone:
        return [fields]
    names = list(fields)
    at = names.index(PHONE_FIELD)
    before = {name: fields[name] for name in names[:at]}
    after = {name: fields[name] for name in names[at + 1:]}
    return [before, after] if after else before


def _unpack_fields(packed, phone: str) -> dict:
    if isinstance(packed, dict):
        return {**packed, PHONE_FIELD: phone}
    if not (isinstance(packed, list) and len(packed) in (1, 2) and all(isinstance(p, dict) for p in packed)):
        raise ValueError
    if len(packed) == 1:
        return packed[0]
    return {**packed[0], PHONE_FIELD: phone, **packed[1]}


def _default_segments(channel: str, messages_in: int, messages_out: int) -> list[int]:
    return [messages_in, messages_out] if channel == "sms" else [0, 0]


def _pack_updated(s: Session) -> int | list:
    updated = offset(s.updated_at, s.started_at)
    if not s.answered_at:
        return updated
    left = {qid: offset(t, s.started_at) for qid, t in s.answered_at.items()}
    return [updated, *left.values()] if list(left) == list(s.answers) else [updated, left]


def _unpack_updated(packed, answers: dict, started_at: float) -> tuple[float, dict[str, float]]:
    if not isinstance(packed, list):
        return at_offset(packed, started_at), {}
    if not packed:
        raise ValueError
    updated, *times = packed
    if len(times) == 1 and isinstance(times[0], dict):
        left = times[0]
    elif len(times) == len(answers):
        left = dict(zip(answers, times, strict=True))
    else:
        raise ValueError
    return at_offset(updated, started_at), {qid: at_offset(t, started_at) for qid, t in left.items()}


def pack(session: Session) -> list:
    s = session
    counters = [s.messages_in, s.messages_out]
    if [s.segments_in, s.segments_out] != _default_segments(s.channel, *counters):
        counters += [s.segments_in, s.segments_out]
    remind = None if s.remind_at is None else offset(s.remind_at, s.updated_at)
    return without_defaults(
        [s.survey, s.version, s.state, s.answers, _pack_fields(s.fields, s.phone), offset(s.started_at, 0),
         _pack_updated(s), offset(s.expires_at, s.started_at), counters,
         remind, s.not_shown, s.attempts, int(s.reminded), s.status, s.language],
        _DEFAULTS)


def _counters(packed, channel: str) -> list[int]:
    if not (isinstance(packed, list) and len(packed) in (2, 4)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in packed)):
        raise ValueError
    return packed if len(packed) == 4 else [*packed, *_default_segments(channel, *packed)]


def unpack(items: list, channel: str, phone: str) -> Session:
    """The session of (channel, phone) from its packed list; ValueError when it is not one."""
    try:
        (survey, version, state, answers, fields, started, updated, expires, counters,
         remind, not_shown, attempts, reminded, status, language) = with_defaults(items, _REQUIRED, _DEFAULTS)
        if not all(isinstance(text, str) for text in (survey, version, state, status, language)) \
                or status not in STATUSES:
            raise ValueError
        if not (isinstance(answers, dict) and isinstance(not_shown, list) and isinstance(attempts, int)
                and reminded in (0, 1)):
            raise ValueError
        started = at_offset(started, 0)
        updated, answered_at = _unpack_updated(updated, answers, started)
        return Session(
            survey, version, channel, phone, state, status, answers, list(not_shown),
            _unpack_fields(fields, phone), attempts, started, updated, at_offset(expires, started),
            None if remind is None else at_offset(remind, updated), bool(reminded),
            *_counters(counters, channel), language, answered_at)
    except (TypeError, ValueError):
        raise ValueError(f"not a stored session: {str(items)[:80]}") from None
