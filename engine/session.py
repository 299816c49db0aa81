"""One conversation on one flow version, and its compact stored form.

Statuses: `open` while the survey is under way; then one of
- `complete`: the flow reached an end (its message was sent);
- `expired`: expires_after passed since it started (answers so far are kept);
- `opted_out`: the respondent sent STOP or another opt-out keyword;
- `ended_invalid`: a question with `on_invalid: end` ran out of attempts;
- `error`: the flow version the session is pinned to can no longer be loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

OPEN, COMPLETE, EXPIRED, OPTED_OUT, ENDED_INVALID, ERROR = (
    "open", "complete", "expired", "opted_out", "ended_invalid", "error")
STATUSES = (OPEN, COMPLETE, EXPIRED, OPTED_OUT, ENDED_INVALID, ERROR)
_FORMAT = 1  # first item of the stored list, so the layout can change later


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


def _time(t: float | None):
    if t is None:
        return None
    t = round(t, 3)
    return int(t) if t == int(t) else t


def pack(session: Session) -> list:
    s = session
    return [_FORMAT, s.survey, s.version, s.channel, s.phone, s.state, s.status, s.answers, s.not_shown,
            s.fields, s.attempts, _time(s.started_at), _time(s.updated_at), _time(s.expires_at),
            _time(s.remind_at), int(s.reminded), s.messages_in, s.messages_out, s.segments_in,
            s.segments_out]


def unpack(items: list) -> Session:
    """A Session from its packed list; ValueError when the list is not one."""
    try:
        (fmt, survey, version, channel, phone, state, status, answers, not_shown, fields, attempts,
         started, updated, expires, remind_at, reminded, m_in, m_out, s_in, s_out) = items
        if fmt != _FORMAT or status not in STATUSES:
            raise ValueError
        if not (isinstance(answers, dict) and isinstance(fields, dict) and isinstance(not_shown, list)):
            raise ValueError
        return Session(str(survey), str(version), str(channel), str(phone), str(state), status,
                       answers, not_shown, fields, int(attempts), float(started), float(updated),
                       float(expires), None if remind_at is None else float(remind_at), bool(reminded),
                       int(m_in), int(m_out), int(s_in), int(s_out))
    except (TypeError, ValueError):
        raise ValueError(f"not a stored session: {str(items)[:80]}") from None


def dumps(session: Session) -> str:
    return json.dumps(pack(session), separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Session:
    try:
        items = json.loads(text)
    except (TypeError, ValueError):
        raise ValueError(f"not a stored session: {str(text)[:80]}") from None
    return unpack(items)
