"""A contact list as CSV or JSON Lines: the CSV has the columns an import reads back (phone,
email, then one per field), its cells escaped against spreadsheet formulas as response
exports are (engine.runtime.exports)."""

from __future__ import annotations

import csv
import io

from engine.runtime.exports import cell, jsonl_line

FIXED_COLUMNS = ("phone", "email")


def csv_line(cells: list) -> str:
    """One CSV record (RFC 4180 quoting, CRLF), as the response exports write them."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()


def csv_header(fields: list[str]) -> str:
    return csv_line([*FIXED_COLUMNS, *(cell(name) for name in fields)])


def csv_row(fields: list[str], contact: dict) -> str:
    values = contact["fields"]
    return csv_line([contact["phone"], cell(contact["email"]),
                     *(cell(values.get(name)) for name in fields)])


def jsonl_row(contact: dict) -> str:
    return jsonl_line(contact)
