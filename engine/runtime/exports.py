"""Response records as JSON Lines or CSV (one column per answer and per field)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable

FIXED_COLUMNS = ("response_id", "survey", "version", "channel", "phone", "status", "language", "started_at",
                 "ended_at", "messages_in", "messages_out", "segments_in", "segments_out", "not_shown")
FIELD_PREFIX = "field:"
ANSWER_PREFIX = "answer:"  # only for a question named like a fixed column
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # spreadsheets run these as formulas
PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")  # +15551234567 or -3 is data, not a formula


# Valid inside a JSON string, but line breaks to many readers (JavaScript before ES2019,
# str.splitlines, editors): escaped, so each record is exactly one line for every reader.
# Lone surrogates too: they could not be written as UTF-8.
LINE_BREAKING = re.compile("[\u2028\u2029\x85\ud800-\udfff]")


def jsonl_line(record: dict) -> str:
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if LINE_BREAKING.search(line):
        line = LINE_BREAKING.sub(lambda found: f"\\u{ord(found.group()):04x}", line)
    return line + "\n"


Column = tuple[str, str, str]  # (title, "fixed" | "answer" | "field", key)


class Header:
    """The CSV columns, gathered from the records: fixed ones, answers (the survey's question
    order first, then any others the records hold), then fields."""

    def __init__(self, question_ids: Iterable[str] = ()):
        self._answers = dict.fromkeys(question_ids)
        self._fields: dict[str, None] = {}
        self.last = "-"  # the last stream entry gathered: rows stop there, so each has its columns

    def add(self, entry_id: str, record: dict) -> None:
        self.last = entry_id
        self._answers.update(dict.fromkeys(record.get("answers", {})))
        self._fields.update(dict.fromkeys(record.get("fields", {})))

    def columns(self) -> list[Column]:
        return [
            *((name, "fixed", name) for name in FIXED_COLUMNS),
            *((ANSWER_PREFIX + q if q in FIXED_COLUMNS else q, "answer", q) for q in self._answers),
            *((FIELD_PREFIX + f, "field", f) for f in self._fields),
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
