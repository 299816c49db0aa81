"""What an export of a survey's responses holds: the same columns for every response, whichever
questions it answered, and each value as an analyst reads it.

The columns come from the flow versions the responses ran on (the live one first), so they do
not depend on which responses happen to be exported:

- the response's own: response_id ... segments_out, `end` (the end a complete response
  reached), `last_question` (the question a partial or expired one was waiting on), `not_shown`
  (the questions show_if left out, a JSON list);
- per question, in flow order: its value (a choice's code, an NPS score, a text), then for a
  choice `<id>_label`, for NPS `<id>_group` (detractor 0-6, passive 7-8, promoter 9-10), and
  `<id>_at`, when it was answered (or given up after invalid replies);
- per declared field (the contact fields the survey lists, the names `set` gives, the phone
  field): `field:<name>`; then `other_fields`, any others a response holds, as one JSON object.

A version whose flow is no longer stored (a survey long removed) adds the answers and fields its
responses hold (Shape.add_record, a pass the caller makes over those responses only).
Times are ISO 8601 UTC with milliseconds: 2024-01-01T09:00:00.000Z. With a key, phone numbers
(and the response ids made from them) are replaced by a keyed hash (HMAC-SHA256), the same for
the same number under the same key, so responses can be joined but not traced back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime

from dsl import ast
from engine.flow import Flow
from engine.session import PHONE_FIELD

RESPONSE_COLUMNS = ("response_id", "survey", "version", "channel", "phone", "status", "language", "started_at",
                    "ended_at", "end", "last_question", "messages_in", "messages_out", "segments_in",
                    "segments_out", "not_shown")
TIME_KEYS = ("started_at", "ended_at")
FIELD_PREFIX = "field:"
ANSWER_PREFIX = "answer:"  # only for a question named like a response column
OTHER_FIELDS = "other_fields"
HASH_KEY_MIN = 16  # characters: a shorter key is refused (phone numbers are few enough to guess)

NPS, CHOICE = "nps", "choice"


def nps_group(score) -> str | None:
    if isinstance(score, bool) or not isinstance(score, int):
        return None
    return "detractor" if score <= 6 else "passive" if score <= 8 else "promoter"


def iso_ms(value) -> str | None:
    """Unix seconds or an ISO 8601 text as ISO 8601 UTC with milliseconds; None stays None."""
    if value is None or value == "":
        return None
    if value.__class__ is str and len(value) == 20 and value[19] == "Z" and value[10] == "T":
        return value[:19] + ".000Z"  # whole seconds in UTC, as records hold their times
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(str(value))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PhoneHash:
    """HMAC-SHA256 of a phone number (or a response id) under the exporter's key."""

    def __init__(self, key: str):
        if len(key) < HASH_KEY_MIN:
            raise ValueError(f"the key for hashing phone numbers must be at least {HASH_KEY_MIN} characters")
        self.key = key.encode()

    def __call__(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:32]


class Shape:
    """The questions (id -> type, in flow order) and declared fields of a survey's export."""

    def __init__(self) -> None:
        self.questions: dict[str, str | None] = {}
        self.fields: dict[str, None] = {}

    def add_flow(self, flow: Flow) -> None:
        for element in flow.survey.elements:
            if isinstance(element, ast.Ask):
                self.questions.setdefault(element.id, element.type)
            elif isinstance(element, ast.Set):
                self.fields.setdefault(element.name)
        for name in (*flow.survey.fields, PHONE_FIELD):
            self.fields.setdefault(name)

    def add_record(self, record: dict) -> None:
        for qid, value in (record.get("answers") or {}).items():
            kind = CHOICE if isinstance(value, dict) else None
            if self.questions.get(qid) is None:
                self.questions[qid] = kind
        for name in record.get("fields") or {}:
            self.fields.setdefault(name)


class Exported:
    """Response records as exported: `record()` for JSON Lines, `header()` and `row()` for CSV."""

    def __init__(self, shape: Shape, hash_phone: PhoneHash | None = None):
        self.shape, self.hash_phone = shape, hash_phone
        self.nps = {qid for qid, kind in shape.questions.items() if kind == NPS}
        self.fields = list(shape.fields)
        self._cells = self._columns()

    def record(self, record: dict) -> dict:
        """The record with times in milliseconds, NPS answers as {score, group} and, with a
        key, phone numbers hashed."""
        out = dict(record)
        for key in TIME_KEYS:
            out[key] = iso_ms(record.get(key))
        out["end"], out["last_question"] = record.get("end"), record.get("last_question")
        out["answered_at"] = {qid: iso_ms(t) for qid, t in (record.get("answered_at") or {}).items()}
        out["answers"] = {qid: {"score": value, "group": nps_group(value)} if qid in self.nps else value
                          for qid, value in (record.get("answers") or {}).items()}
        out["fields"] = dict(record.get("fields") or {})
        if self.hash_phone is not None:
            self._hash(out)
        return out

    def _hash(self, out: dict) -> None:
        phone = out.get("phone")
        out["response_id"] = self.hash_phone(str(out.get("response_id", "")))
        out["phone"] = self.hash_phone(str(phone))
        for name, value in out["fields"].items():
            if name == PHONE_FIELD or value == phone:
                out["fields"][name] = self.hash_phone(str(value))

    def header(self) -> list[str]:
        return [title for title, _ in self._cells]

    def row(self, exported: dict) -> list:
        """The CSV cells of a record record() gave."""
        return [cell(exported) for _, cell in self._cells]

    def _columns(self) -> list[tuple[str, Callable[[dict], object]]]:
        columns: list[tuple[str, Callable[[dict], object]]] = [
            (name, lambda r, name=name: r.get(name)) for name in RESPONSE_COLUMNS if name != "not_shown"]
        columns.append(("not_shown", lambda r: json.dumps(r.get("not_shown") or [])))
        for qid, kind in self.shape.questions.items():
            title = ANSWER_PREFIX + qid if qid in RESPONSE_COLUMNS else qid
            if kind == CHOICE:
                columns.append((title, lambda r, q=qid: _part(r["answers"].get(q), "code")))
                columns.append((title + "_label", lambda r, q=qid: _part(r["answers"].get(q), "label")))
            elif kind == NPS:
                columns.append((title, lambda r, q=qid: _part(r["answers"].get(q), "score")))
                columns.append((title + "_group", lambda r, q=qid: _part(r["answers"].get(q), "group")))
            else:
                columns.append((title, lambda r, q=qid: r["answers"].get(q)))
            columns.append((title + "_at", lambda r, q=qid: r["answered_at"].get(q)))
        declared = set(self.fields)
        columns += [(FIELD_PREFIX + name, lambda r, name=name: r["fields"].get(name)) for name in self.fields]
        columns.append((OTHER_FIELDS, lambda r: _others(r["fields"], declared)))
        return columns


def _part(value, key: str):
    return value.get(key) if isinstance(value, dict) else value


def _others(fields: dict, declared: set[str]) -> str:
    others = {name: value for name, value in fields.items() if name not in declared}
    return json.dumps(others, ensure_ascii=False, separators=(",", ":")) if others else ""
