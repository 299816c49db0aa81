"""The response record a closed session leaves behind: what analysis and exports read."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from engine.flow import Flow
from engine.session import COMPLETE, Session


def iso(t: float) -> str:
    """Unix seconds as ISO 8601 UTC, e.g. 2024-01-01T09:00:00Z."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def response_id(session: Session) -> str:
    """Stable for a session, so a retried write of the same response is recognisable."""
    key = f"{session.survey}|{session.version}|{session.channel}|{session.phone}|{session.started_at!r}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def typed_answers(session: Session, flow: Flow | None) -> dict[str, object]:
    """NPS and number -> their number, choice -> {code, label} (label: the survey's default
    language's; with `shown`, the label the respondent read, when they spoke another language),
    text -> str. Without its flow a choice stays its code."""
    out: dict[str, object] = {}
    shown = session.language or None
    for qid, stored in session.answers.items():
        question = flow.questions.get(qid) if flow is not None else None
        out[qid] = stored if question is None else question.kind.record(question.ask, stored, shown)
    return out


def language_of(session: Session, flow: Flow | None) -> str:
    """The language the session spoke ("": its survey's default, and the flow is gone)."""
    return session.language or (flow.default_language if flow is not None else "")


def response_record(session: Session, flow: Flow | None) -> dict:
    """`end`: the end a complete session reached; `last_question`: the question any other
    was waiting on when it closed (the last one asked). `answered_at`: when each question was
    left: answered, or given up after invalid replies (then it has no answer)."""
    return {
        "response_id": response_id(session),
        "survey": session.survey,
        "version": session.version,
        "channel": session.channel,
        "phone": session.phone,
        "status": session.status,
        "language": language_of(session, flow),
        "started_at": iso(session.started_at),
        "ended_at": iso(session.updated_at),
        "fields": dict(session.fields),
        "answers": typed_answers(session, flow),
        "not_shown": list(session.not_shown),
        "end": session.state if session.status == COMPLETE else None,
        "last_question": None if session.status == COMPLETE else session.state,
        "answered_at": {qid: iso(t) for qid, t in session.answered_at.items()},
        "messages_in": session.messages_in,
        "messages_out": session.messages_out,
        "segments_in": session.segments_in,
        "segments_out": session.segments_out,
    }
