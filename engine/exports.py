"""Response records as JSON Lines or CSV (one column per answer and per field)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable

FIXED_COLUMNS = ("response_id", "survey", "version", "channel", "phone", "status", "started_at",
                 "ended_at", "messages_in", "messages_out", "segments_in", "segments_out", "not_shown")
FIELD_PREFIX = "field:"
ANSWER_PREFIX = "answer:"  # only for a question named like a fixed column
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # spreadsheets run these as formulas
PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")  # +15551234567 or -3 is data, not a formula


def jsonl_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


Column = tuple[str, str, str]  # (title, "fixed" | "answer" | "field", key)


def columns(question_ids: Iterable[str], records: Iterable[dict]) -> list[Column]:
    """The header: fixed columns, answers (the survey's question order first), then fields."""
    answers = list(dict.fromkeys(question_ids))
    fields: list[str] = []
    for record in records:
        answers.extend(q for q in record.get("answers", {}) if q not in answers)
        fields.extend(f for f in record.get("fields", {}) if f not in fields)
    return [
        *((name, "fixed", name) for name in FIXED_COLUMNS),
        *((ANSWER_PREFIX + q if q in FIXED_COLUMNS else q, "answer", q) for q in answers),
        *((FIELD_PREFIX + f, "field", f) for f in fields),
    ]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):  # a choice: {"code", "label"}
        value = value.get("label", value.get("code", ""))
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_header(header: list[Column]) -> str:
    return csv_line([title for title, _, _ in header])


def csv_row(header: list[Column], record: dict) -> str:
    row = []
    for _, kind, key in header:
        if kind == "answer":
            row.append(_cell(record.get("answers", {}).get(key)))
        elif kind == "field":
            row.append(_cell(record.get("fields", {}).get(key)))
        elif key == "not_shown":
            row.append(" ".join(record.get("not_shown", [])))
        else:
            row.append(str(record.get(key, "")))
    return csv_line(row)


def csv_line(values: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()
